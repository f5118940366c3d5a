"""Sound-card latency, glitches and CPU, on PulseAudio null sinks (no sound card needed).

Usage: .venv/bin/python bench/soundcard_latency.py [--gathers 20] [--answers 5] [--long-call-s 600] [--json]

Everything runs in this process: a PulseAudio daemon of its own (``ivrsim.testing.pulse``: null sink
``speaker`` is the phone's speakers, the monitor of null sink ``micfeed`` its microphone), a ``CallEngine``
whose calls are all answered by the desktop phone (``DesktopPhone``, auto-answer) on the sound card
(PortAudio through ALSA's ``pulse`` plugin), paced by the card's clock. Figures, not assertions.

1. Tone end at the microphone -> ``gather.completed`` (issue target: under 100 ms). One call, N single-key
   gathers (num_digits=1); 0.25-0.29 s (at random, so tone ends fall at every phase of the 20 ms frames)
   after each ``gather.started`` a 100 ms key at -10 dBm0 is played into ``micfeed`` by ``pacat``.
   Reference: a second, low-latency PortAudio input stream records ``micfeed.monitor`` (the very source
   the card reads); the tone's last sample above a tenth of its peak is dated with that stream's
   ``inputBufferAdcTime`` (PortAudio's capture time; its clock is mapped onto ``time.time()`` by an offset
   taken at start; ``reference_arrival_lag_ms`` says how far its callbacks trail that time). End to end =
   the wall time the ``gather.completed`` event was published on the engine's bus - the tone's end at the
   microphone. Decomposition: the
   receiver's decision in call time (the tone's end found the same way in the callee channel of the
   call's dual recording, vs ``gather.completed``'s ``call_time_s``; includes up to one 20 ms frame of
   granularity) and the input path (end to end - decision: PortAudio/PulseAudio input buffering, resampling,
   the card's queue and the line model), next to the input latency PortAudio reports (``soundcard.opened``).
2. Answer -> first prompt sample at the speakers (issue target: under 200 ms with a cached prompt). The
   prompt is rendered once by a warm-up call; then M calls play it. A second input stream records
   ``speaker.monitor``; the prompt's sample 0 is located there by cross-correlating the recording with the
   prompt itself (so leading silence and the ring tone still queued at answer do not fool it), dated by
   ``inputBufferAdcTime``, and compared with the wall time ``call.in-progress`` was published.
3. Underruns/overruns over a long call (``--long-call-s``, default 600 s as the issue asks): a call that
   plays a ~20 s prompt and then waits in a gather until its maximum length; the counts come from the
   call's ``soundcard.xrun`` events and from the phone's final figures when the card closes.
4. CPU per live sound-card call: this process's CPU seconds (``time.process_time``: all its threads,
   PortAudio's callbacks included) per wall second over the long call, next to the same with the engine
   open and no call (``--idle-s``); the PulseAudio daemon's own CPU is given beside it.

The reference recorders are closed before the long call, so they are not counted in 3 and 4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from scipy import signal as scipy_signal

from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.resample import resample
from ivrsim.devices.catalog import choose_device, stream_closed, stream_opened
from ivrsim.devices.soundcard import SoundCardSettings
from ivrsim.engine.actions import Action, Gather
from ivrsim.engine.engine import (
    CallEngine,
    CallRequest,
    EngineSettings,
    GatherSpec,
    TtsSpec,
)
from ivrsim.engine.events import CallEvent, epoch_of
from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings
from ivrsim.phone.desktop import DesktopPhone, PhoneChange, PhoneSettings
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer, TtsRequest
from ivrsim.testing.pulse import PulseAudioServer, available

RATE_HZ = 8000
RECORD_RATE_HZ = 48000
TO = "+15551234567"
FROM = "+15559876543"
#: Keys played into the microphone, in turn ('#' is the gather's finish key: not used).
KEYS = "0123456789*ABCD"
KEY_SPEC = DtmfToneSpec(on_ms=100, off_ms=0, level_dbm0=-10.0)
#: Pause between a gather starting and its key being played: a clean inter-digit gap, plus a random part of
#: up to two frames (the receiver's 40 ms chunk) so that tone ends fall at every phase of the frames and chunks.
KEY_GAP_S = 0.25
KEY_JITTER_S = 0.04
GATHER_PROMPT = "Press a key."
ANSWER_PROMPT = "Thank you for calling the benchmark line. Goodbye."
LONG_PROMPT = ("Thank you for calling. Your call is important to us. Please stay on the line and an agent will be with you "
               "shortly. For billing press one, for sales press two, to hear these options again press star. ") * 2
EVENT_TIMEOUT_S = 30.0


@dataclass
class Published:
    """An event as the engine's bus delivered it, with the wall time and process CPU time at delivery."""

    event: CallEvent
    wall_s: float
    cpu_s: float


