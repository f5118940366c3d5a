"""A seeded, deterministic corpus of synthetic speech for DTMF talk-off tests (issue 15).

Why: ivrsim's own scripted callers speak with espeak-ng, and a steady synthetic fundamental puts harmonic
pairs on DTMF keys (``espeak-ng -v en+f2 -p 70``: the 3rd and 7th harmonics of ~233 Hz sit on key A). The
receiver must stay silent on every voice a user can pick, so the corpus crosses every espeak-ng English voice
with every variant, a dozen other languages with the classic variants, pitches 0-99 and three speeds, plus
Debian's flite voices when flite is installed.

A :class:`SyntheticVoice` is a complete, hashable description of one render (engine, voice, pitch, speed,
text); :func:`render` turns it into float32 samples at the asked rate, on the 16-bit grid (as a WAV prompt
would hold it), so a render read back from :class:`CorpusRenderer`'s cache is bit-identical to a fresh one.
espeak-ng and flite are deterministic: the same arguments in a fresh process give the same samples.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from ivrsim.audio.dtmf_generator import DtmfToneSpec, dual_tone, generate_dtmf
from ivrsim.audio.dtmf_keys import key_tones_hz
from ivrsim.audio.g711 import float_to_int16, int16_to_float
from ivrsim.audio.levels import dbm0_to_amplitude
from ivrsim.audio.resample import resample

ESPEAK = "espeak-ng"
FLITE = "flite"
ENGINES = (ESPEAK, FLITE)

#: Pitches (espeak-ng ``-p``, 0-99) of the broad corpus; 70 is where en+f2 puts harmonics 3 and 7 on key A.
DEFAULT_PITCHES = (0, 15, 30, 45, 60, 70, 80, 99)
#: Speeds of the broad corpus, in words per minute (espeak-ng ``-s``; 175 is its default).
DEFAULT_SPEEDS_WPM = (120, 175, 260)
#: Other-language voices of the broad corpus (espeak-ng ``-v`` names), each reading IVR prose in its language.
OTHER_LANGUAGES = ("fr-fr", "de", "es-419", "it", "pt-br", "nl", "sv", "pl", "ru", "tr", "fi", "hi")
#: Variants crossed with the other languages: none, and espeak-ng's classic female and male variants.
OTHER_VARIANTS = ("", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
#: Debian flite's voices (``flite -lv`` less ``awb_time``, a talking clock that reads no text).
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")

#: IVR prose, a few sentences each; English voices read all of them in turn.
ENGLISH_TEXTS = (
    "Thank you for calling. Your call is important to us. Please listen carefully, as our menu options have changed.",
    "To hear your account balance, press one. For recent transactions, press two. To speak with an agent, press zero.",
    (
        "Please enter your account number, followed by the pound key. If you are calling about an order, "
        "please have your order number ready."
    ),
    (
        "All of our representatives are busy assisting other customers. Your estimated wait time is four minutes. "
        "Please stay on the line, and your call will be answered in the order it was received."
    ),
)
#: The same kind of prose in the other languages (one text each).
OTHER_TEXTS: dict[str, tuple[str, ...]] = {
    "fr-fr": ("Merci de votre appel. Pour consulter votre solde, appuyez sur un. Pour parler à un conseiller, appuyez sur zéro. Veuillez patienter, votre appel va être traité.",),
    "de": ("Vielen Dank für Ihren Anruf. Für Ihren Kontostand drücken Sie die Eins. Um mit einem Mitarbeiter zu sprechen, drücken Sie die Null. Bitte bleiben Sie am Apparat.",),
    "es-419": ("Gracias por llamar. Para consultar su saldo, marque uno. Para hablar con un agente, marque cero. Por favor, permanezca en la línea.",),
    "it": ("Grazie per aver chiamato. Per conoscere il saldo, prema uno. Per parlare con un operatore, prema zero. La preghiamo di restare in linea.",),
    "pt-br": ("Obrigado por ligar. Para consultar o seu saldo, digite um. Para falar com um atendente, digite zero. Por favor, aguarde na linha.",),
    "nl": ("Bedankt voor uw oproep. Voor uw saldo, toets één. Om een medewerker te spreken, toets nul. Blijft u alstublieft aan de lijn.",),
    "sv": ("Tack för att du ringer. För ditt saldo, tryck ett. För att tala med en handläggare, tryck noll. Var vänlig vänta kvar i linjen.",),
    "pl": ("Dziękujemy za telefon. Aby sprawdzić saldo, naciśnij jeden. Aby porozmawiać z konsultantem, naciśnij zero. Prosimy pozostać na linii.",),
    "ru": ("Спасибо за звонок. Чтобы узнать баланс, нажмите один. Чтобы поговорить с оператором, нажмите ноль. Пожалуйста, оставайтесь на линии.",),
    "tr": ("Aradığınız için teşekkür ederiz. Bakiyenizi öğrenmek için bire basın. Müşteri temsilcisine bağlanmak için sıfıra basın. Lütfen hatta kalın.",),
    "fi": ("Kiitos soitostasi. Saldon kuulet painamalla ykköstä. Asiakaspalvelijalle pääset painamalla nollaa. Ole hyvä ja pysy linjalla.",),
    "hi": ("कॉल करने के लिए धन्यवाद। अपना बैलेंस जानने के लिए एक दबाएं। एजेंट से बात करने के लिए शून्य दबाएं। कृपया लाइन पर बने रहें।",),
}

#: One line of ``espeak-ng --voices``: priority, language, age/gender, name, file (may hold a space), other languages.
_VOICE_LINE = re.compile(r"^\s*\d+\s+(?P<language>\S+)\s+\S+\s+\S+\s+(?P<file>.*?)\s*(?:\(.*\))?\s*$")
#: Seconds one render may take before it counts as hung.
RENDER_TIMEOUT_S = 60.0


@dataclass(frozen=True, order=True)
class SyntheticVoice:
    """One render: ``voice`` is what ``-v`` (espeak-ng) or ``-voice`` (flite) takes, e.g. ``en-gb-x-rp+f2``;
    ``pitch`` is espeak-ng's 0-99 (flite: mean F0 of ``70 + 2.2 * pitch`` Hz); ``speed_wpm`` is words per
    minute (flite: duration stretch ``175 / speed_wpm``); ``text_id`` indexes the voice's language texts."""

    engine: str
    voice: str
    pitch: int
    speed_wpm: int
    text_id: int = 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"pitch must be 0-99, got {self.pitch}")
        if not 80 <= self.speed_wpm <= 500:
            raise ValueError(f"speed_wpm must be 80-500 (espeak-ng's range), got {self.speed_wpm}")
        if not 0 <= self.text_id < len(texts_for(self)):
            raise ValueError(f"text_id must be 0-{len(texts_for(self)) - 1} for voice {self.voice!r}, got {self.text_id}")

    @property
    def language(self) -> str:
        return "en" if self.engine == FLITE else self.voice.split("+", 1)[0]

    @property
    def text(self) -> str:
        return texts_for(self)[self.text_id]

    @property
    def spec(self) -> str:
        """A short, unique name, for cache keys and test ids: ``espeak-ng:en+f2:p70:s175:t1``."""
        return f"{self.engine}:{self.voice}:p{self.pitch}:s{self.speed_wpm}:t{self.text_id}"

    def command(self, output: str | None = None) -> list[str]:
        """The command line that renders this voice (to stdout for espeak-ng; flite needs an ``output`` file)."""
        if self.engine == ESPEAK:
            return [ESPEAK, "-v", self.voice, "-p", str(self.pitch), "-s", str(self.speed_wpm), "--stdout", self.text]
        return [
            FLITE, "-voice", self.voice,
            "--setf", f"int_f0_target_mean={70 + 2.2 * self.pitch:.1f}",
            "--setf", f"duration_stretch={175 / self.speed_wpm:.4f}",
            "-t", self.text, "-o", output or "-",
        ]  # fmt: skip

    def __str__(self) -> str:
        if self.engine == ESPEAK:
            return f"espeak-ng -v {self.voice} -p {self.pitch} -s {self.speed_wpm} (text {self.text_id})"
        return f"flite -voice {self.voice} pitch {self.pitch} speed {self.speed_wpm} wpm (text {self.text_id})"


