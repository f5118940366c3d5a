"""The desktop phone: one call at a time on the sound card, answered and keyed by the person at it.

A call to the sound card opens a ``SoundCardLine``: it rings on the speakers (``ring_cycle``, the North
American cadence) until the person answers (Enter on the console, or automatically after
``auto_answer_rings`` rings), declines, or the ring timeout passes; then every 20 ms frame the platform's
audio goes to the speakers and the microphone's comes back as the callee's side of the line. Keys typed on
the console are real DTMF tones (``generate_dtmf``) mixed into the microphone's audio, so the platform's
receiver decodes them like any other, and played quieter on the speakers as a keypad's side tone. The
card's input paces the call (``DeviceClock``): no ``asyncio.sleep`` decides when a frame is due.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ivrsim.audio.call_progress import ring_cycle
from ivrsim.audio.queue import AudioQueue
from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.dtmf_keys import KEYS_BY_INDEX
from ivrsim.audio.levels import db_to_power_ratio
from ivrsim.devices.soundcard import DeviceClock, SoundCard, SoundCardSettings
from ivrsim.engine.callees import RING_CYCLE_S, Answer, CalleeBusyError, Pickup
from ivrsim.engine.clock import FRAME_S, Clock

logger = logging.getLogger(__name__)

#: How often the line reports the card's glitches while they happen, at most, in seconds of call time.
XRUN_REPORT_EVERY_S = 1.0
#: A keypad press: tone and gap, in ms (longer than Q.24's 40 ms minimum, as a phone's keypad sends).
KEY_ON_MS = 120.0
KEY_OFF_MS = 80.0
#: The level of each of a key's two tones on the line, in dBm0.
KEY_LEVEL_DBM0 = -10.0
#: The side tone: keys heard on the speakers this far under their level on the line, in dB.
SIDETONE_DB = -12.0


#: Environment variables that say which sound server and devices a process reaches (libpulse, ALSA, JACK).
AUDIO_ENVIRONMENT_PREFIXES = ("PULSE_", "ALSA_", "JACK_", "PIPEWIRE_", "XDG_RUNTIME_DIR", "AUDIODEV")


def audio_environment() -> tuple[tuple[str, str], ...]:
    """This process's sound-server environment, to hand to the process that will own the sound card."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(AUDIO_ENVIRONMENT_PREFIXES)))


@dataclass(frozen=True)
class PhoneSettings:
    """How the desktop phone answers: its devices, and after how many rings it picks up by itself (None:
    only when the person presses Enter). Plain data: it crosses to a local worker process, with the sound
    server's environment of the process that made it (``environment``): a local worker is forked from a
    process started earlier, whose environment may not name the same sound server."""

    card: SoundCardSettings = field(default_factory=SoundCardSettings)
    auto_answer_rings: int | None = None
    environment: tuple[tuple[str, str], ...] = field(default_factory=audio_environment)


@dataclass(frozen=True)
class PhoneChange:
    """Something the person at the phone should see: ``kind`` is ringing, answered, declined, missed,
    key, ended or device, with its facts."""

    kind: str
    call_id: str
    facts: dict[str, Any] = field(default_factory=dict)


class DesktopPhone:
    """The process's phone (``ivrsim.engine.callees.DeskPhone``): it opens one line per call on the sound
    card, at most one at a time (a second call finds it busy). ``answer``, ``hang_up`` and ``press`` are the
    person's buttons; ``listener`` hears every ``PhoneChange`` (the console)."""

    def __init__(self, settings: PhoneSettings | None = None, listener: Callable[[PhoneChange], None] | None = None) -> None:
        self.settings = settings or PhoneSettings()
        self.listener = listener
        self._line: SoundCardLine | None = None
        self._lock = threading.Lock()  # open_line runs in a thread; two calls may race for the one line

    @property
    def line(self) -> SoundCardLine | None:
        """The call on the phone now, if any."""
        return self._line

    def open_line(self, call_id: str, rate_hz: int, frame_samples: int) -> SoundCardLine:
        """Open the sound card for ``call_id`` (blocking). CalleeBusyError when another call holds the
        phone; DeviceError (which lists the devices there are) when a device is missing or busy."""
        with self._lock:
            if self._line is not None:
                raise CalleeBusyError(f"the desktop phone is on another call ({self._line.call_id})")
            card = SoundCard(rate_hz, frame_samples, self.settings.card)
            card.open()
            self._line = SoundCardLine(self, call_id, card, rate_hz, frame_samples)
        return self._line

    def released(self, line: SoundCardLine) -> None:
        with self._lock:
            if self._line is line:
                self._line = None

    def notify(self, kind: str, call_id: str, **facts: Any) -> None:
        if self.listener is not None:
            try:
                self.listener(PhoneChange(kind, call_id, facts))
            except Exception:  # what the console does with it never breaks the call
                logger.exception("the phone's listener failed on %s", kind)

    # -- the person's buttons -----------------------------------------------------------------------------

    def answer(self) -> bool:
        """Pick up the ringing call; False when nothing rings."""
        line = self._line
        return line is not None and line.request_answer()

    def hang_up(self) -> bool:
        """Hang up the call (or decline it while it rings); False when there is none."""
        line = self._line
        if line is None or line.hung_up:
            return False
        line.hung_up = True
        return True

    def press(self, key: str) -> bool:
        """Press a keypad key on the call in progress; False when there is none or ``key`` is no DTMF key."""
        line = self._line
        return line is not None and line.press(key)


