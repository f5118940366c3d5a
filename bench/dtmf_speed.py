"""DTMF decoding speed on one core: batch and streaming in 20 ms frames, next to multimon-ng.

Usage: .venv/bin/python bench/dtmf_speed.py [--minutes 10] [--json]

Two signals, both seeded and generated here:

- "ivr callee": what the callee side of an IVR call carries: line noise, espeak-ng speech about a third of
  the time, and a PIN or menu choice every 15 s or so (80 ms tones, 80 ms gaps).
- "dense digits": nothing but digits, 50 ms on and 50 ms off, in noise at 20 dB SNR: the worst case for
  the per-digit work.

Each is decoded by ivrsim at 8 kHz (the call media rate) and at 22,050 Hz, in batch and streamed in 20 ms
frames (with the default 40 ms analysis chunk, and with every frame analysed at once), and by multimon-ng
on the same audio at 22,050 Hz (the only rate it reads). Speeds are multiples of real time on one core
(the process is pinned to one CPU and BLAS to one thread), best of three runs; ratios are against
multimon-ng measured in the same run. Targets (issues 2 and 15): batch >= 10,000x, streaming >= 1,000x per channel,
on dense digits too. The machine this project runs on changes speed by tens of percent from minute to minute
(multimon-ng itself reads 2,200x-3,300x on the same audio): compare the ratios, or run it twice.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf  # noqa: E402
from ivrsim.audio.dtmf_receiver import DtmfReceiver, detect_dtmf  # noqa: E402
from ivrsim.audio.levels import dbm0_to_power, signal_level_dbm0  # noqa: E402
from ivrsim.audio.resample import resample  # noqa: E402
from ivrsim.media.files import read_audio_file  # noqa: E402

RATE_HZ = 8000
MULTIMON_RATE_HZ = 22050
FRAME_MS = 20
SPEECH_TEXT = (
    "Thank you for calling. Please enter your account number followed by the pound key. For billing press "
    "one, for sales press two, to hear these options again press star."
)


def speech(seconds: float) -> np.ndarray:
    """espeak-ng speech at -20 dBm0, looped to ``seconds``; silence if espeak-ng is missing."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return np.zeros(int(seconds * RATE_HZ), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        parts = []
        for voice in ("en-us", "en-gb-x-rp+f3", "fr", "es+f2"):
            path = Path(folder) / "s.wav"
            subprocess.run([espeak, "-v", voice, "-w", str(path), SPEECH_TEXT], check=True, capture_output=True)
            clip = read_audio_file(path)
            parts.append(resample(clip.samples[:, 0], clip.rate_hz, RATE_HZ))
    voice_track = np.concatenate(parts)
    voice_track *= np.float32(10 ** ((-20.0 - signal_level_dbm0(voice_track)) / 20))
    return np.resize(voice_track, int(seconds * RATE_HZ))


