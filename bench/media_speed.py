"""Media speed: TTS render speed, prompt-cache hit latency, and MP3 decoding speed.

Usage: .venv/bin/python bench/media_speed.py [--json]

- Cold render: prompts of about 5 s (different texts, so no cache), rendered by pyttsx3/espeak-ng and
  resampled to 8 kHz; reported as milliseconds per prompt and multiples of real time.
- Cache hit: the same prompts requested again, from memory and from disk (a new cache object on the same
  folder, as after a restart); milliseconds, median and worst.
- MP3 decode: a 60 s 16 kHz MP3 served by a local HTTP server, fetched and decoded to 8 kHz mono by the
  audio_url loader (no cache), and decoded from bytes alone; multiples of real time.
Targets (issue 3): a cached prompt is ready in under 5 ms; a cold 5 s prompt renders in under 100 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer, TtsRequest
from ivrsim.testing import serve_bytes

PROMPTS = [
    f"Thank you for calling. For billing, press {n}. For technical support, press {n + 1}."
    for n in range(1, 11)
]


def milliseconds(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(seconds) * 1000, 3), "max_ms": round(max(seconds) * 1000, 3)}


def bench_tts(folder: Path) -> dict[str, object]:
    synthesizer = SpeechSynthesizer(cache=PromptCache(folder))
    synthesizer.synthesize(TtsRequest("warm up"))  # starts espeak-ng once
    cold, durations = [], []
    for text in PROMPTS:
        started = time.perf_counter()
        prompt = synthesizer.synthesize(TtsRequest(text))
        cold.append(time.perf_counter() - started)
        durations.append(prompt.duration_s)
    memory = []
    for text in PROMPTS:
        started = time.perf_counter()
        assert synthesizer.synthesize(TtsRequest(text)).cache_hit
        memory.append(time.perf_counter() - started)
    restarted = SpeechSynthesizer(cache=PromptCache(folder))
    restarted.synthesize(TtsRequest("warm up"))
    disk = []
    for text in PROMPTS:
        started = time.perf_counter()
        assert restarted.synthesize(TtsRequest(text)).cache_hit
        disk.append(time.perf_counter() - started)
    return {
        "prompt_s_median": round(statistics.median(durations), 2),
        "cold_render": milliseconds(cold) | {"x_realtime": round(sum(durations) / sum(cold))},
        "cache_hit_memory": milliseconds(memory),
        "cache_hit_disk": milliseconds(disk),
    }


def bench_mp3() -> dict[str, object]:
    rate = 16000
    t = np.arange(60 * rate) / rate
    signal = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, rate, format="MP3")
    body = buffer.getvalue()

    loader = AudioUrlLoader(MediaSettings())
    fetched = []
    with serve_bytes(body, "audio/mpeg") as base_url:
        for _ in range(3):
            started = time.perf_counter()
            loader.load(f"{base_url}/prompt.mp3", 8000)
            fetched.append(time.perf_counter() - started)
    decoded = []
    for _ in range(3):
        started = time.perf_counter()
        soundfile.read(io.BytesIO(body), dtype="float32")
        decoded.append(time.perf_counter() - started)
    return {
        "mp3_bytes": len(body),
        "audio_s": 60,
        "fetch_decode_resample_x_realtime": round(60 / min(fetched)),
        "decode_only_x_realtime": round(60 / min(decoded)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = {"tts": bench_tts(Path(folder)), "audio_url": bench_mp3()}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    tts, mp3 = figures["tts"], figures["audio_url"]
    print(f"TTS cold render of ~{tts['prompt_s_median']} s prompts: {tts['cold_render']}")
    print(f"prompt cache hit, memory: {tts['cache_hit_memory']}")
    print(f"prompt cache hit, disk (after restart): {tts['cache_hit_disk']}")
    print(f"MP3 60 s: fetch+decode+resample {mp3['fetch_decode_resample_x_realtime']}x real time, decode only {mp3['decode_only_x_realtime']}x")


if __name__ == "__main__":
    main()