class EventLog:
    """Every event the engine publishes, with when; lets a coroutine wait for the n-th of a type."""

    def __init__(self) -> None:
        self.items: list[Published] = []
        self._changed = asyncio.Event()

    def __call__(self, event: CallEvent) -> None:
        self.items.append(Published(event, time.time(), time.process_time()))
        self._changed.set()

    def of(self, call_id: str, event_type: str) -> list[Published]:
        return [p for p in self.items if p.event.call_id == call_id and p.event.type == event_type]

    async def wait(self, call_id: str, event_type: str, count: int = 1, timeout_s: float = EVENT_TIMEOUT_S) -> Published:
        deadline = time.monotonic() + timeout_s
        while len(found := self.of(call_id, event_type)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [p.event.type for p in self.items if p.event.call_id == call_id]
                raise TimeoutError(f"no {event_type} #{count} within {timeout_s:g} s; the call's events: {seen}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return found[count - 1]


class MonitorRecorder:
    """A low-latency PortAudio input stream on one PulseAudio source, every block dated by PortAudio's
    ``inputBufferAdcTime`` (mapped onto ``time.time()``): the reference for when audio was at a source."""

    def __init__(self, source: str, rate_hz: int = RECORD_RATE_HZ) -> None:
        import sounddevice

        self.source = source
        self.rate_hz = rate_hz
        self._blocks: list[np.ndarray] = []
        self._starts: list[int] = []
        self._adc_s: list[float] = []
        self._arrival_lag_s: list[float] = []
        self._count = 0
        device = choose_device(None, "input")
        saved = os.environ.get("PULSE_SOURCE")
        os.environ["PULSE_SOURCE"] = source  # libpulse reads it when the ALSA plugin connects the stream
        try:
            self.stream = sounddevice.InputStream(device=device.index, channels=1, samplerate=rate_hz, dtype="float32",
                                                  latency="low", callback=self._callback)
        finally:
            if saved is None:
                os.environ.pop("PULSE_SOURCE", None)
            else:
                os.environ["PULSE_SOURCE"] = saved
        stream_opened()  # counted, so that the card opening a call does not re-initialise PortAudio under it
        self.stream.start()
        # PortAudio's clock (CLOCK_REALTIME on ALSA here, but do not count on it) onto time.time()
        self.offset_s = time.time() - self.stream.time

    def _callback(self, indata: np.ndarray, frames: int, timing: Any, _status: Any) -> None:
        self._blocks.append(indata[:, 0].copy())
        self._starts.append(self._count)
        self._adc_s.append(timing.inputBufferAdcTime)
        self._arrival_lag_s.append(timing.currentTime - timing.inputBufferAdcTime)
        self._count += frames

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()
        stream_closed()

    def samples(self) -> np.ndarray:
        return np.concatenate(self._blocks[: len(self._starts)]) if self._blocks else np.zeros(0, np.float32)

    def wall_s(self, index: int) -> float:
        """When sample ``index`` of ``samples()`` was at the source, in ``time.time()`` seconds."""
        starts = np.asarray(self._starts[: len(self._adc_s)])
        block = int(np.searchsorted(starts, index, side="right")) - 1
        return self._adc_s[block] + self.offset_s + (index - int(starts[block])) / self.rate_hz

    def index_at(self, wall_s: float) -> int:
        """The sample at (about) ``wall_s``."""
        adc = np.asarray(self._adc_s) + self.offset_s
        block = max(int(np.searchsorted(adc, wall_s, side="right")) - 1, 0)
        return int(self._starts[block] + max(wall_s - adc[block], 0.0) * self.rate_hz)

    @property
    def arrival_lag_ms(self) -> float:
        """Median time from a block's capture to its callback: how far the reference itself lags."""
        return float(np.median(self._arrival_lag_s)) * 1000 if self._arrival_lag_s else float("nan")


def tone_ends(samples: np.ndarray, rate_hz: int, min_tone_s: float = 0.05, gap_s: float = 0.02) -> list[int]:
    """Index of the last sample of every tone burst in ``samples`` (clean keys on silence): the last sample
    above a tenth of the loudest, in runs at least ``min_tone_s`` long."""
    if not len(samples):
        return []
    magnitude = np.abs(samples)
    loud = np.flatnonzero(magnitude > 0.1 * magnitude.max())
    if not len(loud):
        return []
    breaks = np.flatnonzero(np.diff(loud) > gap_s * rate_hz)
    firsts = np.concatenate([[loud[0]], loud[breaks + 1]])
    lasts = np.concatenate([loud[breaks], [loud[-1]]])
    return [int(last) for first, last in zip(firsts, lasts, strict=True) if last - first >= min_tone_s * rate_hz]


def stats_ms(values_s: list[float]) -> dict[str, float | int]:
    if not values_s:
        return {"n": 0}
    ms = np.asarray(values_s) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "max_ms": round(float(ms.max()), 1), "min_ms": round(float(ms.min()), 1)}


def daemon_cpu_s(pid: int | None) -> float:
    """The PulseAudio daemon's user + system CPU seconds so far."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Bench:
    engine: CallEngine
    pulse: PulseAudioServer
    log: EventLog
    synthesizer: SpeechSynthesizer
    folder: Path
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)

    def xruns(self, call_id: str) -> dict[str, Any]:
        reports = self.log.of(call_id, "soundcard.xrun")
        final = self.ended.get(call_id, {})
        return {"xrun_events": len(reports), "underruns": final.get("underruns"), "overruns": final.get("overruns")}

    def opened(self, call_id: str) -> dict[str, Any]:
        found = self.log.of(call_id, "soundcard.opened")
        return dict(found[0].event.data) if found else {}

    # -- 1. tone end at the microphone -> gather.completed --------------------------------------------------

    async def tone_to_gather(self, gathers: int) -> dict[str, Any]:
        mic = MonitorRecorder(self.pulse.micfeed_monitor)
        try:
            request = CallRequest(to=TO, from_=FROM, tts=TtsSpec(GATHER_PROMPT), record=True,
                                  gather=GatherSpec(num_digits=1, timeout_s=10))
            then: list[Action] = [Gather(prompt=[], num_digits=1, timeout_s=10) for _ in range(gathers - 1)]
            record = await self.engine.place(request, then=then)
            await self.log.wait(record.id, "prompt.completed")
            keys = ""
            jitter = np.random.default_rng(11)
            for k in range(gathers):
                await self.log.wait(record.id, "gather.started", k + 1)
                await asyncio.sleep(KEY_GAP_S + float(jitter.uniform(0.0, KEY_JITTER_S)))
                key = KEYS[k % len(KEYS)]
                keys += key
                await asyncio.to_thread(self.pulse.play, self.pulse.micfeed, generate_dtmf(key, RATE_HZ, KEY_SPEC), RATE_HZ)
                await self.log.wait(record.id, "gather.completed", k + 1)
            final = await asyncio.wait_for(self.engine.wait(record.id), EVENT_TIMEOUT_S)
            heard = mic.samples()
        finally:
            mic.close()
        completed = self.log.of(record.id, "gather.completed")
        digits = "".join(p.event.data["digits"] for p in completed)
        mic_ends = [mic.wall_s(i) for i in tone_ends(heard, mic.rate_hz)]
        recording = self.engine.store.recording_for_call(record.id)
        assert recording is not None, "the call kept no recording"
        audio, rate_hz = soundfile.read(recording.path, dtype="float32")
        start_s = self.log.of(record.id, "recording.started")[0].event.call_time_s
        line_ends = [start_s + i / rate_hz for i in tone_ends(audio[:, 1], rate_hz)]
        received = self.log.of(record.id, "dtmf.received")
        result: dict[str, Any] = {"call_status": final.status, "keys_played": keys, "digits_gathered": digits,
                                  "tones_found_at_mic": len(mic_ends), "tones_found_in_recording": len(line_ends)}
        # Each gather.completed pairs with the last tone end before it, at the microphone (wall time) and in the
        # recording (call time): a tone that pacat split in two (a playback glitch) still pairs by its end.
        mic_before = [max((end for end in mic_ends if end <= p.wall_s), default=None) for p in completed]
        line_before = [max((end for end in line_ends if end <= p.event.call_time_s), default=None) for p in completed]
        if len(completed) != gathers or any(end is None for end in (*mic_before, *line_before)):
            result["error"] = "a gather.completed has no tone end before it: no figures"
            return result
        end_to_end = [p.wall_s - end for p, end in zip(completed, mic_before, strict=True)]  # type: ignore[operator]
        published_vs_stamp = [p.wall_s - epoch_of(p.event.timestamp) for p in completed]
        decision = [p.event.call_time_s - end for p, end in zip(completed, line_before, strict=True)]  # type: ignore[operator]
        line_ends = [end for end in line_before if end is not None]
        input_path = [e - d for e, d in zip(end_to_end, decision, strict=True)]
        receiver_end = [p.event.data["end_s"] - end for p, end in zip(received, line_ends, strict=True)] if len(received) == gathers else []
        opened = self.opened(record.id)
        result.update({
            "end_to_end": stats_ms(end_to_end),
            "decision_call_time": stats_ms(decision),
            "input_path": stats_ms(input_path),
            "dtmf_received_end_s_minus_tone_end": stats_ms(receiver_end),
            "reported_input_latency_ms": round(opened.get("input_latency_s", float("nan")) * 1000, 1),
            "reported_output_latency_ms": round(opened.get("output_latency_s", float("nan")) * 1000, 1),
            "reference_arrival_lag_ms": round(mic.arrival_lag_ms, 2),
            "bus_minus_event_timestamp_ms": stats_ms(published_vs_stamp),
            **self.xruns(record.id),
        })
        return result

    # -- 2. answer -> first prompt sample at the speakers --------------------------------------------------

    async def answer_to_prompt(self, answers: int) -> dict[str, Any]:
        warm = await self.engine.place(CallRequest(to=TO, from_=FROM, tts=TtsSpec(ANSWER_PROMPT)))
        await asyncio.wait_for(self.engine.wait(warm.id), EVENT_TIMEOUT_S)
        prompt = await self.synthesizer.synthesize_async(TtsRequest(text=ANSWER_PROMPT, rate_hz=RATE_HZ))
        reference = resample(np.asarray(prompt.samples, dtype=np.float32).reshape(-1), RATE_HZ, RECORD_RATE_HZ)
        reference = reference[: int(1.5 * RECORD_RATE_HZ)]
        speaker = MonitorRecorder(self.pulse.speaker_monitor)
        calls = []
        try:
            for _ in range(answers):
                record = await self.engine.place(CallRequest(to=TO, from_=FROM, tts=TtsSpec(ANSWER_PROMPT)))
                final = await asyncio.wait_for(self.engine.wait(record.id), EVENT_TIMEOUT_S)
                calls.append((record.id, final.status))
            heard = speaker.samples()
        finally:
            speaker.close()
        latencies, sharpness, to_prompt_started = [], [], []
        for call_id, _status in calls:
            answered = self.log.of(call_id, "call.in-progress")[0]
            started = self.log.of(call_id, "prompt.started")[0]
            to_prompt_started.append(started.wall_s - answered.wall_s)
            first = speaker.index_at(answered.wall_s - 0.5)
            window = heard[first : first + int(2.5 * RECORD_RATE_HZ) + len(reference)]
            if len(window) < len(reference):
                continue
            correlation = scipy_signal.correlate(window, reference, mode="valid", method="fft")
            energy = np.sqrt(np.convolve(window**2, np.ones(len(reference)), mode="valid")) * np.linalg.norm(reference) + 1e-12
            normalized = correlation / energy
            lag = int(np.argmax(normalized))
            sharpness.append(float(normalized[lag]))
            latencies.append(speaker.wall_s(first + lag) - answered.wall_s)
        return {"calls": len(calls), "statuses": sorted({s for _, s in calls}),
                "answer_to_first_prompt_sample": stats_ms(latencies),
                "answer_to_prompt_started_event": stats_ms(to_prompt_started),
                "min_correlation": round(min(sharpness), 3) if sharpness else None,
                "reference_arrival_lag_ms": round(speaker.arrival_lag_ms, 2)}

    # -- 3 and 4. a long call: glitches and CPU ---------------------------------------------------------------

    async def idle_cpu(self, seconds: float) -> dict[str, float]:
        wall, cpu, daemon = time.time(), time.process_time(), daemon_cpu_s(self.pulse.pid)
        await asyncio.sleep(seconds)
        wall_s = time.time() - wall
        return {"wall_s": round(wall_s, 1), "cpu_s_per_s": round((time.process_time() - cpu) / wall_s, 4),
                "pulseaudio_cpu_s_per_s": round((daemon_cpu_s(self.pulse.pid) - daemon) / wall_s, 4)}

    async def long_call(self, seconds: float, transcribe: bool = False) -> dict[str, Any]:
        request = CallRequest(to=TO, from_=FROM, tts=TtsSpec(LONG_PROMPT), max_duration_s=seconds, transcribe=transcribe,
                              gather=GatherSpec(num_digits=1, timeout_s=seconds + 60))
        record = await self.engine.place(request)
        answered = await self.log.wait(record.id, "call.in-progress")
        daemon_start = daemon_cpu_s(self.pulse.pid)
        final = await asyncio.wait_for(self.engine.wait(record.id), seconds + 120)
        daemon_end = daemon_cpu_s(self.pulse.pid)
        ended = self.log.of(record.id, f"call.{final.status}")[0]
        wall_s = ended.wall_s - answered.wall_s
        prompt = self.log.of(record.id, "prompt.started")
        reports = [p.event.data for p in self.log.of(record.id, "soundcard.xrun")]
        finals = self.log.of(record.id, "transcription.final")
        return {"status": final.status, "reason": final.reason, "transcribed_live": transcribe, "transcription_finals": len(finals), "call_s": round(ended.event.call_time_s - answered.event.call_time_s, 2),
                "wall_s": round(wall_s, 2), "prompt_s": prompt[0].event.data.get("duration_s") if prompt else None,
                "cpu_s_per_s": round((ended.cpu_s - answered.cpu_s) / wall_s, 4),
                "pulseaudio_cpu_s_per_s": round((daemon_end - daemon_start) / wall_s, 4),
                "xrun_reports": [{"call_time_s": p.event.call_time_s, **p.event.data} for p in self.log.of(record.id, "soundcard.xrun")][:20],
                "last_xrun_report": reports[-1] if reports else None, **self.xruns(record.id), "device": self.opened(record.id)}


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    card = SoundCardSettings.from_environment()
    if args.latency is not None:
        card = SoundCardSettings(card.input_device, card.output_device, args.latency, card.device_rate_hz)
    ended: dict[str, dict[str, Any]] = {}
    ended_lock = threading.Lock()

    def listener(change: PhoneChange) -> None:  # runs on the card's and the engine's threads
        if change.kind == "ended":
            with ended_lock:
                ended[change.call_id] = dict(change.facts)

    phone = DesktopPhone(PhoneSettings(card, auto_answer_rings=0), listener=listener)
    synthesizer = SpeechSynthesizer(cache=PromptCache(folder / "prompts"))
    loader = AudioUrlLoader(MediaSettings(allowed_roots=(), cache_dir=folder / "media"))
    figures: dict[str, Any] = {
        "setup": {"audio": "PulseAudio null sinks (speaker; micfeed.monitor as the microphone), PortAudio via ALSA's pulse plugin",
                  "card_latency_setting": card.latency, "python": platform.python_version(), "cpus": os.cpu_count(),
                  "loadavg_start": [round(v, 2) for v in os.getloadavg()]},
    }
    with PulseAudioServer() as pulse:
        async with CallEngine(EngineSettings(folder / "data", clock="virtual", seed=3), synthesizer=synthesizer, loader=loader,
                              phone=phone, soundcard_answers_all=True) as engine:
            log = EventLog()
            engine.bus.subscribe(log)
            bench = Bench(engine, pulse, log, synthesizer, folder, ended)
            if args.gathers > 0:
                figures["tone_end_to_gather_completed"] = await bench.tone_to_gather(args.gathers)
            if args.answers > 0:
                figures["answer_to_first_prompt_sample"] = await bench.answer_to_prompt(args.answers)
            if args.idle_s > 0:
                figures["idle_no_call"] = await bench.idle_cpu(args.idle_s)
            if args.long_call_s > 0:
                figures["long_call"] = await bench.long_call(args.long_call_s, args.transcribe)
    figures["setup"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return figures


def print_table(figures: dict[str, Any]) -> None:
    setup = figures["setup"]
    print(f"Measured on {setup['audio']}; card latency setting {setup['card_latency_setting']}; "
          f"{setup['cpus']} CPUs, load {setup['loadavg_start']} -> {setup['loadavg_end']}")

    def row(label: str, value: dict[str, Any] | None, target: str = "") -> None:
        if not value or not value.get("n"):
            print(f"  {label:<52} (no figures)")
            return
        print(f"  {label:<52} {value['p50_ms']:>8.1f} {value['p90_ms']:>8.1f} {value['max_ms']:>8.1f} {value['n']:>4}  {target}")

    print(f"  {'':<52} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'n':>4}")
    tone = figures.get("tone_end_to_gather_completed")
    if tone:
        if "error" in tone:
            print(f"  tone end -> gather.completed: {tone['error']} ({tone})")
        else:
            row("tone end at mic -> gather.completed (wall)", tone["end_to_end"], "target < 100 ms")
            row("  receiver decision (call time, from recording)", tone["decision_call_time"])
            row("  input path (end to end - decision)", tone["input_path"])
            print(f"  {'':<4}PortAudio-reported input latency {tone['reported_input_latency_ms']} ms; "
                  f"keys {tone['keys_played']!r} gathered {tone['digits_gathered']!r}; underruns {tone['underruns']}, overruns {tone['overruns']}")
    answer = figures.get("answer_to_first_prompt_sample")
    if answer:
        row("answer -> first prompt sample at speaker monitor", answer["answer_to_first_prompt_sample"], "target < 200 ms")
        row("  answer -> prompt.started event", answer["answer_to_prompt_started_event"])
        print(f"  {'':<4}prompt located by cross-correlation (lowest normalized peak {answer['min_correlation']})")
    idle = figures.get("idle_no_call")
    long = figures.get("long_call")
    if idle:
        print(f"  CPU, engine open, no call: {idle['cpu_s_per_s']:.4f} s/s (PulseAudio daemon {idle['pulseaudio_cpu_s_per_s']:.4f} s/s)")
    if long:
        print(f"  CPU, one live sound-card call: {long['cpu_s_per_s']:.4f} s/s (PulseAudio daemon {long['pulseaudio_cpu_s_per_s']:.4f} s/s)")
        live = f", transcribed live ({long['transcription_finals']} final results)" if long["transcribed_live"] else ""
        print(f"  long call{live}: {long['call_s']} s of call time in {long['wall_s']} s wall ({long['status']}: {long['reason']}); "
              f"underruns {long['underruns']}, overruns {long['overruns']}, soundcard.xrun events {long['xrun_events']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gathers", type=int, default=20, help="single-key gathers for figure 1 (0: skip)")
    parser.add_argument("--answers", type=int, default=5, help="answered calls for figure 2 (0: skip)")
    parser.add_argument("--long-call-s", type=float, default=600.0, help="length of the long call, in seconds (0: skip)")
    parser.add_argument("--transcribe", action="store_true", help="transcribe the long call live (its ASR then runs in a child process)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of no call for the CPU reference (0: skip)")
    parser.add_argument("--latency", type=float, default=None, help="the card's PortAudio latency in seconds (default: IVRSIM_DEVICE_LATENCY or 0.04)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    reason = available()
    if reason is not None:
        parser.exit(2, f"cannot run: {reason}\n")
    with tempfile.TemporaryDirectory(prefix="ivrsim-bench-") as folder:
        figures = asyncio.run(run(args, Path(folder)))
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