class SoundCardLine:
    """One call on the sound card (``ivrsim.engine.callees.PhoneLine``)."""

    def __init__(self, phone: DesktopPhone, call_id: str, card: SoundCard, rate_hz: int, frame_samples: int) -> None:
        self.phone = phone
        self.call_id = call_id
        self.card = card
        self.rate_hz = rate_hz
        self.frame_samples = frame_samples
        self.clock: Clock = DeviceClock(card)
        self.hung_up = False
        self.answered = False
        self._ringing = False
        self._answer_requested = False
        self._keys = AudioQueue()  # tones still to be sent
        self._key_spec = DtmfToneSpec(on_ms=KEY_ON_MS, off_ms=KEY_OFF_MS, level_dbm0=KEY_LEVEL_DBM0)
        self._sidetone_gain = db_to_power_ratio(SIDETONE_DB) ** 0.5
        self._frames = 0
        self._reported = (0, 0)
        self._last_report_frame = -10**9
        self._opened_reported = False
        self._closed = False

    # -- ringing ------------------------------------------------------------------------------------------

    async def ring(self, timeout_frames: int) -> Pickup:
        """Ring on the speakers until the person answers, declines (hang-up key), the phone answers by
        itself after ``auto_answer_rings``, or ``timeout_frames`` pass; the microphone is not on the line yet."""
        cycle = ring_cycle(self.rate_hz)
        auto_rings = self.phone.settings.auto_answer_rings
        # as the phonebook's callees: N rings end N - 1 cycles and one ring tone after ringing starts; 0 at once
        auto_frames = None if auto_rings is None else int(round(Answer(rings=auto_rings).answer_time_s / FRAME_S))
        self._ringing = True
        self.phone.notify("ringing", self.call_id, auto_answer_rings=auto_rings)
        position = 0
        frames = 0
        try:
            self.card.drop_input()  # what the microphone heard while the call was prepared is not the call's
            await self.card.wait_frames(1)
            while True:
                rings = int(frames * FRAME_S // RING_CYCLE_S) + 1 if frames else 0  # picked up before the first ring: 0
                if self.hung_up:
                    self.phone.notify("declined", self.call_id)
                    return Pickup(frames, "busy", rings, reason="the call was declined at the desktop phone")
                if self._answer_requested or (auto_frames is not None and frames >= auto_frames):
                    self.answered = True
                    self.phone.notify("answered", self.call_id, rings=rings, auto=not self._answer_requested)
                    return Pickup(frames, "answer", rings)
                if frames >= timeout_frames:
                    self.phone.notify("missed", self.call_id, rings=rings)
                    return Pickup(frames, "no-answer", rings)
                chunk = np.take(cycle, np.arange(position, position + self.frame_samples), mode="wrap")
                position = (position + self.frame_samples) % len(cycle)
                self.card.write_frame(chunk)
                self.card.read_frame()  # the microphone is not on the line until the call is answered
                await self.clock.advance(1)
                frames += 1
        finally:
            self._ringing = False

    def request_answer(self) -> bool:
        if not self._ringing or self.hung_up:
            return False
        self._answer_requested = True
        return True

    # -- the call -----------------------------------------------------------------------------------------

    def press(self, key: str) -> bool:
        """Queue ``key`` as a real tone into the line (and quieter on the speakers); only once answered."""
        key = key.upper()
        if not self.answered or self.hung_up or len(key) != 1 or key not in KEYS_BY_INDEX:
            return False
        self._keys.put(generate_dtmf(key, self.rate_hz, self._key_spec))
        self.phone.notify("key", self.call_id, key=key)
        return True

    def exchange(self, heard: np.ndarray) -> np.ndarray:
        """The platform's frame to the speakers (with the keypad's side tone); the microphone's frame
        (with the keys' tones) back to the line."""
        keys = self._keys.take(self.frame_samples)
        speaker = heard if keys is None else heard + self._sidetone_gain * keys
        self.card.write_frame(np.clip(speaker, -1.0, 1.0))
        mic = self.card.read_frame()
        self._frames += 1
        return mic if keys is None else np.clip(mic + keys, -1.0, 1.0)

    def report(self) -> list[tuple[str, dict[str, Any]]]:
        """``soundcard.opened`` once (devices, rates, latencies), then ``soundcard.xrun`` whenever the card
        has dropped or missed audio since the last report (at most once per ``XRUN_REPORT_EVERY_S``)."""
        events: list[tuple[str, dict[str, Any]]] = []
        stats = self.card.stats
        if not self._opened_reported:
            self._opened_reported = True
            events.append(("soundcard.opened", stats.as_dict()))
            self.phone.notify("device", self.call_id, **stats.as_dict())
        counts = (stats.underruns, stats.overruns)
        due = (self._frames - self._last_report_frame) * FRAME_S >= XRUN_REPORT_EVERY_S
        if counts != self._reported and due:
            events.append(("soundcard.xrun", {"underruns": stats.underruns, "overruns": stats.overruns,
                                              "new_underruns": counts[0] - self._reported[0], "new_overruns": counts[1] - self._reported[1]}))
            self._reported = counts
            self._last_report_frame = self._frames
        return events

    def close(self) -> None:
        """The call has ended: close the card (safe after the device died) and free the phone."""
        if self._closed:
            return
        self._closed = True
        try:
            self.card.close()
        finally:
            self.phone.released(self)
            stats = self.card.stats
            self.phone.notify("ended", self.call_id, underruns=stats.underruns, overruns=stats.overruns)