def ivr_callee(minutes: float, seed: int = 11) -> tuple[np.ndarray, str]:
    """The callee channel of an IVR call: noise, speech a third of the time, digits every ~15 s."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * RATE_HZ)
    signal = rng.normal(0.0, np.sqrt(dbm0_to_power(-55.0)), total).astype(np.float32)
    talk = speech(minutes * 60 / 3)
    position, digits = 0, []
    spec = DtmfToneSpec(on_ms=80, off_ms=80, level_dbm0=-12.0, twist_db=2.0)
    while position < total - 10 * RATE_HZ:
        gap = int(rng.uniform(3.0, 8.0) * RATE_HZ)
        said = talk[(position // 3) % max(len(talk) - gap, 1) :][: gap // 2]
        signal[position : position + len(said)] += said
        position += gap
        keys = "".join(rng.choice(list("0123456789*#"), size=int(rng.integers(1, 7))))
        tones = generate_dtmf(keys, RATE_HZ, spec)
        signal[position : position + len(tones)] += tones
        digits.append(keys)
        position += len(tones) + int(rng.uniform(2.0, 6.0) * RATE_HZ)
    return signal, "".join(digits)


def dense_digits(minutes: float, seed: int = 12) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(seed)
    count = int(minutes * 60 / 0.1)
    keys = "".join(rng.choice(list("0123456789*#ABCD"), size=count))
    signal = generate_dtmf(keys, RATE_HZ, DtmfToneSpec(on_ms=50, off_ms=50, level_dbm0=-15.0))
    noise = rng.normal(0.0, np.sqrt(dbm0_to_power(-35.0)), len(signal)).astype(np.float32)
    return signal + noise, keys


def best_of(runs: int, work: Callable[[], str]) -> tuple[float, str]:
    best, result = float("inf"), ""
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def batch(signal: np.ndarray, rate_hz: int) -> Callable[[], str]:
    return lambda: "".join(d.key for d in detect_dtmf(signal, rate_hz))


def streaming(signal: np.ndarray, rate_hz: int, chunk_ms: float) -> Callable[[], str]:
    frame = rate_hz * FRAME_MS // 1000

    def run() -> str:
        receiver = DtmfReceiver(rate_hz, chunk_ms=chunk_ms)
        keys = []
        for offset in range(0, len(signal), frame):
            keys += [d.key for d in receiver.feed(signal[offset : offset + frame])]
        keys += [d.key for d in receiver.flush()]
        return "".join(keys)

    return run


def multimon(raw_path: Path) -> Callable[[], str]:
    def run() -> str:
        out = subprocess.run(
            ["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "raw", str(raw_path)], capture_output=True, text=True, check=True
        ).stdout
        return "".join(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("DTMF:"))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each signal, in minutes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    rows = []
    have_multimon = shutil.which("multimon-ng") is not None
    for name, (signal, expected) in (("ivr callee", ivr_callee(args.minutes)), ("dense digits", dense_digits(args.minutes))):
        seconds = len(signal) / RATE_HZ
        wide = resample(signal, RATE_HZ, MULTIMON_RATE_HZ)
        reference_s = None
        with tempfile.TemporaryDirectory() as folder:
            raw = Path(folder) / "signal.raw"
            np.clip(np.round(wide * 32767), -32768, 32767).astype("<i2").tofile(raw)
            cases: list[tuple[str, Callable[[], str]]] = []
            if have_multimon:
                cases.append(("multimon-ng batch @22050", multimon(raw)))
            cases += [
                ("ivrsim batch @8000", batch(signal, RATE_HZ)),
                ("ivrsim batch @22050", batch(wide, MULTIMON_RATE_HZ)),
                ("ivrsim stream 20 ms frames @8000", streaming(signal, RATE_HZ, 40.0)),
                ("ivrsim stream 20 ms frames, chunk 20 ms @8000", streaming(signal, RATE_HZ, 20.0)),
            ]
            for label, work in cases:
                elapsed, keys = best_of(3, work)
                if label.startswith("multimon"):
                    reference_s = elapsed
                rows.append(
                    {
                        "signal": name,
                        "decoder": label,
                        "audio_s": round(seconds, 1),
                        "x_realtime": round(seconds / elapsed),
                        "vs_multimon": round(reference_s / elapsed, 2) if reference_s else None,
                        "digits_expected": len(expected),
                        "digits_found": len(keys),
                        "exact": keys == expected,
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'signal':<13} {'decoder':<46} {'x real time':>12} {'vs multimon':>12} {'digits':>12}  exact")
    for row in rows:
        ratio = f"{row['vs_multimon']:.2f}x" if row["vs_multimon"] is not None else "-"
        digits = f"{row['digits_found']}/{row['digits_expected']}"
        print(f"{row['signal']:<13} {row['decoder']:<46} {row['x_realtime']:>12,} {ratio:>12} {digits:>12}  {row['exact']}")


if __name__ == "__main__":
    main()
