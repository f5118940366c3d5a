"""Listing and choosing sound devices (PortAudio through ``sounddevice``).

PortAudio reads its device list once, when it is initialised; ``list_devices`` re-initialises it so that
a device plugged in later (or a PulseAudio daemon started after ivrsim) shows. Re-initialising closes
every open stream, so it is skipped while a ``SoundCard`` has streams open (``stream_opened`` counts them).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, Literal

from ivrsim.exceptions import IvrsimError

Kind = Literal["input", "output"]

#: How to pick devices, for error messages.
DEVICE_FIX = ("choose one with --input/--output or IVRSIM_INPUT_DEVICE/IVRSIM_OUTPUT_DEVICE "
              "(an index or a unique part of the name; `ivrsim devices` lists them)")


class DeviceError(IvrsimError):
    """A sound device that cannot be used: missing, ambiguous, busy, or PortAudio itself missing."""

    code = "device_unavailable"


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device as ``ivrsim devices`` shows it."""

    index: int
    name: str
    host_api: str
    input_channels: int
    output_channels: int
    default_rate_hz: float
    default_input: bool
    default_output: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def channels(self, kind: Kind) -> int:
        return self.input_channels if kind == "input" else self.output_channels

    def line(self) -> str:
        """One line for error messages: index, name, in/out channels."""
        marks = "".join([" (default input)" if self.default_input else "", " (default output)" if self.default_output else ""])
        return f"  {self.index}: {self.name} [{self.host_api}] in {self.input_channels}, out {self.output_channels}{marks}"


class _StreamCount:
    """Streams open in this process: PortAudio may not be re-initialised under them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0


_STREAMS = _StreamCount()  # process-wide by nature: PortAudio itself is one per process


def stream_opened() -> None:
    with _STREAMS.lock:
        _STREAMS.count += 1


def stream_closed() -> None:
    with _STREAMS.lock:
        _STREAMS.count = max(0, _STREAMS.count - 1)


def sounddevice_module() -> ModuleType:
    """``sounddevice``, or a ``DeviceError`` saying how to install PortAudio."""
    try:
        import sounddevice
    except OSError as error:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise DeviceError(f"PortAudio is not installed ({error}): install libportaudio2 (apt) or run ./setup.sh") from error
    return sounddevice


def _rescan(sd: ModuleType) -> None:
    with _STREAMS.lock:
        if _STREAMS.count == 0:
            sd._terminate()
            sd._initialize()


def _default_index(sd: ModuleType, kind: Kind) -> int:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except Exception:  # no default device of that kind (PortAudioError or ValueError)
        return -1


def list_devices() -> list[AudioDevice]:
    """Every device PortAudio sees now (re-scanned), with which are the defaults."""
    sd = sounddevice_module()
    _rescan(sd)
    try:
        host_apis = [api["name"] for api in sd.query_hostapis()]
        raw = list(sd.query_devices())
    except Exception as error:
        raise DeviceError(f"PortAudio could not list the sound devices: {error}") from error
    default_in, default_out = _default_index(sd, "input"), _default_index(sd, "output")
    return [
        AudioDevice(index=int(d["index"]), name=str(d["name"]), host_api=host_apis[int(d["hostapi"])],
                    input_channels=int(d["max_input_channels"]), output_channels=int(d["max_output_channels"]),
                    default_rate_hz=float(d["default_samplerate"]), default_input=int(d["index"]) == default_in,
                    default_output=int(d["index"]) == default_out)
        for d in raw
    ]


def describe(devices: list[AudioDevice]) -> str:
    """The device list for an error message."""
    if not devices:
        return "PortAudio sees no sound devices at all (is PulseAudio or ALSA running?)"
    return "the devices there are:\n" + "\n".join(d.line() for d in devices)


def choose_device(spec: str | int | None, kind: Kind) -> AudioDevice:
    """The device to use for ``kind``: None = the default; an int or digit string = that index; otherwise a
    case-insensitive part of the name matching exactly one device with ``kind`` channels (an exact name wins)."""
    devices = list_devices()
    usable = [d for d in devices if d.channels(kind) > 0]
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        chosen = [d for d in usable if (d.default_input if kind == "input" else d.default_output)]
        if not chosen:
            raise DeviceError(f"there is no default {kind} device; {DEVICE_FIX}; {describe(devices)}")
        return chosen[0]
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        match = [d for d in devices if d.index == index]
        if not match:
            raise DeviceError(f"there is no {kind} device with index {index}; {DEVICE_FIX}; {describe(devices)}")
        if match[0].channels(kind) == 0:
            raise DeviceError(f"device {index} ({match[0].name}) has no {kind} channels; {DEVICE_FIX}; {describe(devices)}")
        return match[0]
    wanted = spec.strip().lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    if len(exact) == 1:
        return exact[0]
    match = [d for d in usable if wanted in d.name.lower()]
    if len(match) == 1:
        return match[0]
    if not match:
        raise DeviceError(f"no {kind} device's name contains {spec!r}; {DEVICE_FIX}; {describe(devices)}")
    raise DeviceError(f"{spec!r} matches {len(match)} {kind} devices, give more of the name or the index; "
                      f"candidates:\n" + "\n".join(d.line() for d in match) + f"\n{DEVICE_FIX}")