def texts_for(voice: SyntheticVoice) -> tuple[str, ...]:
    """The texts a voice reads: its language's IVR prose, English for English voices and flite."""
    language = "en" if voice.engine == FLITE else voice.voice.split("+", 1)[0]
    return OTHER_TEXTS.get(language, ENGLISH_TEXTS)


def espeak_voices(selector: str) -> list[tuple[str, str]]:
    """(language, file) for each voice ``espeak-ng --voices=<selector>`` lists, in its order."""
    out = subprocess.run([ESPEAK, f"--voices={selector}"], capture_output=True, text=True, check=True, timeout=RENDER_TIMEOUT_S).stdout
    found = []
    for line in out.splitlines()[1:]:
        match = _VOICE_LINE.match(line)
        if match:
            found.append((match["language"], match["file"]))
    return found


def english_voices() -> list[str]:
    """espeak-ng's own English voices as ``-v`` names (``en`` for British English, as the issue names it);
    mbrola voices are left out (they need the mbrola program and its data, which Debian keeps apart)."""
    names = []
    for language, file in espeak_voices("en"):
        if file.startswith("mb/") or not language.startswith("en"):
            continue
        names.append("en" if file == "gmw/en" else language)
    return sorted(set(names))


def variants() -> list[str]:
    """Every espeak-ng variant, as the name after ``+`` (``f2``, ``klatt3``, ``Mr serious``, ...)."""
    return sorted({file.split("/", 1)[1] for _, file in espeak_voices("variant") if file.startswith("!v/")})


