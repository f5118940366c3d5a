"""Live transcription in a process of its own, for calls paced by a sound card.

A recognizer holds the GIL while it decodes (pocketsphinx decodes an utterance at its end, and again for
each partial result, for tens to hundreds of ms). On the virtual clock that only slows the call down; on
the sound card it starves the PortAudio callbacks, which need the GIL too, and the speakers stutter. So a
device-paced call hands its audio to a child process (multiprocessing's fork server) that runs the same
``LiveTranscriber`` and sends back the events it would have emitted; the call emits them when they arrive,
their facts (text, call times of the words) unchanged. The child falling behind by more than
``MAX_BEHIND_S`` ends the live transcript (``transcription.failed``): the recording is then transcribed
after the call, as for any call whose live transcript did not cover it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from ivrsim.engine.actions import CallContext
from ivrsim.engine.clock import FRAME_S
from ivrsim.engine.job import CallRequest
from ivrsim.engine.listening import LiveTranscriber, engine_facts
from ivrsim.forking import forkserver_context
from ivrsim.speech.asr.base import EngineInfo

logger = logging.getLogger(__name__)

#: Frames sent to the child at once (100 ms of both channels).
BATCH_FRAMES = 5
#: Most audio the child may have left to decode before the live transcript is given up, in seconds.
MAX_BEHIND_S = 15.0
#: Longest closing waits for the sender thread (idle, it ends at once), in seconds.
SENDER_JOIN_S = 1.0
#: Longest the end of a call waits for the child's last results, in seconds.
FINISH_TIMEOUT_S = 30.0


class _Collector:
    """The child's stand-in for the call: it keeps what ``LiveTranscriber`` emits, to send it back."""

    frame_samples = 0
    rate_hz = 0
    call_time_s = 0.0

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event_type: str, **data: Any) -> None:
        self.events.append((event_type, data))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        events, self.events = self.events, []
        return events


def _child(conn: Connection, call_id: str, language: str, rate_hz: int, request: dict[str, Any]) -> None:
    """The child process: loads the engine while the call rings, then, from "start" (with the call time of
    the answer), the call's ``LiveTranscriber``, fed batch by batch until "finish"."""
    from ivrsim.blas import one_blas_thread
    from ivrsim.speech.asr.engines import SpeechEngines

    one_blas_thread()
    collector = _Collector(call_id)
    try:
        engine = SpeechEngines.from_environment().engine_for(language)
        start = conn.recv()
        transcriber = LiveTranscriber(engine, rate_hz, float(start[1]), CallRequest.from_dict(request))
    except EOFError:  # the call ended before it was answered
        return
    except Exception as error:  # noqa: BLE001 - reported to the call, which goes on without a transcript
        conn.send(("done", [("transcription.failed", {"source": "live", "reason": f"the speech engine could not start: {error}"})], False, True))
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the call's process has gone
            return
        if message[0] == "frames":
            sent = np.frombuffer(message[1], dtype=np.float32)
            received = np.frombuffer(message[2], dtype=np.float32)
            transcriber.feed(collector, sent, received)
            conn.send(("events", collector.take()))
        else:
            transcriber.finish(collector)
            conn.send(("done", collector.take(), transcriber.finished, transcriber.failed))
            return


