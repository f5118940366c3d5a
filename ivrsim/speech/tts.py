"""Text to speech with pyttsx3 over espeak-ng, SSML segment by segment, with an on-disk prompt cache.

espeak-ng is one per process and pyttsx3 is not safe to share between threads, so every render runs on
one process-wide worker thread that owns the engine (``_EspeakWorker``, used by every
``Pyttsx3Renderer``); callers on other threads, or on an asyncio loop
(``SpeechSynthesizer.synthesize_async``, which waits on the synthesizer's own small pool, never on
asyncio's default one that downloads could fill), wait for it without blocking anything else. Cache hits
never touch the engine.

Bounds: a prompt renders to at most ``MAX_PROMPT_S`` of audio (checked from the parsed SSML before any
render, by ``check_prompt_length``, and again while rendering); the prompt cache is bounded in bytes, in
memory and on disk, least recently used first.

Settings, as the Canary ``tts`` object has them:

- ``speed``: a multiple of the normal speaking rate (175 words per minute), 0.25 to 4.0, default 1.0;
  espeak-ng speaks between 80 and 450 words per minute, so the rate is clamped there.
- ``pitch``: semitones from the voice's normal pitch, -20 to +20, default 0 (Google's range); espeak-ng's
  pitch parameter (0-100, 50 normal) moves about 2.5 units per semitone.

Each rendered speech segment is trimmed of espeak-ng's leading and trailing silence, so that SSML breaks
are exactly their length; what is returned is rounded to 16-bit PCM, the same as the cache holds, so a
prompt sounds the same whether it was rendered now or read back.

Determinism: espeak-ng keeps some synthesis state between utterances in one process (pitch flutter,
breath noise), so the same text rendered twice in one process can differ by a few percent in length.
A process that renders the same prompts in the same order gets the same audio to the sample, and the
prompt cache makes every later use of a prompt identical; for runs that must match exactly, keep the
cache folder (``--cache-dir``, or the server's data directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import soundfile

from ivrsim.audio.g711 import float_to_int16, int16_to_float
from ivrsim.audio.resample import resample
from ivrsim.exceptions import TtsEngineError, TtsSettingError
from ivrsim.speech.ssml import BreakSegment, ParsedSsml, SpeechSegment, looks_like_ssml, parse_ssml
from ivrsim.speech.voices import Voice, VoiceCatalog

logger = logging.getLogger(__name__)

#: espeak-ng's output rate, in Hz (pyttsx3 writes 22,050 Hz mono WAV).
ENGINE_RATE_HZ = 22050
#: Speaking rate at speed 1.0, in words per minute (espeak-ng's default).
BASE_RATE_WPM = 175.0
MIN_RATE_WPM, MAX_RATE_WPM = 80.0, 450.0
SPEED_RANGE = (0.25, 4.0)
PITCH_RANGE_ST = (-20.0, 20.0)
#: espeak-ng pitch units per semitone, and its normal pitch.
ESPEAK_PITCH_PER_ST = 2.5
ESPEAK_PITCH_NORMAL = 50.0
#: Longest text accepted, in characters.
MAX_TEXT_CHARS = 20_000
#: Samples below this magnitude at the ends of a rendered segment count as silence.
TRIM_THRESHOLD = 1e-3
#: Sample rates prompts can be rendered at, in Hz.
RATE_RANGE_HZ = (8000, 48000)
#: Longest audio one prompt may render to, in seconds (breaks and speech together).
MAX_PROMPT_S = 600.0
#: Bytes of rendered prompts kept in memory, and on disk, by default.
DEFAULT_MEMORY_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_DISK_CACHE_BYTES = 500 * 1024 * 1024
#: Threads that wait on renders and read the cache for ``synthesize_async``.
ASYNC_WORKERS = 2


@dataclass(frozen=True)
class TtsRequest:
    """Everything that changes a prompt's audio. ``ssml`` None means: SSML if the text holds SSML tags."""

    text: str
    voice: str | None = None
    speed: float = 1.0
    pitch: float = 0.0
    rate_hz: int = 8000
    ssml: bool | None = None