def synthetic_corpus(
    pitches: Sequence[int] = DEFAULT_PITCHES,
    speeds_wpm: Sequence[int] = DEFAULT_SPEEDS_WPM,
    other_languages: Sequence[str] = OTHER_LANGUAGES,
    other_variants: Sequence[str] = OTHER_VARIANTS,
    flite: bool | None = None,
) -> list[SyntheticVoice]:
    """The broad corpus, sorted: every English voice with no variant and with every variant, the other
    languages with ``other_variants``, each at every pitch and speed; flite's voices too when ``flite`` is
    True (None: when flite is installed). English texts rotate with pitch and speed, so every voice reads
    every text."""
    corpus: list[SyntheticVoice] = []
    if shutil.which(ESPEAK):
        english = [f"{v}+{variant}" if variant else v for v in english_voices() for variant in ["", *variants()]]
        others = [f"{lang}+{variant}" if variant else lang for lang in other_languages for variant in other_variants]
        for voice in english + others:
            corpus += _grid(ESPEAK, voice, pitches, speeds_wpm)
    if flite or (flite is None and shutil.which(FLITE)):
        for voice in FLITE_VOICES:
            corpus += _grid(FLITE, voice, pitches, speeds_wpm)
    return sorted(corpus)


def _grid(engine: str, voice: str, pitches: Sequence[int], speeds_wpm: Sequence[int]) -> list[SyntheticVoice]:
    count = len(ENGLISH_TEXTS) if engine == FLITE else len(OTHER_TEXTS.get(voice.split("+", 1)[0], ENGLISH_TEXTS))
    return [
        SyntheticVoice(engine, voice, pitch, speed, (i + j) % count)
        for i, pitch in enumerate(pitches)
        for j, speed in enumerate(speeds_wpm)
    ]


def sample(n: int, seed: int, corpus: Sequence[SyntheticVoice] | None = None) -> list[SyntheticVoice]:
    """A seeded subset of ``n`` voices of ``corpus`` (default: the broad corpus), sorted; the whole corpus
    if it holds no more than ``n``."""
    pool = sorted(synthetic_corpus() if corpus is None else corpus)
    if n >= len(pool):
        return pool
    return sorted(random.Random(seed).sample(pool, n))


