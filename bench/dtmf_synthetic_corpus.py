"""DTMF talk-off on the broad synthetic-voice corpus, digits under call-progress tones, and dropouts (issue 15),
next to multimon-ng.

Usage: .venv/bin/python bench/dtmf_synthetic_corpus.py [--list] [--json] [--sample N --seed S]
       [--only talkoff|progress|dropouts] [--cache DIR] [--workers 2] [--false-digits FILE]

- talk-off: every voice of ``ivrsim.testing.speech_corpus.synthetic_corpus()`` (espeak-ng English voices x
  every variant, a dozen other languages x the classic variants, flite if installed; 8 pitches x 3 speeds)
  rendered at 8 kHz (renders cached under ``--cache``, default ~/.cache/ivrsim/synthetic-corpus, keyed by the
  voice's spec) and decoded by ivrsim at 8 kHz, by ivrsim after a G.711 mu-law round trip, and by multimon-ng
  (the same 8 kHz audio resampled to the 22,050 Hz it reads). Every digit is false: hours, false digits and
  false digits per hour per decoder; ``--list`` prints each with the voice and ``DtmfDigit.as_dict()``
  (multimon-ng reports no times), ``--false-digits FILE`` appends them as JSON lines while the run goes on.
- call progress: all 16 keys (80/80 and 50/50 ms) pressed while US dial tone, ringback, busy or reorder plays,
  tone and digits at -15 and -20 dBm0 each (twist 0): keys decoded right (in order) and extra, per case.
- dropouts: a 100 ms tone of each key with a 5 or 10 ms gap starting at every ms from 20 to 80: one digit each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ivrsim.audio import g711
from ivrsim.audio.dtmf_receiver import DtmfDigit, detect_dtmf
from ivrsim.audio.resample import resample
from ivrsim.blas import one_blas_thread
from ivrsim.testing.speech_corpus import (
    CorpusRenderer,
    DigitCase,
    SyntheticVoice,
    call_progress_cases,
    dropout_cases,
    sample,
    synthetic_corpus,
)

RATE_HZ = 8000
log = logging.getLogger("bench.dtmf_synthetic_corpus")
MULTIMON_RATE_HZ = 22050
DEFAULT_CACHE = Path.home() / ".cache" / "ivrsim" / "synthetic-corpus"
IVRSIM, IVRSIM_G711, MULTIMON = "ivrsim @8 kHz", "ivrsim @8 kHz via G.711", "multimon-ng @22.05 kHz"
CHUNK_VOICES = 40


def ivrsim_8k(samples: np.ndarray) -> list[DtmfDigit]:
    return detect_dtmf(samples, RATE_HZ)


def ivrsim_g711(samples: np.ndarray) -> list[DtmfDigit]:
    return detect_dtmf(g711.round_trip(samples), RATE_HZ)


def multimon(samples: np.ndarray, folder: str) -> str:
    """multimon-ng's keys for 8 kHz ``samples`` (resampled to the 22,050 Hz raw it reads)."""
    raw = os.path.join(folder, f"signal-{os.getpid()}.raw")
    g711.float_to_int16(resample(samples, RATE_HZ, MULTIMON_RATE_HZ)).astype("<i2").tofile(raw)
    out = subprocess.run(["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "raw", raw], capture_output=True, text=True, check=True).stdout
    return "".join(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("DTMF:"))


def lcs(sent: str, got: str) -> int:
    """Keys decoded right, in order (longest common subsequence)."""
    row = [0] * (len(got) + 1)
    for a in sent:
        previous = 0
        for j, b in enumerate(got, 1):
            previous, row[j] = row[j], previous + 1 if a == b else max(row[j], row[j - 1])
    return row[-1]


# -- talk-off ---------------------------------------------------------------------------------------------


def _talkoff_chunk(voices: list[SyntheticVoice], cache_dir: str | None, use_multimon: bool) -> list[dict[str, Any]]:
    """Render (or read from the cache) and decode each voice; runs in a worker process."""
    renderer = CorpusRenderer(RATE_HZ, cache_dir, max_workers=1)
    results = []
    with tempfile.TemporaryDirectory(prefix="ivrsim-bench-") as folder:
        for voice in voices:
            samples = renderer.render(voice)
            false: dict[str, list[dict[str, float | str]]] = {
                IVRSIM: [d.as_dict() for d in ivrsim_8k(samples)],
                IVRSIM_G711: [d.as_dict() for d in ivrsim_g711(samples)],
            }
            if use_multimon:
                false[MULTIMON] = [{"key": key} for key in multimon(samples, folder)]
            results.append({"spec": voice.spec, "voice": str(voice), "seconds": len(samples) / RATE_HZ, "false": false})
    return results


def talkoff(
    voices: Sequence[SyntheticVoice], cache_dir: str | None, workers: int, use_multimon: bool, on_false: Callable[[dict[str, Any]], None]
) -> dict[str, dict[str, float]]:
    decoders = [IVRSIM, IVRSIM_G711] + ([MULTIMON] if use_multimon else [])
    counts = dict.fromkeys(decoders, 0)
    seconds, done, began = 0.0, 0, time.monotonic()
    chunks = [list(voices[i : i + CHUNK_VOICES]) for i in range(0, len(voices), CHUNK_VOICES)]
    with ProcessPoolExecutor(workers, initializer=one_blas_thread) as pool:
        futures = [pool.submit(_talkoff_chunk, chunk, cache_dir, use_multimon) for chunk in chunks]
        for future in futures:
            for result in future.result():
                seconds += float(result["seconds"])
                for decoder, digits in result["false"].items():
                    counts[decoder] += len(digits)
                    for digit in digits:
                        on_false({"decoder": decoder, "spec": result["spec"], "voice": result["voice"], "digit": digit})
            done += 1
            log.info("talk-off: %d of %d chunks, %.2f h, %s, %.0f s", done, len(chunks), seconds / 3600, counts, time.monotonic() - began)
    hours = seconds / 3600
    return {d: {"hours": round(hours, 3), "false_digits": counts[d], "per_hour": round(counts[d] / hours, 3) if hours else 0.0} for d in decoders}


# -- call progress and dropouts ---------------------------------------------------------------------------


def digit_cases(cases: Sequence[DigitCase], use_multimon: bool) -> list[dict[str, Any]]:
    """Per case and decoder: keys right (in order), keys decoded, and what was decoded."""
    out = []
    with tempfile.TemporaryDirectory(prefix="ivrsim-bench-") as folder:
        for case in cases:
            got = {IVRSIM: "".join(d.key for d in ivrsim_8k(case.samples)), IVRSIM_G711: "".join(d.key for d in ivrsim_g711(case.samples))}
            if use_multimon:
                got[MULTIMON] = multimon(case.samples, folder)
            out.append({"case": case.name, "expected": case.expected, "decoded": got, "right": {k: lcs(case.expected, v) for k, v in got.items()}})
    return out


def dropouts(use_multimon: bool) -> dict[str, Any]:
    """Every dropout case, decoded in one signal per (key, gap) (the cases 300 ms apart, attributed by time)."""
    cases = dropout_cases(RATE_HZ)
    groups: dict[str, list[DigitCase]] = {}
    for case in cases:
        groups.setdefault(case.name.split(" at ")[0], []).append(case)
    failures: dict[str, list[dict[str, str]]] = {IVRSIM: [], IVRSIM_G711: []}
    missing_multimon = 0
    with tempfile.TemporaryDirectory(prefix="ivrsim-bench-") as folder:
        for group in groups.values():
            signal = np.concatenate([c.samples for c in group])
            bounds = np.cumsum([0] + [len(c.samples) for c in group]) / RATE_HZ
            for decoder, decode in ((IVRSIM, ivrsim_8k), (IVRSIM_G711, ivrsim_g711)):
                digits = decode(signal)
                owner = np.searchsorted(bounds, [d.start_s for d in digits], side="right") - 1
                for i, case in enumerate(group):
                    got = "".join(d.key for d, o in zip(digits, owner) if o == i)
                    if got != case.expected:
                        failures[decoder].append({"case": case.name, "decoded": got})
            if use_multimon:
                expected = "".join(c.expected for c in group)
                missing_multimon += len(expected) - lcs(expected, multimon(signal, folder))
    result: dict[str, Any] = {"cases": len(cases), "failures": failures}
    if use_multimon:
        result["multimon_wrong"] = missing_multimon
    return result


# -- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["talkoff", "progress", "dropouts"], action="append", help="run only these parts (repeatable)")
    parser.add_argument("--sample", type=int, default=0, help="talk-off on a seeded subset of this many voices (0: the whole corpus)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="render cache folder ('' for none)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--list", action="store_true", help="print every false digit and every failed case")
    parser.add_argument("--false-digits", help="append each false digit to this file as a JSON line, as found")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    parts = args.only or ["progress", "dropouts", "talkoff"]
    use_multimon = shutil.which("multimon-ng") is not None
    if not use_multimon:
        log.warning("multimon-ng is not installed: run ./setup.sh; comparing ivrsim alone")
    report: dict[str, Any] = {}

    if "progress" in parts:
        rows = digit_cases(call_progress_cases(RATE_HZ), use_multimon)
        report["call_progress"] = rows
        if not args.json:
            print("digits under call-progress tones (16 keys each): right / decoded")
            for row in rows:
                cells = "  ".join(f"{k}: {row['right'][k]:>2}/{len(v):<2}" for k, v in row["decoded"].items())
                print(f"  {row['case']:<36} {cells}")
                if args.list:
                    for k, v in row["decoded"].items():
                        print(f"      {k:<24} {v}")
    if "dropouts" in parts:
        drop = dropouts(use_multimon)
        report["dropouts"] = drop
        if not args.json:
            failures = drop["failures"]
            print(f"dropouts ({drop['cases']} cases, one digit each): "
                  + ", ".join(f"{k}: {len(v)} wrong" for k, v in failures.items())
                  + (f", {MULTIMON}: {drop['multimon_wrong']} wrong" if use_multimon else ""))
            if args.list:
                for decoder, rows in failures.items():
                    for row in rows:
                        print(f"  {decoder:<24} {row['case']:<32} decoded {row['decoded']!r}")
    if "talkoff" in parts:
        corpus = synthetic_corpus()
        voices = sample(args.sample, args.seed, corpus) if args.sample else corpus
        sink = open(args.false_digits, "a", encoding="utf-8") if args.false_digits else None  # noqa: SIM115

        def on_false(item: dict[str, Any]) -> None:
            if args.list and not args.json:
                print(f"  false {item['decoder']:<24} {item['voice']:<56} {json.dumps(item['digit'])}", flush=True)
            if sink is not None:
                sink.write(json.dumps(item) + "\n")
                sink.flush()

        try:
            summary = talkoff(voices, args.cache or None, args.workers, use_multimon, on_false)
        finally:
            if sink is not None:
                sink.close()
        report["talkoff"] = {"voices": len(voices), "decoders": summary}
        if not args.json:
            print(f"talk-off on {len(voices)} synthetic voices:")
            for decoder, r in summary.items():
                print(f"  {decoder:<26} {r['hours']:.2f} h  {r['false_digits']:>5} false digits  {r['per_hour']:.2f} per hour")
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
