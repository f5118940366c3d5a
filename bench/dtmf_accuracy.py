"""DTMF accuracy next to multimon-ng and spandsp: digits found within the limits, digits refused beyond
them, digits under call-progress tones and across dropouts, and talk-off (false digits from speech and music,
synthetic and recorded).

Usage: .venv/bin/python bench/dtmf_accuracy.py [--seed 1] [--synthetic 300] [--real] [--json]

All signals are generated here from the seed, at 22,050 Hz (the only rate multimon-ng reads) and decoded
by both; ivrsim also decodes the same signals resampled to 8 kHz through G.711 mu-law, as a call carries
them.
- within the limits: 320 keys, each with a random level (0 to -25 dBm0), twist (-4 to +8 dB), offsets
  (+-1.5 % per tone), tone (40-150 ms) and pause (40-200 ms), in white noise 15 dB below a -25 dBm0 tone;
- beyond the limits: 320 keys that must be refused, each nominal but for one thing: a tone of 23 ms, an
  offset of 3.5 % on one tone, twist of 10 dB normal or 6 dB reverse, or a level of -55 dBm0;
- talk-off: espeak-ng speaking an IVR script in 20 voices and languages at three levels, plus 5 minutes
  of synthetic music (harmonics, vibrato, chords);
- acceptance sweep: each key with both tones at -3 to -41 dBm0 (twist -4, 0, +8 dB), 1.5 % off, 40 and 45 ms,
  with and without noise, through G.711 (``acceptance_sweep``);
- talk-down: every key four times (80/80 ms, -10 dBm0) with each voice's speech under them at -20, -25 and
  -30 dBm0: keys right, by edit alignment;
- call progress: all 16 keys (80/80 and 50/50 ms) under US dial tone, ringback, busy and reorder at -15 and
  -20 dBm0, keys at the same level; dropouts: a 100 ms tone of each key with a 5 or 10 ms break starting at
  every ms from 20 to 80 ms (``ivrsim.testing.speech_corpus``), decoded at 8 kHz; short tones: 50-80 ms with
  a 5 or 10 ms break anywhere that leaves 10 ms on either side, at four alignments (``short_tone_dropouts``);
- synthetic voices: ``--synthetic N`` voices drawn (seeded) from the broad espeak-ng / flite corpus
  (bench/dtmf_synthetic_corpus.py runs all of it), at 8 kHz: false digits per hour;
- real recordings (``--real``): the corpus bench/dtmf_real_corpus.py builds from Debian packages (7.6 h of
  IVR prompts, music, animals), at 8 kHz: false digits per hour.
spandsp (Debian's libspandsp2, bench/spandsp_rx.py) reads 8 kHz: it gets each signal resampled to 8 kHz.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from ivrsim.audio import g711
from ivrsim.audio.dtmf_generator import DtmfToneSpec, dual_tone, generate_dtmf
from ivrsim.audio.dtmf_keys import KEYPAD, key_tones_hz
from ivrsim.audio.dtmf_receiver import detect_dtmf
from ivrsim.audio.levels import dbm0_to_power, signal_level_dbm0
from ivrsim.audio.resample import resample
from ivrsim.media.files import read_audio_file
from ivrsim.testing.speech_corpus import CorpusRenderer, DigitCase, call_progress_cases, dropout_cases, sample

import spandsp_rx  # bench/, beside this script

RATE_HZ = 22050
KEYS = "".join(KEYPAD)
VOICES = ("en-us", "en-us+f3", "en", "en+m3", "fr", "fr+f3", "es", "de", "it", "pt", "ru", "ko", "ja", "hi", "ar", "fi", "pl", "nl", "sv", "tr")
SCRIPT = (
    "Thank you for calling. Your account number is 4 5 7 1 2 9 8 0. Press one for billing, two for sales, or stay "
    "on the line. The quick brown fox jumps over the lazy dog. Eight hundred sixty seven, five three oh nine. "
    "Hmmmm. Aaaaaah. Eeeeee. Ooooooo."
)


def keys_signal(rng: np.random.Generator, count: int, beyond: bool) -> tuple[np.ndarray, str]:
    parts, sent = [np.zeros(int(0.1 * RATE_HZ), dtype=np.float32)], ""
    for i in range(count):
        key = str(rng.choice(list(KEYS)))
        low_hz, high_hz = key_tones_hz(key)
        level, twist, on_s = rng.uniform(-25, 0), rng.uniform(-4, 8), rng.uniform(0.040, 0.150)
        if not beyond:
            low_hz *= 1 + rng.uniform(-1.5, 1.5) / 100
            high_hz *= 1 + rng.uniform(-1.5, 1.5) / 100
        else:  # one parameter beyond its limit, the others nominal
            level, twist, on_s = rng.uniform(-20, -5), 0.0, 0.080
            kind = i % 5
            if kind == 0:
                on_s = 0.023
            elif kind == 1:
                low_hz *= 1 + float(rng.choice([-3.5, 3.5])) / 100
            elif kind == 2:
                high_hz *= 1 + float(rng.choice([-3.5, 3.5])) / 100
            elif kind == 3:
                twist = float(rng.choice([10.0, -6.0]))
            else:
                level = -55.0
        parts.append(dual_tone(low_hz, high_hz, on_s, RATE_HZ, level, level - twist))
        parts.append(np.zeros(int(rng.uniform(0.040, 0.200) * RATE_HZ), dtype=np.float32))
        sent += key
    signal = np.concatenate(parts)
    signal += rng.normal(0, np.sqrt(dbm0_to_power(-25) / 10**1.5), len(signal)).astype(np.float32)
    return signal, ("" if beyond else sent)


def speech(folder: Path) -> list[np.ndarray]:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed: run ./setup.sh")
    out = []
    for voice in VOICES:
        path = folder / "speech.wav"
        subprocess.run([espeak, "-v", voice, "-w", str(path), SCRIPT], check=True, capture_output=True)
        clip = read_audio_file(path)
        samples = resample(clip.samples[:, 0], clip.rate_hz, RATE_HZ)
        out += [samples * np.float32(10 ** (gain / 20)) for gain in (-10.0, 0.0, 6.0)]
    return out


#: Keys pressed while someone talks (talk-down): every key four times, 80 ms on and off, at this level, in dBm0.
TALK_DOWN_KEYS, TALK_DOWN_KEY_DBM0 = "123A456B789C*0#D" * 4, -10.0
#: Levels of the speech under them, in dBm0 (10, 15 and 20 dB under each tone).
TALK_DOWN_SPEECH_DBM0 = (-20.0, -25.0, -30.0)


def keys_under_speech(clips: list[np.ndarray]) -> dict[float, list[np.ndarray]]:
    """``TALK_DOWN_KEYS`` with each speech clip under them (looped or cut to their length) at each of
    ``TALK_DOWN_SPEECH_DBM0``."""
    keys = generate_dtmf(TALK_DOWN_KEYS, RATE_HZ, DtmfToneSpec(on_ms=80, off_ms=80, level_dbm0=TALK_DOWN_KEY_DBM0))
    out: dict[float, list[np.ndarray]] = {level: [] for level in TALK_DOWN_SPEECH_DBM0}
    for clip in clips:
        talk = np.resize(clip, len(keys)).astype(np.float32)
        for level in TALK_DOWN_SPEECH_DBM0:
            out[level].append(keys + talk * np.float32(10 ** ((level - signal_level_dbm0(talk)) / 20)))
    return out


def music(rng: np.random.Generator, seconds: float) -> np.ndarray:
    out = np.zeros(int(seconds * RATE_HZ))
    position = 0
    while position < len(out):
        n = min(int(float(rng.choice([0.1, 0.15, 0.2, 0.3, 0.4, 0.6])) * RATE_HZ), len(out) - position)
        t = np.arange(n) / RATE_HZ
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(1.0, 6.0))
        for _ in range(int(rng.integers(1, 4))):
            f0 = 440.0 * 2.0 ** ((int(rng.integers(55, 97)) - 69) / 12.0)
            phase = 2 * np.pi * f0 * np.cumsum(1.0 + 0.004 * np.sin(2 * np.pi * 5.5 * t)) / RATE_HZ
            for h in range(1, int(rng.integers(2, 7)) + 1):
                if h * f0 < RATE_HZ / 2:
                    out[position : position + n] += envelope * np.sin(h * phase) / h * 0.15
        position += n
    return out.astype(np.float32)


def multimon(signal: np.ndarray, folder: Path) -> str:
    raw = folder / "signal.raw"
    np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2").tofile(raw)
    out = subprocess.run(["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "raw", str(raw)], capture_output=True, text=True, check=True).stdout
    return "".join(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("DTMF:"))


def ivrsim_22k(signal: np.ndarray) -> str:
    return "".join(d.key for d in detect_dtmf(signal, RATE_HZ))


def ivrsim_call(signal: np.ndarray) -> str:
    return "".join(d.key for d in detect_dtmf(g711.round_trip(resample(signal, RATE_HZ, 8000)), 8000))


def spandsp(signal: np.ndarray, rate_hz: int = RATE_HZ) -> str:
    return spandsp_rx.decode(resample(signal, rate_hz, 8000))


def score(sent: str, got: str) -> dict[str, int]:
    """Keys right (in order), and keys extra or missing, by edit alignment."""
    rows, cols = len(sent) + 1, len(got) + 1
    cost = np.zeros((rows, cols), dtype=int)
    cost[:, 0] = np.arange(rows)
    cost[0, :] = np.arange(cols)
    for i in range(1, rows):
        for j in range(1, cols):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1, cost[i - 1, j - 1] + (sent[i - 1] != got[j - 1]))
    return {"sent": len(sent), "decoded": len(got), "edit_distance": int(cost[-1, -1])}


def decoders_8k(folder: Path) -> dict[str, Callable[[np.ndarray], str]]:
    """The decoders of the corpus sections, each taking 8 kHz audio."""
    out: dict[str, Callable[[np.ndarray], str]] = {"ivrsim @8 kHz": lambda s: "".join(d.key for d in detect_dtmf(s, 8000))}
    if shutil.which("multimon-ng"):
        out["multimon-ng @22.05 kHz"] = lambda s: multimon(resample(s, 8000, RATE_HZ), folder)
    if spandsp_rx.available():
        out["spandsp @8 kHz"] = spandsp_rx.decode
    return out


def corpora(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Call progress, dropouts, synthetic voices and (with ``--real``) real recordings, per decoder."""
    decoders = decoders_8k(folder)
    out: dict[str, Any] = {"call_progress": {}, "dropouts": {}, "sweep": {}}
    progress, breaks, sweep = call_progress_cases(), dropout_cases(), acceptance_sweep(args.seed)
    short = short_tone_dropouts()
    out["short_dropouts"] = {}
    for label, decode in decoders.items():
        if not label.startswith("multimon"):  # a process per case: minutes; it is in the other rows
            out["short_dropouts"][label] = {
                f"{tone_ms} ms, {gap_ms} ms break": f"{sum(decode(c.samples) == c.expected for c in cases)} of {len(cases)}"
                for (tone_ms, gap_ms), cases in short.items()
            }
        out["sweep"][label] = {"tones": len(sweep), "right": sum(decode(c.samples) == c.expected for c in sweep)}
        right = sum(len(c.expected) - score(c.expected, decode(c.samples))["edit_distance"] for c in progress)
        out["call_progress"][label] = {"keys": sum(len(c.expected) for c in progress), "right": right}
        out["dropouts"][label] = {"tones": len(breaks), "right": sum(decode(c.samples) == c.expected for c in breaks)}
    if args.synthetic:
        renderer = CorpusRenderer(8000, Path.home() / ".cache" / "ivrsim" / "synthetic-corpus")
        voices = sample(args.synthetic, args.seed)
        out["synthetic_voices"] = false_digits(decoders, (s for _, s in renderer.render_many(voices)))
    if args.real:
        cache = Path.home() / ".cache" / "ivrsim" / "dtmf-corpus"
        manifest = cache / "manifest.json"
        if not manifest.exists():
            raise SystemExit(f"no real-recording corpus in {cache}: build it with .venv/bin/python bench/dtmf_real_corpus.py --convert-only")
        files = [cache / entry["file"] for entry in json.loads(manifest.read_text())["files"]]
        out["real_recordings"] = false_digits(decoders, (read_mono(path) for path in files))
    return out