def _wav_from_stdout(data: bytes) -> tuple[np.ndarray, int]:
    """espeak-ng's ``--stdout`` WAV (16-bit mono; its size fields say 0x7fffffff) as int16 and rate."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError(f"espeak-ng wrote {len(data)} bytes that are not a WAV file")
    rate_hz = int.from_bytes(data[24:28], "little")
    position = 12
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        if chunk == b"data":
            body = data[position + 8 :]
            return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2"), rate_hz
        position += 8 + size + (size & 1)
    raise RuntimeError("espeak-ng's WAV output holds no data chunk")


def render(voice: SyntheticVoice, rate_hz: int = 8000) -> np.ndarray:
    """``voice`` speaking its text, float32 mono at ``rate_hz``, rounded to the 16-bit grid."""
    if voice.engine == ESPEAK:
        done = subprocess.run(voice.command(), capture_output=True, check=True, timeout=RENDER_TIMEOUT_S)
        pcm, native_hz = _wav_from_stdout(done.stdout)
        samples = int16_to_float(pcm)
    else:
        with tempfile.TemporaryDirectory(prefix="ivrsim-flite-") as folder:
            path = os.path.join(folder, "voice.wav")
            subprocess.run(voice.command(path), capture_output=True, check=True, timeout=RENDER_TIMEOUT_S)
            samples, native_hz = soundfile.read(path, dtype="float32")
    return int16_to_float(float_to_int16(resample(samples, native_hz, rate_hz)))


def engine_version(engine: str) -> str:
    """The engine's version line: part of every cache key, so an upgrade renders afresh."""
    done = subprocess.run([engine, "--version"], capture_output=True, text=True, check=False, timeout=RENDER_TIMEOUT_S)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else engine


class CorpusRenderer:
    """Renders many voices on a bounded thread pool (each render is a subprocess, so ``max_workers``
    renders run at once on as many cores), optionally through a cache folder of FLAC files keyed by the
    voice's spec, its text, the engine's version and the rate."""

    def __init__(self, rate_hz: int = 8000, cache_dir: str | os.PathLike[str] | None = None, max_workers: int | None = None) -> None:
        self.rate_hz = rate_hz
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_workers = max_workers or max(1, min(4, os.cpu_count() or 1))
        self._versions = {engine: engine_version(engine) for engine in ENGINES if shutil.which(engine)}

    def cache_path(self, voice: SyntheticVoice) -> Path | None:
        if self.cache_dir is None:
            return None
        key = "\n".join([voice.spec, voice.text, self._versions.get(voice.engine, ""), str(self.rate_hz)])
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return self.cache_dir / digest[:2] / f"{digest}.flac"

    def render(self, voice: SyntheticVoice) -> np.ndarray:
        """One voice: from the cache when it holds it, else rendered (and stored)."""
        path = self.cache_path(voice)
        if path is not None and path.exists():
            pcm, _ = soundfile.read(path, dtype="int16")
            return int16_to_float(pcm)
        samples = render(voice, self.rate_hz)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            soundfile.write(buffer, float_to_int16(samples), self.rate_hz, format="FLAC", subtype="PCM_16")
            partial = path.with_suffix(f".{os.getpid()}.{id(buffer)}.part")
            partial.write_bytes(buffer.getvalue())
            os.replace(partial, path)
        return samples

    def render_many(self, voices: Iterable[SyntheticVoice]) -> Iterator[tuple[SyntheticVoice, np.ndarray]]:
        """(voice, samples) in the order given, with at most ``2 * max_workers`` renders in flight."""
        pending: deque[tuple[SyntheticVoice, Future[np.ndarray]]] = deque()
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="corpus-render") as pool:
            for voice in voices:
                pending.append((voice, pool.submit(self.render, voice)))
                if len(pending) >= 2 * self.max_workers:
                    done_voice, future = pending.popleft()
                    yield done_voice, future.result()
            while pending:
                done_voice, future = pending.popleft()
                yield done_voice, future.result()


# -- digits under call-progress tones, and dropouts (the other acceptance cases of issue 15) ---------------

#: All 16 keys, in keypad order (rows, then columns).
ALL_KEYS = "123A456B789C*0#D"


