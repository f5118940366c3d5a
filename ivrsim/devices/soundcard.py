"""Duplex audio at the call's rate on a real sound card, and the clock that the card's input drives.

Two separate PortAudio streams (``sounddevice.playrec`` on PulseAudio returned garbage), mono float32, at
the device's rate; soxr streaming resamplers keep their state across frames both ways, so frame edges do
not click. The callbacks only copy between PortAudio's buffers and ``SampleRing``s and count: all
resampling, waiting and error reporting happen on the caller's side.

Settings from the environment (``SoundCardSettings.from_environment``):

- ``IVRSIM_INPUT_DEVICE`` / ``IVRSIM_OUTPUT_DEVICE``: an index or a unique part of the name (``ivrsim devices``).
- ``IVRSIM_DEVICE_LATENCY``: PortAudio's suggested latency, seconds or ``low``/``high`` (default 0.04 s:
  on PulseAudio ``low`` (about 9 ms) underflows continuously, 0.04 s runs clean).
- ``IVRSIM_DEVICE_RATE_HZ``: the rate to open the device at (default: the device's own default rate).

Warm-up: a stream that has just started may deliver nothing for a while (PulseAudio's null sinks, idle,
wake up only every 2 s); ``open()`` waits until the input delivers steadily (at most ``WARMUP_TIMEOUT_S``),
then drops what came so far and resets the counters, so a call starts on a running card.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ivrsim.devices.catalog import (
    AudioDevice,
    DeviceError,
    choose_device,
    describe,
    list_devices,
    sounddevice_module,
    stream_closed,
    stream_opened,
)
from ivrsim.devices.ring import SampleRing
from ivrsim.exceptions import IvrsimError

if TYPE_CHECKING:
    from ivrsim.engine.clock import Clock  # noqa: F401 (DeviceClock implements it; the engine never imports devices)

logger = logging.getLogger(__name__)

#: No input for this long means the input device is gone, in seconds.
STALL_TIMEOUT_S = 1.0
#: Longest ``open()`` waits for the input to start delivering, in seconds.
WARMUP_TIMEOUT_S = 6.0
#: Input delivered in a row that counts as "running", in seconds.
WARMUP_STEADY_S = 0.1
#: Most output that may wait for the speakers; older samples are dropped beyond it, in seconds.
MAX_OUTPUT_QUEUE_S = 0.2
#: Call frames queued beyond one callback's worth before the output (re)starts: absorbs the input's jitter.
PRIME_FRAMES = 2
#: Most call-rate input kept unread before the oldest is dropped, in seconds.
MAX_INPUT_QUEUE_S = 2.0
#: PortAudio's suggested latency unless told otherwise, in seconds (see the module docstring).
DEFAULT_LATENCY_S = 0.04
#: The longest a waiter sleeps between checks of the streams' health, in seconds.
HEALTH_CHECK_S = 0.05
#: Longest ``close()`` waits for PortAudio to stop a stream (a stream on a dead server may hang), in seconds.
CLOSE_TIMEOUT_S = 3.0


class DeviceLostError(IvrsimError):
    """The sound card stopped mid-call: a stream aborted, or no input arrived for ``STALL_TIMEOUT_S``."""

    code = "device_lost"


def _latency(value: str) -> str | float:
    value = value.strip().lower()
    if value in ("low", "high"):
        return value
    try:
        latency_s = float(value)
    except ValueError:
        raise DeviceError(f"IVRSIM_DEVICE_LATENCY must be seconds (e.g. 0.04) or low/high, got {value!r}") from None
    if not 0 < latency_s <= 2:
        raise DeviceError(f"IVRSIM_DEVICE_LATENCY must be between 0 and 2 seconds, got {value!r}")
    return latency_s


@dataclass(frozen=True)
class SoundCardSettings:
    """Which devices to open and how (None: the default device, the device's default rate)."""

    input_device: str | int | None = None
    output_device: str | int | None = None
    latency: str | float = DEFAULT_LATENCY_S
    device_rate_hz: int | None = None

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> SoundCardSettings:
        """From IVRSIM_INPUT_DEVICE, IVRSIM_OUTPUT_DEVICE, IVRSIM_DEVICE_LATENCY and IVRSIM_DEVICE_RATE_HZ."""
        env = os.environ if environ is None else environ
        rate = env.get("IVRSIM_DEVICE_RATE_HZ", "").strip()
        if rate and not (rate.isdigit() and 4000 <= int(rate) <= 384000):
            raise DeviceError(f"IVRSIM_DEVICE_RATE_HZ must be a rate in Hz between 4000 and 384000, got {rate!r}")
        return cls(input_device=env.get("IVRSIM_INPUT_DEVICE") or None, output_device=env.get("IVRSIM_OUTPUT_DEVICE") or None,
                   latency=_latency(env["IVRSIM_DEVICE_LATENCY"]) if env.get("IVRSIM_DEVICE_LATENCY") else DEFAULT_LATENCY_S,
                   device_rate_hz=int(rate) if rate else None)


@dataclass
class SoundCardStats:
    """What the card did: devices, rates, latencies and the glitches counted (both directions)."""

    input_device: str
    output_device: str
    device_rate_hz: int
    input_latency_s: float
    output_latency_s: float
    underruns: int
    overruns: int
    output_device_rate_hz: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Resampler:
    """soxr's streaming resampler, or nothing when the rates are equal.

    ``vr=True``: in its fixed-rate mode soxr emits output in bursts (8 kHz to 44.1 kHz in HQ: nothing for four
    20 ms frames, then about 100 ms at once), which adds that much latency and makes the output queue jump;
    its variable-rate mode emits every frame with about 2 ms of delay, residual and aliasing below -98 dB
    (measured; tests/test_devices.py checks continuity).
    """

    def __init__(self, in_rate_hz: float, out_rate_hz: float) -> None:
        import soxr

        self._stream = None if in_rate_hz == out_rate_hz else soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32", vr=True)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        return samples if self._stream is None else self._stream.resample_chunk(samples)


class SoundCard:
    """Duplex mono audio at ``rate_hz`` in frames of ``frame_samples``, on the devices ``settings`` names.

    ``read_frame`` when a whole frame is not there yet returns zeros and counts an underrun (the input
    fell behind the call); callers that pace by the card (``DeviceClock``) never see that.
    """

    def __init__(self, rate_hz: int, frame_samples: int, settings: SoundCardSettings | None = None) -> None:
        if rate_hz <= 0 or frame_samples <= 0:
            raise ValueError(f"rate_hz and frame_samples must be positive, got {rate_hz} and {frame_samples}")
        self.rate_hz = int(rate_hz)
        self.frame_samples = int(frame_samples)
        self.settings = settings or SoundCardSettings()
        self.input_device: AudioDevice | None = None
        self.output_device: AudioDevice | None = None
        self.input_rate_hz = 0
        self.output_rate_hz = 0
        self.error: str | None = None
        self._in_stream: Any = None
        self._out_stream: Any = None
        self._in_ring = SampleRing(1)
        self._out_ring = SampleRing(1)
        self._pending = np.zeros(0, dtype=np.float32)  # call-rate input not read yet
        self._received_samples = 0  # call-rate input samples since open (read or not)
        self._max_out_queue = 1
        self._read_buffer = np.zeros(0, dtype=np.float32)
        self._in_resampler: _Resampler | None = None
        self._out_resampler: _Resampler | None = None
        self._written_once = False
        self._priming = True  # the output plays nothing until enough is queued (after open and each underrun)
        self._out_frame_samples = 1
        self._out_prime_samples = 1
        self._last_input_at = 0.0
        self._input_blocks = 0
        self._wake: Callable[[], None] | None = None
        self._finished: list[str] = []
        # counters: callbacks write some, the caller others; each is written by one thread only
        self._in_overruns = 0  # input ring full (callback)
        self._in_flag_overflows = 0  # PortAudio input_overflow (callback)
        self._out_underruns = 0  # output ring short after the first write (callback)
        self._out_flag_underflows = 0  # PortAudio output_underflow (callback)
        self._out_drops = 0  # output queue over MAX_OUTPUT_QUEUE_S (callback)
        self._write_overruns = 0  # output ring full on write_frame (caller)
        self._read_underruns = 0  # read_frame with no whole frame (caller)
        self._pending_drops = 0  # unread input over MAX_INPUT_QUEUE_S (caller)
        self._input_glitches_before = 0  # input overruns before ``drop_input`` (not the call's)

    # -- opening and closing -----------------------------------------------------------------------

    def open(self) -> SoundCard:
        """Choose the devices, open and start both streams, wait for the input to run (blocking: run it in
        a thread). A missing or busy device raises ``DeviceError`` listing the devices there are."""
        sd = sounddevice_module()
        self.input_device = choose_device(self.settings.input_device, "input")
        self.output_device = choose_device(self.settings.output_device, "output")
        self.input_rate_hz = int(self.settings.device_rate_hz or round(self.input_device.default_rate_hz))
        self.output_rate_hz = int(self.settings.device_rate_hz or round(self.output_device.default_rate_hz))
        self._in_ring = SampleRing(int(self.input_rate_hz * 1.0))
        self._max_out_queue = int(self.output_rate_hz * MAX_OUTPUT_QUEUE_S)
        self._out_frame_samples = int(math.ceil(self.frame_samples * self.output_rate_hz / self.rate_hz))
        self._out_prime_samples = PRIME_FRAMES * self._out_frame_samples
        self._out_ring = SampleRing(2 * self._max_out_queue + self.output_rate_hz // 10)
        try:
            self._in_stream = self._open_stream(sd, "input", self.input_device, self.input_rate_hz)
            self._out_stream = self._open_stream(sd, "output", self.output_device, self.output_rate_hz)
            self._last_input_at = time.monotonic()
            self._in_stream.start()
            self._out_stream.start()
        except DeviceError:
            self.close()
            raise
        except Exception as error:  # PortAudioError: busy, unplugged between listing and opening, bad rate
            self.close()
            raise DeviceError(f"could not start the sound card ({error}); {describe(list_devices())}") from error
        self._warm_up()
        logger.info("sound card open: input %s at %d Hz (%.0f ms), output %s at %d Hz (%.0f ms)", self.input_device.name,
                    self.input_rate_hz, self._in_stream.latency * 1000, self.output_device.name, self.output_rate_hz,
                    self._out_stream.latency * 1000)
        return self

    def _open_stream(self, sd: Any, kind: str, device: AudioDevice, rate_hz: int) -> Any:
        opener = sd.InputStream if kind == "input" else sd.OutputStream
        callback = self._input_callback if kind == "input" else self._output_callback
        try:
            stream = opener(device=device.index, channels=1, samplerate=rate_hz, dtype="float32", latency=self.settings.latency,
                            callback=callback, finished_callback=lambda: self._finished.append(kind))
        except Exception as error:
            raise DeviceError(f"could not open {kind} device {device.index} ({device.name}) at {rate_hz} Hz: {error}; "
                              f"it may be busy or gone, or set IVRSIM_DEVICE_RATE_HZ; {describe(list_devices())}") from error
        stream_opened()
        return stream

    def _warm_up(self) -> None:
        """Wait until the input has delivered ``WARMUP_STEADY_S`` in a row, then start from zero."""
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        steady = int(self.input_rate_hz * WARMUP_STEADY_S)
        start_blocks = -1
        start_samples = 0
        while True:
            available = self._in_ring.available
            if self._in_ring.space == 0:
                self._in_ring.clear()
            if start_blocks < 0 and self._input_blocks > 0:
                start_blocks, start_samples = self._input_blocks, available
            elif start_blocks >= 0 and available - start_samples >= steady:
                break
            if self._finished or time.monotonic() > deadline:
                name = self.input_device.name if self.input_device else "?"
                self.close()
                raise DeviceError(f"input device {name} delivered no steady audio within {WARMUP_TIMEOUT_S:g} s; "
                                  f"it may be busy or muted; {describe(list_devices())}")
            time.sleep(0.005)
        self._in_ring.clear()
        self._out_ring.clear()
        self._priming = True
        self._in_resampler = _Resampler(self.input_rate_hz, self.rate_hz)
        self._out_resampler = _Resampler(self.rate_hz, self.output_rate_hz)
        self._pending = np.zeros(0, dtype=np.float32)
        self._received_samples = 0
        self._last_input_at = time.monotonic()
        for name in ("_in_overruns", "_in_flag_overflows", "_out_underruns", "_out_flag_underflows", "_out_drops",
                     "_write_overruns", "_read_underruns", "_pending_drops", "_input_glitches_before"):
            setattr(self, name, 0)

    def close(self) -> None:
        """Stop and close both streams; safe to call twice and after the device died."""
        for attribute in ("_in_stream", "_out_stream"):
            stream = getattr(self, attribute)
            if stream is None:
                continue
            setattr(self, attribute, None)
            closer = threading.Thread(target=self._close_stream, args=(stream,), name="ivrsim-close-stream", daemon=True)
            closer.start()
            closer.join(CLOSE_TIMEOUT_S)
            if closer.is_alive():
                logger.warning("PortAudio did not close a stream within %g s; leaving it", CLOSE_TIMEOUT_S)
        self._wake = None

    @staticmethod
    def _close_stream(stream: Any) -> None:
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception:  # the server is gone: nothing more to release
            logger.debug("closing a stream failed", exc_info=True)
        finally:
            stream_closed()

    def __enter__(self) -> SoundCard:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- PortAudio callbacks: copy and count, nothing else ------------------------------------------

    def _input_callback(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status.input_overflow:
            self._in_flag_overflows += 1
        if self._in_ring.write(indata[:, 0]) < frames:
            self._in_overruns += 1
        self._input_blocks += 1
        self._last_input_at = time.monotonic()
        wake = self._wake  # only the waiter clears it: clearing here could erase the next wait's registration
        if wake is not None:
            wake()

    def _output_callback(self, outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status.output_underflow and self._written_once:
            self._out_flag_underflows += 1
        excess = self._out_ring.available - self._max_out_queue
        if excess > 0:
            self._out_ring.skip(excess)
            self._out_drops += 1
        if self._priming:  # (re)start only with a callback's worth plus a frame queued: no stutter
            if self._out_ring.available < frames + self._out_prime_samples:
                outdata.fill(0.0)
                return
            self._priming = False
        got = self._out_ring.read(outdata[:, 0])
        if got < frames:
            outdata[got:, 0] = 0.0
            self._priming = True
            if self._written_once:
                self._out_underruns += 1

    # -- the call's side -----------------------------------------------------------------------------

    def _pump(self) -> None:
        """Move what the input callback delivered through the resampler into the call-rate queue."""
        available = self._in_ring.available
        if available and self._in_resampler is not None:
            if len(self._read_buffer) < available:
                self._read_buffer = np.zeros(max(available, self._in_ring.capacity), dtype=np.float32)
            got = self._in_ring.read(self._read_buffer[:available])
            converted = self._in_resampler(self._read_buffer[:got])
            self._received_samples += len(converted)
            self._pending = np.concatenate([self._pending, converted]) if len(self._pending) else converted.copy()
            limit = int(MAX_INPUT_QUEUE_S * self.rate_hz)
            if len(self._pending) > limit:
                self._pending = self._pending[-limit:]
                self._pending_drops += 1

    @property
    def playing(self) -> bool:
        """True while the speakers play what was written (not waiting for the output queue to fill)."""
        return not self._priming

    def drop_input(self) -> None:
        """Forget the input not read yet: a call starts on the freshest audio. Input that piled up while the
        call was being prepared (prompts rendered, a model loaded) would otherwise stay between the
        microphone and the call as latency for the whole call, since the card's clock paces one frame read
        per frame arrived (``DeviceClock``)."""
        self._pump()
        self._pending = np.zeros(0, dtype=np.float32)
        # nor are the overruns of that time (a 1 s input ring overflows while a model loads): counted from here
        self._input_glitches_before = self._in_overruns + self._in_flag_overflows + self._pending_drops

    def frames_ready(self) -> int:
        """Whole call-rate frames readable now."""
        self._pump()
        return len(self._pending) // self.frame_samples

    @property
    def frames_received(self) -> int:
        """Whole call-rate frames the input has delivered since ``open`` (read or not)."""
        self._pump()
        return self._received_samples // self.frame_samples

    def read_frame(self) -> np.ndarray:
        """The next ``frame_samples`` of input at ``rate_hz``; zeros (and an underrun) if not there yet."""
        self._pump()
        if len(self._pending) < self.frame_samples:
            self._read_underruns += 1
            return np.zeros(self.frame_samples, dtype=np.float32)
        frame, self._pending = self._pending[:self.frame_samples].copy(), self._pending[self.frame_samples:]
        return frame

    def write_frame(self, samples: np.ndarray) -> None:
        """Queue ``samples`` (at ``rate_hz``) for the speakers; the output callback keeps the queue under
        ``MAX_OUTPUT_QUEUE_S`` by dropping the oldest, so latency never builds up."""
        if self._out_resampler is None:
            raise DeviceError("the sound card is not open: call open() first")
        converted = self._out_resampler(np.asarray(samples, dtype=np.float32).reshape(-1))
        self._written_once = True
        if self._out_ring.write(converted) < len(converted):
            self._write_overruns += 1

    def _check_alive(self) -> None:
        if self.error is not None:
            raise DeviceLostError(self.error)
        name = self.input_device.name if self.input_device else "?"
        if self._finished or self._in_stream is None or not self._in_stream.active:
            ended = sorted(set(self._finished)) or ["input"]
            streams = " and ".join(ended) + (" streams" if len(ended) > 1 else " stream")
            self.error = f"the sound card stopped: the {streams} of device {name} ended (device unplugged or its server gone)"
        elif time.monotonic() - self._last_input_at > STALL_TIMEOUT_S:
            self.error = f"the sound card stopped: input device {name} delivered nothing for {STALL_TIMEOUT_S:g} s (device unplugged or its server gone)"
        if self.error is not None:
            raise DeviceLostError(self.error)

    async def wait_received(self, total_frames: int, timeout_s: float = STALL_TIMEOUT_S) -> None:
        """Return once the input has delivered ``total_frames`` frames since ``open``; ``DeviceLostError``
        when a stream has stopped or nothing arrives for ``timeout_s``."""
        await self._wait(lambda: self.frames_received >= total_frames, timeout_s)

    async def wait_frames(self, count: int = 1, timeout_s: float = STALL_TIMEOUT_S) -> None:
        """Return once ``count`` frames are readable; ``DeviceLostError`` when a stream has stopped or
        nothing arrives for ``timeout_s``."""
        await self._wait(lambda: self.frames_ready() >= count, timeout_s)

    async def _wait(self, ready: Callable[[], bool], timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        progress_at = time.monotonic()
        received = self._received_samples
        while True:
            future: asyncio.Future[None] = loop.create_future()

            def wake(future: asyncio.Future[None] = future) -> None:  # runs in the callback thread: never blocks
                loop.call_soon_threadsafe(_resolve, future)

            self._wake = wake  # registered before the check, so a block arriving in between wakes us
            if ready():
                self._wake = None
                return
            if self._received_samples != received:
                received, progress_at = self._received_samples, time.monotonic()
            self._check_alive()
            if time.monotonic() - progress_at > timeout_s:
                name = self.input_device.name if self.input_device else "?"
                self.error = f"the sound card stopped: input device {name} delivered nothing for {timeout_s:g} s"
                raise DeviceLostError(self.error)
            try:
                await asyncio.wait_for(future, HEALTH_CHECK_S)
            except TimeoutError:
                pass
            finally:
                self._wake = None

    @property
    def stats(self) -> SoundCardStats:
        in_latency = float(self._in_stream.latency) if self._in_stream is not None else 0.0
        out_latency = float(self._out_stream.latency) if self._out_stream is not None else 0.0
        return SoundCardStats(
            input_device=self.input_device.name if self.input_device else "",
            output_device=self.output_device.name if self.output_device else "",
            device_rate_hz=self.input_rate_hz, output_device_rate_hz=self.output_rate_hz,
            input_latency_s=round(in_latency, 4), output_latency_s=round(out_latency, 4),
            underruns=self._out_underruns + self._out_flag_underflows + self._read_underruns,
            overruns=self._in_overruns + self._in_flag_overflows + self._pending_drops - self._input_glitches_before
            + self._out_drops + self._write_overruns,
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class DeviceClock:
    """Paces a call's frames by the card's input (implements ``ivrsim.engine.clock.Clock``): ``advance(n)``
    returns when the input has delivered ``n`` more frames since the previous one, whether or not they
    were read. Raises ``DeviceLostError`` when the card stops."""

    name = "device"

    def __init__(self, card: SoundCard) -> None:
        self.card = card
        self._start: int | None = None
        self._frames = 0

    async def advance(self, frames: int = 1) -> None:
        if self._start is None:
            self._start = self.card.frames_received
        self._frames += frames
        await self.card.wait_received(self._start + self._frames)