@dataclass
class Prompt:
    """A rendered prompt: float32 mono samples at ``rate_hz``; warnings for SSML passed over."""

    samples: np.ndarray
    rate_hz: int
    voice: Voice
    cache_key: str
    cache_hit: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate_hz


class _EspeakWorker:
    """The one thread that talks to espeak-ng. espeak-ng is a process-wide singleton (one voice, one
    synthesis callback per process), so every ``Pyttsx3Renderer`` shares this worker."""

    _instance: _EspeakWorker | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def shared(cls) -> _EspeakWorker:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivrsim-tts")
        self._espeak = None
        self._engine = None
        self._chunks: list[bytes] = []

    # -- on the worker thread -------------------------------------------------------------------------

    def start(self):  # type: ignore[no-untyped-def]
        if self._espeak is None:
            try:
                import pyttsx3
                from pyttsx3.drivers import _espeak

                self._engine = pyttsx3.init("espeak")  # held: it keeps espeak-ng initialised for the process
            except Exception as error:  # pyttsx3 raises bare RuntimeError/OSError when espeak-ng is missing
                raise TtsEngineError(
                    f"pyttsx3 could not start espeak-ng ({error}); install it with `apt-get install espeak-ng`"
                ) from error

            def collect(wav, numsamples, events):  # type: ignore[no-untyped-def]
                if numsamples > 0:
                    self._chunks.append(ctypes.string_at(wav, numsamples * ctypes.sizeof(ctypes.c_short)))
                return 0

            _espeak.SetSynthCallback(collect)
            self._espeak = _espeak
        return self._espeak

    def version(self) -> str:
        espeak = self.start()
        espeak_version = espeak.Info(None)
        espeak_text = espeak_version.decode() if isinstance(espeak_version, bytes) else str(espeak_version)
        return f"pyttsx3-{version('pyttsx3')}/espeak-ng-{espeak_text}"

    def render(self, text: str, espeak_voice: str, rate_wpm: float, espeak_pitch: float) -> np.ndarray:
        espeak = self.start()
        if espeak.SetVoiceByName(espeak_voice.encode("utf-8")) != 0:
            raise TtsEngineError(f"espeak-ng has no voice {espeak_voice!r} (see `espeak-ng --voices`)")
        espeak.SetParameter(espeak.RATE, int(round(rate_wpm)), 0)
        espeak.SetParameter(espeak.PITCH, int(round(espeak_pitch)), 0)
        espeak.SetParameter(espeak.VOLUME, 100, 0)
        self._chunks = []
        data = text.encode("utf-8")
        try:
            # Not pyttsx3's ``Synth``: it passes ``len(text) * 10`` as the size, and espeak-ng copies that
            # many bytes from the pointer, reading past the end of ``data`` (a segfault when the read runs
            # off a mapping). The size is the text and its NUL: espeak-ng does not terminate its copy.
            flags = espeak.ENDPAUSE | espeak.CHARS_UTF8
            status = espeak.cSynth(data, len(data) + 1, 0, espeak.POS_CHARACTER, 0, flags, None, None)
            espeak.Synchronize()
        except Exception as error:
            raise TtsEngineError(f"espeak-ng failed to render {text[:40]!r} with voice {espeak_voice}: {error}") from error
        if status != 0:
            raise TtsEngineError(f"espeak-ng refused {text[:40]!r} (espeak_Synth returned {status})")
        return int16_to_float(np.frombuffer(b"".join(self._chunks), dtype=np.int16))