#: Where a short tone starts against the receiver's 51-sample half-blocks: that many samples of silence first.
ALIGNMENTS = (0, 13, 26, 39)


def short_tone_dropouts() -> dict[tuple[int, int], list[DigitCase]]:
    """Each key in a 50, 60, 70 or 80 ms tone with a 5 or 10 ms break starting at every ms that leaves 10 ms
    of tone on either side, at each of ``ALIGNMENTS``: one digit each (Q.24 bridges breaks of 10 ms and less in
    any tone of 40 ms)."""
    return {
        (tone_ms, gap_ms): [
            DigitCase(f"{case.name}, {shift} samples later", np.concatenate([np.zeros(shift, np.float32), case.samples]), case.expected, case.rate_hz)
            for case in dropout_cases(8000, (float(gap_ms),), tuple(range(10, tone_ms - gap_ms - 9)), tone_ms=float(tone_ms))
            for shift in ALIGNMENTS
        ]
        for tone_ms in (50, 60, 70, 80)
        for gap_ms in (5, 10)
    }


def acceptance_sweep(seed: int) -> list[DigitCase]:
    """Each key with both tones between -3 and -41 dBm0 (the louder at -3, -10, -25, -33 or -41; twist -4,
    0 or +8 dB where the weaker stays within -41), each tone 1.5 % off (either way, seeded), 40 and 45 ms
    long, alone and in white noise 15 dB under the weaker tone (or under -25 dBm0, whichever is lower),
    through G.711 mu-law at 8 kHz: one digit each (ITU-T Q.24)."""
    rng = np.random.default_rng(seed)
    cases = []
    for louder in (-3.0, -10.0, -25.0, -33.0, -41.0):
        for key in KEYS:
            for twist in (-4.0, 0.0, 8.0):
                level = louder - abs(twist)
                if level < -41.0:
                    continue
                for on_s in (0.040, 0.045):
                    for noisy in (False, True):
                        low_hz, high_hz = key_tones_hz(key)
                        low_hz *= 1 + float(rng.choice([-1.5, 1.5])) / 100
                        high_hz *= 1 + float(rng.choice([-1.5, 1.5])) / 100
                        low_level, high_level = (louder, level) if twist > 0 else (level, louder)
                        tone = dual_tone(low_hz, high_hz, on_s, 8000, low_level, high_level)
                        signal = np.concatenate([np.zeros(400, np.float32), tone, np.zeros(400, np.float32)])
                        if noisy:
                            sigma = np.sqrt(dbm0_to_power(min(level, -25.0) - 15.0))
                            signal = signal + rng.normal(0.0, sigma, len(signal)).astype(np.float32)
                        name = f"{key} {level:g} dBm0 twist {twist:g} {on_s * 1000:g} ms{' noise' if noisy else ''}"
                        cases.append(DigitCase(name, g711.round_trip(signal), key, 8000))
    return cases


