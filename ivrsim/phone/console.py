"""``ivrsim phone``: the desktop phone in a terminal. It shows the call (status, the prompt being played, the
digits the platform decoded, the gather's result, the live transcript, the sound card's glitches) and reads
the person's keys: Enter answers, ``h`` hangs up (or declines a ringing call), ``0-9 * # A-D`` press keypad
keys (real tones into the line), ``q`` quits. ``--json`` prints every event as a JSON line instead.

The phone is a worker on the server's queue that takes only the ``phone`` lane, one call at a time: the
server queues calls to the sound card's number there, and this process, which owns the sound card, runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ivrsim.engine.events import CallEvent
from ivrsim.engine.job import CallJob
from ivrsim.phone.desktop import DesktopPhone, PhoneChange, PhoneSettings
from ivrsim.workers.worker import Worker, WorkerOptions

#: Keys that press keypad keys (lower-case a-d too: no shift needed).
KEYPAD_KEYS = frozenset("0123456789*#ABCDabcd")
HELP = "Enter answer · h hang up / decline · 0-9 * # A-D keypad · q quit"
#: Transcript lines kept on screen.
TRANSCRIPT_LINES = 4


@dataclass
class CallView:
    """What the console shows of the call on the phone."""

    call_id: str = ""
    from_: str = ""
    to: str = ""
    status: str = "idle"
    detail: str = ""
    prompt: str = ""
    prompt_text: str = ""
    digits: list[str] = field(default_factory=list)
    gather: str = ""
    partial: str = ""
    transcript: list[str] = field(default_factory=list)
    device: str = ""
    glitches: str = "no underruns or overruns"


class PhoneConsole:
    """The phone's screen and keyboard. It is the worker's ``CallObserver`` (the call's events) and the
    phone's listener (ringing, answered, keys); everything runs on the worker's event loop."""

    def __init__(self, phone_settings: PhoneSettings, devices: str, server: str, as_json: bool = False,
                 console: Console | None = None, out: TextIO | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console(stderr=False)
        self.out = out or sys.stdout
        self.devices = devices
        self.server = server
        self.view = CallView()
        self.phone = DesktopPhone(phone_settings, listener=self.phone_changed)
        self.live: Live | None = None
        self.quit: Callable[[], None] = lambda: None
        #: Plain lines instead of the live screen (a terminal that cannot redraw: TERM=dumb, or no terminal).
        self.plain = not as_json and (not self.console.is_terminal or self.console.is_dumb_terminal)
        self._quitting = False

    # -- what happens -------------------------------------------------------------------------------------

    def call_started(self, job: CallJob) -> None:
        request = job.request
        self.view = CallView(call_id=job.call_id, from_=request.from_, to=request.to, status="queued", device=self.view.device)
        if request.tts is not None:
            self.view.prompt_text = request.tts.text
        self._emit({"type": "phone.call", "call_id": job.call_id, "from": request.from_, "to": request.to})

    def call_event(self, event: CallEvent) -> None:
        view = self.view
        data = event.data
        kind = event.type
        if kind.startswith("call.") and "status" in data:
            view.status = str(data["status"])
            view.detail = str(data.get("reason") or "")
        elif kind == "prompt.started":
            text = f' "{_short(view.prompt_text)}"' if data.get("kind") == "say" and view.prompt_text else ""
            view.prompt = f"{data.get('kind')} {data.get('source')}{text} ({data.get('duration_s')} s)"
        elif kind == "prompt.completed":
            view.prompt = f"{view.prompt} - {'interrupted' if data.get('interrupted') else 'played'}"
        elif kind == "dtmf.received":
            view.digits.append(str(data.get("digit")))
        elif kind == "gather.started":
            view.gather = "listening for keys" + (" and speech" if "speech" in str(data.get("type", "")) else "")
        elif kind == "gather.completed":
            speech = data.get("speech") or {}
            said = f' speech "{speech.get("text")}"' if isinstance(speech, dict) and speech.get("text") else ""
            view.gather = f"completed: digits {data.get('digits') or '-'}{said} ({data.get('reason', '')})"
        elif kind == "transcription.partial":
            view.partial = f"{data.get('channel', '')}: {data.get('text', '')}"
        elif kind == "transcription.final":
            view.partial = ""
            view.transcript = (view.transcript + [f"{data.get('channel', '')}: {data.get('text', '')}"])[-TRANSCRIPT_LINES:]
        elif kind == "soundcard.xrun":
            view.glitches = f"{data.get('underruns')} underrun(s), {data.get('overruns')} overrun(s)"
        self._emit({"call_id": event.call_id, "type": kind, "call_time_s": event.call_time_s, **data})

    def phone_changed(self, change: PhoneChange) -> None:
        view = self.view
        facts = change.facts
        if change.kind == "ended" and self._quitting:
            self.quit()  # q hung the call up; now the phone stops
        if change.kind == "ringing":
            view.status = "ringing"
            view.detail = "press Enter to answer" if facts.get("auto_answer_rings") is None else f"answers by itself after {facts['auto_answer_rings']} ring(s)"
        elif change.kind == "device":
            view.device = f"{facts.get('output_device')} -> speakers, {facts.get('input_device')} -> microphone at {facts.get('device_rate_hz')} Hz"
        self._emit({"type": f"phone.{change.kind}", "call_id": change.call_id, **facts})

    def _emit(self, document: dict[str, Any]) -> None:
        if self.as_json:
            self.out.write(json.dumps(document, default=str) + "\n")
            self.out.flush()
        elif self.plain:
            line = self._plain_line(document)
            if line:
                self.console.print(line, markup=False, highlight=False)
        elif self.live is not None:
            self.live.update(self.render())

    def _plain_line(self, document: dict[str, Any]) -> str:
        """One line per thing a person needs to know, for a terminal that cannot redraw a screen."""
        kind = str(document.get("type", ""))
        view = self.view
        if kind == "phone.ready":
            return f"ivrsim phone: {self.devices}. {HELP}"
        if kind == "phone.ringing":
            return f"RINGING: {view.call_id} from {view.from_} ({view.detail})"
        if kind.startswith("call.") and "status" in document and kind != "call.ringing":
            return f"{view.status.upper()}" + (f": {view.detail}" if view.detail else "")
        if kind == "prompt.started":
            return f"prompt: {view.prompt}"
        if kind == "dtmf.received":
            return f"digit: {document.get('digit')}"
        if kind == "gather.completed":
            return f"gather {view.gather}"
        if kind == "transcription.final":
            return f"heard {view.transcript[-1]}" if view.transcript else ""
        if kind == "soundcard.xrun":
            return f"sound card: {view.glitches}"
        return ""

    # -- the screen ---------------------------------------------------------------------------------------

    def render(self) -> Panel:
        view = self.view
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        status = Text(view.status.upper(), style="bold reverse" if view.status == "ringing" else "bold")
        if view.detail:
            status.append(f"  {view.detail}", style="")
        table.add_row("Status", status)
        if view.call_id:
            table.add_row("Call", f"{view.call_id}  from {view.from_} to {view.to}")
        table.add_row("Prompt", view.prompt or "-")
        table.add_row("Digits", " ".join(view.digits) or "-")
        table.add_row("Gather", view.gather or "-")
        heard = [*view.transcript, *([f"{view.partial} ..."] if view.partial else [])]
        table.add_row("Heard", "\n".join(heard) or "-")
        table.add_row("Sound card", view.device or self.devices)
        table.add_row("Glitches", view.glitches)
        return Panel(Group(table, Text(HELP, style="dim")), title="ivrsim phone", subtitle=self.server)

    # -- the keyboard -------------------------------------------------------------------------------------

    def key(self, char: str) -> None:
        """One key from the person."""
        if char in ("\r", "\n"):
            self.phone.answer()
        elif char in ("h", "H"):
            self.phone.hang_up()
        elif char in KEYPAD_KEYS:
            self.phone.press(char)
        elif char in ("q", "Q", "\x04"):
            self._emit({"type": "phone.quit"})
            self._quitting = True
            if not self.phone.hang_up():  # a live call is hung up first; the phone stops once it has ended
                self.quit()

    @contextlib.contextmanager
    def keyboard(self, loop: asyncio.AbstractEventLoop, stdin: TextIO | None = None) -> Iterator[None]:
        """Read keys from ``stdin`` while the block runs: one at a time from a terminal (cbreak mode, restored
        after), or as they come from a pipe (a newline is Enter); nothing when there is no input."""
        stream = stdin or sys.stdin
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            yield
            return
        if stat.S_ISREG(os.fstat(fd).st_mode) or stat.S_ISDIR(os.fstat(fd).st_mode):
            yield  # a file (`< /dev/null` is a character device, a file is not pollable): no keys to wait for
            return
        saved = None
        if os.isatty(fd):
            saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)

        def readable() -> None:
            try:
                chunk = os.read(fd, 64)
            except OSError:
                chunk = b""
            if not chunk:  # end of input: keys are over, the phone goes on (Ctrl-C or q stops it)
                loop.remove_reader(fd)
                return
            for char in chunk.decode(errors="ignore"):
                self.key(char)

        try:
            loop.add_reader(fd, readable)
        except (OSError, ValueError):  # not pollable here: the phone runs without keys
            if saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            if saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2: the log, and what ALSA and PortAudio print from C,
    such as "underrun occurred") to ``path`` while the live screen is drawn, so that nothing writes over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


async def run_phone(queue_url: str, options: WorkerOptions, ui: PhoneConsole, log_path: Path | None = None) -> None:
    """The phone's life: a one-call worker on the ``phone`` lane, its screen and its keyboard, until ``q``
    (which hangs up a live call first), Ctrl-C or SIGTERM (a live call then ends). On the live screen,
    stderr goes to ``log_path``."""
    worker = Worker(queue_url, options, phone=ui.phone, observer=ui)
    ui.quit = worker.stop
    loop = asyncio.get_running_loop()
    ui._emit({"type": "phone.ready", "devices": ui.devices, "server": ui.server})
    with ui.keyboard(loop):
        if ui.as_json or ui.plain:
            await worker.run()
        else:
            redirect = stderr_to(log_path) if log_path is not None else contextlib.nullcontext()
            with redirect, Live(ui.render(), console=ui.console, refresh_per_second=10, transient=False) as live:
                ui.live = live
                refresher = asyncio.create_task(_refresh(ui))
                try:
                    await worker.run()
                finally:
                    refresher.cancel()
                    ui.live = None


async def _refresh(ui: PhoneConsole) -> None:
    """Redraw a few times a second (statuses change between events: a ringing call's rings)."""
    while ui.live is not None:
        ui.live.update(ui.render())
        await asyncio.sleep(0.2)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