class Pyttsx3Renderer:
    """Renders text with pyttsx3's espeak-ng binding, on the one thread that owns espeak-ng.

    pyttsx3 starts espeak-ng (``pyttsx3.init("espeak")``) and its ctypes binding does the speaking, but
    not its event loop: in pyttsx3 2.99 that loop polls every 10 ms, writes its file before appending the
    last chunk of audio, and races espeak-ng's synthesis thread, so that short texts came out empty now
    and then. Here each render sets voice, rate and pitch, calls ``Synth``, waits with ``Synchronize``
    and collects the 16-bit chunks from the synthesis callback.
    """

    def __init__(self) -> None:
        self._worker = _EspeakWorker.shared()
        self._engine_version: str | None = None

    @property
    def engine_version(self) -> str:
        """``pyttsx3-X/espeak-ng-Y``: part of every cache key."""
        if self._engine_version is None:
            self._engine_version = self._worker.executor.submit(self._worker.version).result()
        return self._engine_version

    def submit(self, text: str, espeak_voice: str, rate_wpm: float, espeak_pitch: float) -> Future[np.ndarray]:
        """Queue a render; the future gives float32 samples at ENGINE_RATE_HZ."""
        return self._worker.executor.submit(self._worker.render, text, espeak_voice, rate_wpm, espeak_pitch)

    def close(self) -> None:
        """Nothing to release: the espeak-ng worker lives as long as the process (espeak-ng cannot be
        started twice in one process)."""


class PromptCache:
    """Rendered prompts on disk (16-bit WAV named by the key), with the most recent ones in memory.

    Both are bounded in bytes and forget the least recently used prompts first: ``memory_max_bytes`` of
    float32 samples, ``disk_max_bytes`` of WAV files (the disk order is rebuilt from modification times
    at start, and a hit refreshes it)."""

    def __init__(
        self,
        folder: Path | None,
        memory_items: int = 256,
        memory_max_bytes: int = DEFAULT_MEMORY_CACHE_BYTES,
        disk_max_bytes: int = DEFAULT_DISK_CACHE_BYTES,
    ) -> None:
        self.folder = folder
        self._memory: OrderedDict[str, tuple[np.ndarray, int]] = OrderedDict()
        self._memory_items = memory_items
        self._memory_max_bytes = memory_max_bytes
        self._memory_bytes = 0
        self._disk_max_bytes = disk_max_bytes
        self._disk: OrderedDict[str, int] = OrderedDict()  # key -> file size, least recently used first
        self._lock = threading.Lock()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            found = []
            for path in folder.glob("*.wav"):
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    found.append((stat.st_mtime_ns, path.stem, stat.st_size))
            for _, key, size in sorted(found):
                self._disk[key] = size
            with self._lock:
                self._evict_disk()

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    @property
    def disk_bytes(self) -> int:
        return sum(self._disk.values())

    def get(self, key: str) -> tuple[np.ndarray, int] | None:
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        if self.folder is None:
            return None
        path = self.folder / f"{key}.wav"
        try:
            samples, rate_hz = soundfile.read(path, dtype="float32")
        except (OSError, soundfile.LibsndfileError, RuntimeError):
            return None
        with self._lock:
            if key in self._disk:
                self._disk.move_to_end(key)
        with contextlib.suppress(OSError):
            os.utime(path)
        self._remember(key, samples, int(rate_hz))
        return samples, int(rate_hz)

    def put(self, key: str, samples: np.ndarray, rate_hz: int) -> None:
        self._remember(key, samples, rate_hz)
        if self.folder is None:
            return
        size = 44 + 2 * len(samples)  # 16-bit mono WAV
        if size > self._disk_max_bytes:
            return
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".wav.part")
        os.close(handle)
        try:
            soundfile.write(temporary, samples, rate_hz, subtype="PCM_16", format="WAV")
            os.replace(temporary, self.folder / f"{key}.wav")
        except (OSError, soundfile.LibsndfileError, RuntimeError) as error:
            logger.warning("prompt cache: could not write %s: %s", key, error)
            with contextlib.suppress(OSError):
                os.remove(temporary)
            return
        with self._lock:
            self._disk[key] = size
            self._disk.move_to_end(key)
            self._evict_disk(keep=key)

    def _evict_disk(self, keep: str | None = None) -> None:
        """Remove the least recently used files until the folder is within its bound (lock held)."""
        assert self.folder is not None
        total = sum(self._disk.values())
        for key in list(self._disk):
            if total <= self._disk_max_bytes:
                break
            if key == keep:
                continue
            total -= self._disk.pop(key)
            with contextlib.suppress(OSError):
                os.remove(self.folder / f"{key}.wav")

    def _remember(self, key: str, samples: np.ndarray, rate_hz: int) -> None:
        size = int(samples.nbytes)
        if size > self._memory_max_bytes:
            return
        with self._lock:
            previous = self._memory.pop(key, None)
            if previous is not None:
                self._memory_bytes -= int(previous[0].nbytes)
            self._memory[key] = (samples, rate_hz)
            self._memory_bytes += size
            while len(self._memory) > self._memory_items or self._memory_bytes > self._memory_max_bytes:
                _, (dropped, _) = self._memory.popitem(last=False)
                self._memory_bytes -= int(dropped.nbytes)