@dataclass(frozen=True)
class CallProgressTone:
    """A North American call-progress tone (ITU-T E.180 supplement 2): a pair in Hz, and its cadence in
    seconds (``off_s`` 0: steady)."""

    name: str
    frequencies_hz: tuple[float, float]
    on_s: float
    off_s: float

    def render(self, duration_s: float, rate_hz: int, level_dbm0: float) -> np.ndarray:
        """``duration_s`` of the tone, each frequency at ``level_dbm0``, starting with a tone-on period."""
        n = round(duration_s * rate_hz)
        t = np.arange(n, dtype=np.float64) / rate_hz
        amplitude = dbm0_to_amplitude(level_dbm0)
        tone = np.zeros(n)
        for frequency_hz in self.frequencies_hz:
            tone += amplitude * np.sin(2 * np.pi * frequency_hz * t)
        if self.off_s > 0:
            tone = tone * ((t % (self.on_s + self.off_s)) < self.on_s)
        return np.asarray(tone, dtype=np.float32)


#: The tones a digit may be pressed over: dial tone and ringback (which today's receiver handles), busy and
#: reorder (which share 620 Hz, the case issue 15 is about).
US_CALL_PROGRESS_TONES = (
    CallProgressTone("dial", (350.0, 440.0), 1.0, 0.0),
    CallProgressTone("ringback", (440.0, 480.0), 2.0, 4.0),
    CallProgressTone("busy", (480.0, 620.0), 0.5, 0.5),
    CallProgressTone("reorder", (480.0, 620.0), 0.25, 0.25),
)


@dataclass(frozen=True, eq=False)
class DigitCase:
    """A signal with exactly ``expected`` in it (float32 at ``rate_hz``), and a name saying what it is."""

    name: str
    samples: np.ndarray
    expected: str
    rate_hz: int


def call_progress_cases(
    rate_hz: int = 8000,
    levels_dbm0: Sequence[float] = (-15.0, -20.0),
    timings_ms: Sequence[tuple[float, float]] = ((80.0, 80.0), (50.0, 50.0)),
    tones: Sequence[CallProgressTone] = US_CALL_PROGRESS_TONES,
) -> list[DigitCase]:
    """All 16 keys (on / off ms of ``timings_ms``) pressed while each tone plays, the digits at the tone's
    level and twist 0; the tone starts 100 ms before the first key and runs 300 ms past the last."""
    cases = []
    for tone in tones:
        for level in levels_dbm0:
            for on_ms, off_ms in timings_ms:
                digits = generate_dtmf(ALL_KEYS, rate_hz, DtmfToneSpec(on_ms=on_ms, off_ms=off_ms, level_dbm0=level))
                lead, tail = int(0.1 * rate_hz), int(0.3 * rate_hz)
                signal = tone.render((lead + len(digits) + tail) / rate_hz, rate_hz, level)
                signal[lead : lead + len(digits)] += digits
                name = f"{tone.name} {level:g} dBm0, keys {on_ms:g}/{off_ms:g} ms"
                cases.append(DigitCase(name, signal, ALL_KEYS, rate_hz))
    return cases


def dropout_cases(
    rate_hz: int = 8000,
    gaps_ms: Sequence[float] = (5.0, 10.0),
    positions_ms: Sequence[float] = tuple(range(20, 81)),
    keys: str = ALL_KEYS,
    level_dbm0: float = -10.0,
    tone_ms: float = 100.0,
) -> list[DigitCase]:
    """A ``tone_ms`` tone of each key with a gap of each length starting at each position (ms from the tone's
    start), 50 ms of silence before and 150 ms after: one digit each (Q.24: dropouts of 10 ms are bridged)."""
    cases = []
    before, after = np.zeros(int(0.05 * rate_hz), np.float32), np.zeros(int(0.15 * rate_hz), np.float32)
    for key in keys:
        low_hz, high_hz = key_tones_hz(key)
        tone = dual_tone(low_hz, high_hz, tone_ms / 1000, rate_hz, level_dbm0, level_dbm0)
        for gap in gaps_ms:
            for position in positions_ms:
                cut = tone.copy()
                start = round(position / 1000 * rate_hz)
                cut[start : start + round(gap / 1000 * rate_hz)] = 0.0
                cases.append(DigitCase(f"key {key}, {gap:g} ms gap at {position:g} ms", np.concatenate([before, cut, after]), key, rate_hz))
    return cases