class ProcessTranscriber:
    """``LiveTranscriber``'s interface (``feed``, ``end``, ``finished``, ``info``) over a child process.
    Start it off the event loop (``start`` forks, before the answer: the model loads while the call rings),
    ``begin`` it at the answer; ``close`` stops the child however the call ended."""

    def __init__(self, info: EngineInfo, call_id: str, language: str, rate_hz: int, request: CallRequest) -> None:
        self.info = info
        self.finished = False
        self.failed = False
        self._spec = (call_id, language, int(rate_hz), request.as_dict())
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._sent: list[np.ndarray] = []
        self._received: list[np.ndarray] = []
        self._outstanding = 0  # batches handed to the sender and not answered yet
        self._max_outstanding = int(MAX_BEHIND_S / (BATCH_FRAMES * FRAME_S))
        # A pipe holds about 64 KB: a child that falls behind would block a send on the call's event loop.
        # A thread of its own sends instead; the call only puts batches in its queue.
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None

    def start(self) -> ProcessTranscriber:
        """Fork the child (blocking: call it in a thread)."""
        context = forkserver_context()
        parent, child = context.Pipe()
        self._process = context.Process(target=_child, args=(child, *self._spec), name="ivrsim-live-transcriber", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        self._sender = threading.Thread(target=self._send_loop, args=(parent,), name="ivrsim-transcriber-sender", daemon=True)
        self._sender.start()
        return self

    def _send_loop(self, conn: Connection) -> None:
        """The sender thread: the queue's messages to the child, in order, until None (or the child is gone)."""
        while True:
            message = self._outbox.get()
            if message is None:
                return
            try:
                conn.send(message)
            except (OSError, ValueError, TypeError):  # the child has gone: the call notices on its next collect
                return

    def begin(self, answered_s: float) -> ProcessTranscriber:
        """The call was answered at ``answered_s`` (call time): the streams' time zero."""
        if self._conn is not None:
            self._outbox.put(("start", answered_s))
        return self

    def feed(self, call: CallContext, sent: np.ndarray, received: np.ndarray) -> None:
        """One frame of each side; every ``BATCH_FRAMES`` they go to the child, and what it has recognised
        since is emitted. Never blocks on the child."""
        if self.failed or self._conn is None:
            return
        self._sent.append(np.asarray(sent, dtype=np.float32))
        self._received.append(np.asarray(received, dtype=np.float32))
        self._collect(call)
        if len(self._sent) < BATCH_FRAMES or self.failed:
            return
        if self._outstanding >= self._max_outstanding:
            self._give_up(call, f"the live transcriber fell more than {MAX_BEHIND_S:g} s behind the sound card")
            return
        self._outbox.put(("frames", np.concatenate(self._sent).tobytes(), np.concatenate(self._received).tobytes()))
        self._sent, self._received = [], []
        self._outstanding += 1

    def _collect(self, call: CallContext) -> None:
        assert self._conn is not None
        try:
            while self._conn.poll():
                message = self._conn.recv()
                if message[0] == "events":
                    self._outstanding -= 1
                self._emit(call, message[1])
        except (EOFError, OSError) as error:
            self._give_up(call, f"the live transcriber stopped ({type(error).__name__})")

    def _emit(self, call: CallContext, events: list[tuple[str, dict[str, Any]]]) -> None:
        for event_type, data in events:
            if event_type == "transcription.failed":
                self.failed = True
                data = {**data, **engine_facts(self.info)}
            call.emit(event_type, **data)

    def _give_up(self, call: CallContext, reason: str) -> None:
        self.failed = True
        call.emit("transcription.failed", source="live", reason=reason, **engine_facts(self.info))
        self.close()

    async def end(self, call: CallContext) -> None:
        """The call ended: the rest of the audio goes to the child, and its last results are emitted once
        it has decoded them (waited for off the event loop)."""
        if self.failed or self._conn is None:
            return
        conn = self._conn
        if self._sent:
            self._outbox.put(("frames", np.concatenate(self._sent).tobytes(), np.concatenate(self._received).tobytes()))
            self._outstanding += 1
        self._outbox.put(("finish",))
        try:
            done = await asyncio.to_thread(_until_done, conn, FINISH_TIMEOUT_S)
        except (EOFError, OSError, TimeoutError) as error:
            self._give_up(call, f"the live transcriber did not finish ({type(error).__name__})")
            return
        for events in done[0]:
            self._emit(call, events)
        self.finished = bool(done[1]) and not self.failed
        self.close()

    def close(self) -> None:
        """Stop the child (done, given up, or the call cancelled): the child first (a send blocked on its
        full pipe then fails), then the sender thread, and only then the pipe the thread was writing to."""
        conn, process, self._conn = self._conn, self._process, None
        if process is not None and process.is_alive():
            process.terminate()
        self._outbox.put(None)
        if self._sender is not None:
            self._sender.join(SENDER_JOIN_S)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


def _until_done(conn: Connection, timeout_s: float) -> tuple[list[list[tuple[str, dict[str, Any]]]], bool]:
    """Read the child's messages until "done": every batch of events still coming, and whether it finished."""
    batches: list[list[tuple[str, dict[str, Any]]]] = []
    while True:
        if not conn.poll(timeout_s):
            raise TimeoutError
        message = conn.recv()
        batches.append(message[1])
        if message[0] == "done":
            return batches, bool(message[2]) and not bool(message[3])