class SpeechSynthesizer:
    """Turns ``TtsRequest``s into ``Prompt``s: validates, parses SSML, renders or reads the cache."""

    def __init__(
        self,
        catalog: VoiceCatalog | None = None,
        cache: PromptCache | None = None,
        renderer: Pyttsx3Renderer | None = None,
    ) -> None:
        self.catalog = catalog or VoiceCatalog.load()
        self.cache = cache or PromptCache(None)
        self.renderer = renderer or Pyttsx3Renderer()
        self._executor = ThreadPoolExecutor(max_workers=ASYNC_WORKERS, thread_name_prefix="ivrsim-tts-wait")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.renderer.close()

    def synthesize(self, request: TtsRequest) -> Prompt:
        """Render ``request`` (or read it from the cache); blocks the calling thread."""
        voice, parsed = self.prepare(request)
        key = self.cache_key(request, voice)
        cached = self.cache.get(key)
        if cached is not None:
            return Prompt(cached[0], cached[1], voice, key, True, list(parsed.warnings))
        samples = self._render(parsed, voice, request)
        if len(samples) > MAX_PROMPT_S * request.rate_hz:  # the render is exact where the estimate was not
            raise PromptTooLongError(len(samples) / request.rate_hz)
        self.cache.put(key, samples, request.rate_hz)
        return Prompt(samples, request.rate_hz, voice, key, False, list(parsed.warnings))

    async def synthesize_async(self, request: TtsRequest) -> Prompt:
        """``synthesize`` without blocking the event loop: it waits on the synthesizer's own threads (the
        render itself on the espeak-ng thread), so that asyncio's default pool can be full without delaying it."""
        return await asyncio.wrap_future(self._executor.submit(self.synthesize, request))

    def prepare(self, request: TtsRequest) -> tuple[Voice, ParsedSsml]:
        """Validate a request: the voice, the settings, and the SSML. Raises SpeechError subclasses."""
        voice = self.catalog.get(request.voice)
        if not request.text or not request.text.strip():
            raise TtsSettingError("text", "is empty: give the words to speak")
        if len(request.text) > MAX_TEXT_CHARS:
            raise TtsSettingError("text", f"is {len(request.text)} characters; the limit is {MAX_TEXT_CHARS}")
        if not (math.isfinite(request.speed) and SPEED_RANGE[0] <= request.speed <= SPEED_RANGE[1]):
            raise TtsSettingError("speed", f"must be between {SPEED_RANGE[0]} and {SPEED_RANGE[1]} (1.0 is normal), got {request.speed}")
        if not (math.isfinite(request.pitch) and PITCH_RANGE_ST[0] <= request.pitch <= PITCH_RANGE_ST[1]):
            raise TtsSettingError("pitch", f"must be between {PITCH_RANGE_ST[0]:g} and {PITCH_RANGE_ST[1]:g} semitones (0 is normal), got {request.pitch}")
        if not RATE_RANGE_HZ[0] <= request.rate_hz <= RATE_RANGE_HZ[1]:
            raise TtsSettingError("rate_hz", f"must be between {RATE_RANGE_HZ[0]} and {RATE_RANGE_HZ[1]} Hz, got {request.rate_hz}")
        parsed = check_prompt_length(request.text, request.speed, request.ssml)
        return voice, parsed

    def cache_key(self, request: TtsRequest, voice: Voice) -> str:
        material = {
            "engine": self.renderer.engine_version,
            "text": request.text,
            "ssml": request.ssml,
            "espeak": voice.espeak,
            "speed": round(request.speed, 6),
            "pitch": round(request.pitch, 6),
            "rate_hz": request.rate_hz,
            "trim": TRIM_THRESHOLD,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]

    def _render(self, parsed: ParsedSsml, voice: Voice, request: TtsRequest) -> np.ndarray:
        futures: list[Future[np.ndarray] | int] = []
        gains = []
        for segment in parsed.segments:
            if isinstance(segment, BreakSegment):
                futures.append(int(round(segment.duration_s * request.rate_hz)))
                gains.append(1.0)
                continue
            assert isinstance(segment, SpeechSegment)
            rate_wpm = min(max(BASE_RATE_WPM * request.speed * segment.prosody.rate, MIN_RATE_WPM), MAX_RATE_WPM)
            pitch = ESPEAK_PITCH_NORMAL + ESPEAK_PITCH_PER_ST * (request.pitch + segment.prosody.pitch_st)
            futures.append(self.renderer.submit(segment.text, voice.espeak, rate_wpm, min(max(pitch, 0.0), 100.0)))
            gains.append(10.0 ** (segment.prosody.volume_db / 20.0) if math.isfinite(segment.prosody.volume_db) else 0.0)
        parts = []
        length, limit = 0, MAX_PROMPT_S * request.rate_hz
        try:
            for pending, gain in zip(futures, gains):
                if isinstance(pending, int):
                    parts.append(np.zeros(pending, dtype=np.float32))
                else:
                    speech = trim_silence(pending.result())
                    parts.append(resample(speech, ENGINE_RATE_HZ, request.rate_hz) * np.float32(gain))
                length += len(parts[-1])
                if length > limit:  # stop here: the rest would only add to what is refused
                    raise PromptTooLongError(length / request.rate_hz, at_least=True)
        finally:
            for pending in futures:
                if not isinstance(pending, int):
                    pending.cancel()
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return int16_to_float(float_to_int16(samples))