def read_mono(path: Path) -> np.ndarray:
    samples, rate_hz = soundfile.read(str(path), dtype="float32")
    return resample(samples if samples.ndim == 1 else samples[:, 0], rate_hz, 8000)


def false_digits(decoders: dict[str, Callable[[np.ndarray], str]], signals: Iterable[np.ndarray]) -> dict[str, Any]:
    """Every digit decoded from ``signals`` (nobody pressed a key in them), per decoder, and per hour."""
    seconds, counts = 0.0, dict.fromkeys(decoders, 0)
    for signal in signals:
        seconds += len(signal) / 8000
        for label, decode in decoders.items():
            counts[label] += len(decode(signal))
    hours = seconds / 3600
    return {"hours": round(hours, 2), "decoders": {k: {"false_digits": v, "per_hour": v / hours if hours else 0.0} for k, v in counts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--synthetic", type=int, default=300, help="synthetic voices to draw from the broad corpus (0: none)")
    parser.add_argument("--real", action="store_true", help="also decode the real-recording corpus (bench/dtmf_real_corpus.py builds it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    decoders = {"ivrsim @22.05 kHz": ivrsim_22k, "ivrsim @8 kHz via G.711": ivrsim_call}
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if shutil.which("multimon-ng"):
            decoders["multimon-ng @22.05 kHz"] = lambda s: multimon(s, folder)
        if spandsp_rx.available():
            decoders["spandsp @8 kHz"] = spandsp
        within, within_sent = keys_signal(rng, 320, beyond=False)
        beyond, _ = keys_signal(rng, 320, beyond=True)
        voices = speech(folder)
        talk = voices + [music(rng, 300.0)]
        talk_s = sum(len(t) for t in talk) / RATE_HZ
        under_speech = keys_under_speech(voices[1::3])  # each voice once, at its own level
        for label, decode in decoders.items():
            results[label] = {
                "within_limits": score(within_sent, decode(within)),
                "beyond_limits_accepted": len(decode(beyond)),
                "talk_off_digits": sum(len(decode(t)) for t in talk),
                "talk_off_audio_s": round(talk_s),
                "keys_under_speech": {
                    level: sum(len(TALK_DOWN_KEYS) - score(TALK_DOWN_KEYS, decode(x))["edit_distance"] for x in signals)
                    for level, signals in under_speech.items()
                },
            }
        extra = corpora(args, folder)
    if args.json:
        print(json.dumps({"synthetic_signals": results, **extra}, indent=2))
        return
    print(f"{'decoder':<26} {'within limits (320 keys)':>26} {'beyond limits accepted':>24} {'talk-off digits':>16}")
    for label, r in results.items():
        w = r["within_limits"]
        print(f"{label:<26} {w['decoded']:>11} decoded, {w['edit_distance']:>3} errors {r['beyond_limits_accepted']:>15} of 320 "
              f"{r['talk_off_digits']:>10} in {r['talk_off_audio_s']} s")
    print(f"\nkeys right under speech (talk-down: {len(TALK_DOWN_KEYS)} keys at {TALK_DOWN_KEY_DBM0:g} dBm0 in each of {len(VOICES)} voices):")
    for label, r in results.items():
        print(f"{label:<26} " + ", ".join(f"speech at {level:g} dBm0: {right} of {len(TALK_DOWN_KEYS) * len(VOICES)}" for level, right in r["keys_under_speech"].items()))
    print()
    print(f"{'decoder':<26} {'sweep -3..-41 dBm0':>20} {'call progress (keys right)':>28} {'dropouts (tones right)':>24}")
    for label in extra["call_progress"]:
        w, c, d = extra["sweep"][label], extra["call_progress"][label], extra["dropouts"][label]
        print(f"{label:<26} {w['right']:>10} of {w['tones']:<7} {c['right']:>14} of {c['keys']:<11} {d['right']:>12} of {d['tones']}")
    print(f"\nshort tones with a break (all 16 keys, every start, {len(ALIGNMENTS)} alignments):")
    for label, rows in extra["short_dropouts"].items():
        print(f"{label:<26} " + ", ".join(f"{k}: {v}" for k, v in rows.items()))
    for section in ("synthetic_voices", "real_recordings"):
        if section in extra:
            print(f"\n{section.replace('_', ' ')}: {extra[section]['hours']} h")
            for label, r in extra[section]["decoders"].items():
                print(f"{label:<26} {r['false_digits']:>6} false digits, {r['per_hour']:.2f} per hour")


if __name__ == "__main__":
    main()
