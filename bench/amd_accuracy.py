"""Answering-machine detection: how the phonebook's voicemail and people saying hello are classified, how
soon, and how close to the truth the beep is found. Figures, not assertions.

Usage: .venv/bin/python bench/amd_accuracy.py [--json]

The machine is the phonebook's (``+15550100004``: its greeting in five catalog voices, 0.3 s of silence, a
0.5 s 1 kHz beep), driven through ``prepare``/``exchange`` as a call drives it; people are espeak-ng voices
saying a short greeting, then silence. Everything passes a G.711 mu-law line at 30 dB SNR and is fed to the
detector 20 ms at a time, as a call feeds it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

import numpy as np

from ivrsim.audio.amd import AmdResult, AnsweringMachineDetector
from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.engine.callees import AnsweringMachine, CalleeContext, Phonebook
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

RATE_HZ = 8000
FRAME = 160
VOICES = ["en-US-Neural2-F", "en-US-Neural2-D", "en-GB-Neural2-A", "en-AU-Standard-B", "en-IN-Standard-A"]
PHRASES = ["hello", "hello?", "yes, hello", "hi, who is this"]


def through_line(samples: np.ndarray, seed: int) -> np.ndarray:
    line = LineModel(LineSettings(law="ulaw", snr_db=30, seed=seed))
    padded = np.zeros(-(-len(samples) // FRAME) * FRAME, dtype=np.float32)
    padded[: len(samples)] = samples
    return np.concatenate([line.process(frame) for frame in padded.reshape(-1, FRAME)])


def detect(received: np.ndarray, **options: object) -> AmdResult:
    detector = AnsweringMachineDetector(RATE_HZ, **options)  # type: ignore[arg-type]
    for start in range(0, len(received), FRAME):
        if (result := detector.feed(received[start : start + FRAME])) is not None:
            return result
    result = detector.finish()
    assert result is not None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = parser.parse_args()
    synthesizer = SpeechSynthesizer()
    machine_entry = Phonebook.default_book().callee_for("+15550100004")
    assert isinstance(machine_entry, AnsweringMachine)
    machines = []
    for seed, voice in enumerate(VOICES):
        machine = replace_voice(machine_entry, voice)
        asyncio.run(machine.prepare(CalleeContext(RATE_HZ, synthesizer)))
        sent = np.concatenate([machine.exchange(np.zeros(FRAME, dtype=np.float32)) for _ in range(8 * RATE_HZ // FRAME)])
        greeting_n = len(synthesizer.synthesize(TtsRequest(machine.greeting, voice=voice, rate_hz=RATE_HZ)).samples)
        true_beep_s = (greeting_n + int(0.3 * RATE_HZ)) / RATE_HZ
        received = through_line(sent, seed)
        plain, waiting = detect(received), detect(received, wait_for_beep=True)
        machines.append({"voice": voice, "answered_by": plain.answered_by, "decided_s": plain.decided_at_s,
                         "with_wait_for_beep": waiting.answered_by, "beep_error_ms": round(((waiting.beep_at_s or 0) - true_beep_s) * 1000, 2)})
    people = []
    for seed, (voice, phrase) in enumerate((v, p) for v in VOICES for p in PHRASES):
        spoken = synthesizer.synthesize(TtsRequest(phrase, voice=voice, rate_hz=RATE_HZ)).samples
        audio = np.concatenate([np.zeros(int(0.3 * RATE_HZ), np.float32), spoken, np.zeros(5 * RATE_HZ, np.float32)])
        result = detect(through_line(audio, 100 + seed))
        people.append({"voice": voice, "phrase": phrase, "answered_by": result.answered_by, "decided_s": result.decided_at_s})
    silent = detect(through_line(np.zeros(6 * RATE_HZ, np.float32), 999))
    report = {
        "machines": machines,
        "people": {"human": sum(p["answered_by"] == "human" for p in people), "of": len(people),
                   "decided_s_min": min(p["decided_s"] for p in people), "decided_s_max": max(p["decided_s"] for p in people),
                   "decided_s_median": statistics.median(p["decided_s"] for p in people),
                   "not_human": [p for p in people if p["answered_by"] != "human"]},
        "silence": {"answered_by": silent.answered_by, "decided_s": silent.decided_at_s},
    }
    if args.json:
        print(json.dumps(report))
        return
    print("phonebook voicemail (+15550100004), 5 voices, mu-law 30 dB SNR, 20 ms frames:")
    for m in machines:
        print(f"  {m['voice']:18} {m['answered_by']:16} at {m['decided_s']:.2f} s; wait_for_beep: {m['with_wait_for_beep']}, "
              f"beep found {m['beep_error_ms']:+.2f} ms from its true start")
    p = report["people"]
    print(f"people saying hello ({len(PHRASES)} phrases x {len(VOICES)} voices): human {p['human']}/{p['of']}, decided after "
          f"{p['decided_s_min']:.2f}-{p['decided_s_max']:.2f} s (median {p['decided_s_median']:.2f} s); others: {p['not_human']}")
    print(f"silence: {silent.answered_by} at {silent.decided_at_s:.2f} s")


def replace_voice(machine: AnsweringMachine, voice: str) -> AnsweringMachine:
    """The same machine (greeting, rings, message length) speaking with ``voice``."""
    return AnsweringMachine(machine.greeting, machine.answer_after_rings, voice, machine.hangup_after_s or 60.0)


if __name__ == "__main__":
    main()