class PromptTooLongError(TtsSettingError):
    """A prompt that renders (or would render) to more than ``MAX_PROMPT_S`` of audio."""

    code = "prompt_too_long"

    def __init__(self, seconds: float, at_least: bool = False, detail: str = "") -> None:
        amount = f"{'at least ' if at_least else ''}{seconds:.0f} s"
        super().__init__(
            "text",
            f"renders to {amount} of audio{detail}; the limit is {MAX_PROMPT_S:g} s per prompt (MAX_PROMPT_S): "
            "shorten the text or its <break>s, or split it over several calls",
        )
        self.seconds = seconds


def estimate_prompt_s(parsed: ParsedSsml, speed: float = 1.0) -> tuple[float, float]:
    """(seconds of breaks, estimated seconds of speech) of a parsed prompt: breaks exactly, speech as
    its words at the rate they will be spoken (espeak-ng's clamp included)."""
    breaks_s = speech_s = 0.0
    speed = speed if math.isfinite(speed) and speed > 0 else 1.0
    for segment in parsed.segments:
        if isinstance(segment, BreakSegment):
            breaks_s += segment.duration_s
        else:
            rate_wpm = min(max(BASE_RATE_WPM * speed * segment.prosody.rate, MIN_RATE_WPM), MAX_RATE_WPM)
            speech_s += len(segment.text.split()) * 60.0 / rate_wpm
    return breaks_s, speech_s


def check_prompt_length(text: str, speed: float = 1.0, ssml: bool | None = None) -> ParsedSsml:
    """Parse ``text`` (SSML when it holds SSML tags, or as ``ssml`` says) and refuse it with
    ``PromptTooLongError`` when it would render to more than ``MAX_PROMPT_S``; cheap, no rendering."""
    is_ssml = looks_like_ssml(text) if ssml is None else ssml
    parsed = parse_ssml(text) if is_ssml else ParsedSsml([SpeechSegment(" ".join(text.split()))])
    breaks_s, speech_s = estimate_prompt_s(parsed, speed)
    if breaks_s + speech_s > MAX_PROMPT_S:
        raise PromptTooLongError(breaks_s + speech_s, detail=f" ({breaks_s:.0f} s of breaks, about {speech_s:.0f} s of speech)")
    return parsed


def trim_silence(samples: np.ndarray, threshold: float = TRIM_THRESHOLD) -> np.ndarray:
    """``samples`` without the near-silent stretches at either end."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if len(loud) == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]
