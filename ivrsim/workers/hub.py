"""The API side of worker mode: calls go to the job queue, workers claim them over their session, and
what the workers report goes to the store and the bus as if the call ran here.

``WorkerHub`` is a ``CallExecutor``: ``CallEngine`` hands it each placed call. It enqueues the job (off the
event loop), keeps the call as pending until a worker claims it, then routes the call's reports from that
worker's session to the call's ``CallOutput``, and /_sim's requests on the live call (``RemoteCall``) to
the worker. A worker whose session ends (its process died, or it stopped answering pings) has its calls
ended ``failed`` with the reason, their partial recordings finalised; what it had not taken is still in
the queue for the others.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ivrsim.audio.dtmf_generator import DtmfToneSpec
from ivrsim.audio.line import LineSettings
from ivrsim.engine.clock import ManualTimeline
from ivrsim.engine.executor import PendingCall
from ivrsim.engine.job import CallJob
from ivrsim.engine.output import CallOutput
from ivrsim.engine.runner import (
    MAX_INJECTED_S,
    STOPPED_REASON,
    CallNotLiveError,
    Injected,
    InjectionLimitError,
    LiveCallHandle,
    WorkerUnavailableError,
)
from ivrsim.exceptions import SpeechError
from ivrsim.store.sqlite import JobRecord
from ivrsim.workers.protocol import SHARE_MARKER, WorkerConfig, call_message, event_of, job_message
from ivrsim.workers.queue import LANES, JobQueue

if TYPE_CHECKING:
    from ivrsim.analysis.service import JobService

logger = logging.getLogger(__name__)

#: How long a request on a live call (press, say, hangup) waits for its worker, in seconds.
REQUEST_TIMEOUT_S = 30.0
#: How long shutdown waits for workers to end their calls before ending them itself, in seconds.
STOP_WAIT_S = 5.0
#: Why a call placed while the server stops ends at once.
PLACED_WHILE_STOPPING = f"{STOPPED_REASON}; it was placed while ivrsim was stopping"
#: How long a new session has to say hello, in seconds.
HELLO_TIMEOUT_S = 10.0
#: Work queued this long ago, unclaimed and no longer in the queue, was taken by a worker that died before
#: it claimed it: it is queued again (checked three times in that span), in seconds.
UNCLAIMED_AFTER_S = 30.0
#: A recording id as workers report it (it becomes a file name here).
RECORDING_ID = re.compile(r"^rec_[0-9a-f]{8,64}$")

#: Ends a call nothing runs any more: (call_id, reason, status or None for completed-if-answered).
OrphanEnder = Callable[[str, str, "str | None", "float | None"], None]


#: Why a call to the desktop phone failed when no phone took it.
NO_PHONE_REASON = (
    "no desktop phone took the call within its ring timeout: run `ivrsim phone` on the machine with the sound card "
    "(in the server's folder, or with --queue), or start the server with --answer soundcard"
)


def lane_of(job: CallJob) -> str:
    """The queue's lane for a call: ``phone`` when the desktop phone answers it, ``calls`` otherwise."""
    return "phone" if job.soundcard else "calls"


class SessionClosed(Exception):
    """The worker's session ended."""


class SessionSocket(Protocol):
    """A session's connection, JSON messages both ways (the WebSocket route adapts Starlette's)."""

    async def receive(self) -> list[dict[str, Any]]:
        """The next frame's messages, in order; SessionClosed when the connection is gone."""

    async def send(self, message: dict[str, Any]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class WorkerSession:
    """One connected worker."""

    def __init__(self, session_id: str, hello: dict[str, Any]) -> None:
        self.id = session_id
        self.name = str(hello.get("name") or session_id)[:200]
        self.host = str(hello.get("host") or "")[:200]
        self.pid = hello.get("pid") if isinstance(hello.get("pid"), int) else None
        self.max_calls = hello.get("max_calls") if isinstance(hello.get("max_calls"), int) else None
        self.lanes = [str(lane) for lane in hello.get("lanes", [])][:8] if isinstance(hello.get("lanes"), list) else []
        self.connected_at = time.time()
        self.calls: set[str] = set()
        self.calls_run = 0
        self.jobs: set[str] = set()
        self.jobs_run = 0
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._request_ids = itertools.count(1)
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self._outbox.put_nowait(message)

    async def write_loop(self, socket: SessionSocket) -> None:
        while (message := await self._outbox.get()) is not None:
            await socket.send(message)

    async def request(self, message: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Send a request and wait for the worker's reply."""
        if self.closed:
            raise CallNotLiveError("the worker running the call has stopped")
        request_id = next(self._request_ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        self.send({**message, "rid": request_id})
        try:
            return await asyncio.wait_for(reply, timeout_s)
        except TimeoutError:
            raise WorkerUnavailableError(f"the worker {self.name} did not answer within {timeout_s:g} s; try again") from None
        finally:
            self._replies.pop(request_id, None)

    def replied(self, message: dict[str, Any]) -> None:
        reply = self._replies.get(message.get("rid"))  # type: ignore[arg-type]
        if reply is not None and not reply.done():
            reply.set_result(message)

    def close(self) -> None:
        self.closed = True
        self._outbox.put_nowait(None)
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(CallNotLiveError("the worker running the call has stopped"))

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "host": self.host, "pid": self.pid, "max_calls": self.max_calls, "lanes": self.lanes,
                "live_calls": len(self.calls), "calls_run": self.calls_run, "running_jobs": len(self.jobs), "jobs_run": self.jobs_run,
                "connected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.connected_at))}


@dataclass
class QueuedCall:
    """A call handed to the queue: pending until a worker claims it, then live on that worker's session."""

    job: CallJob
    output: CallOutput
    session: WorkerSession | None = None
    status: str = "queued"
    ending: bool = False  # the API is ending it itself: no claim may take it any more
    #: When it was last put in the queue (monotonic seconds), once the queue has it.
    enqueued_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RemoteCall:
    """``LiveCallHandle`` of a call running on a worker: requests go over the worker's session, and the
    worker checks and carries them out as its own ``LiveCall`` would."""

    def __init__(self, call: QueuedCall, session: WorkerSession, rate_hz: int) -> None:
        self._call = call
        self._session = session
        self.rate_hz = rate_hz

    @property
    def status(self) -> str:
        return self._call.status

    def check_room(self, seconds: float) -> None:
        """What the API can tell alone: more than ``MAX_INJECTED_S`` never fits (the worker, which knows
        what still waits in the call, checks the rest)."""
        if seconds > MAX_INJECTED_S:
            raise InjectionLimitError(seconds, 0.0)

    async def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        reply = await self._session.request({**message, "call_id": self._call.job.call_id})
        if reply.get("ok"):
            return reply
        error = reply.get("error")
        if error == "injection_limit":
            raise InjectionLimitError(float(reply.get("seconds", 0.0)), float(reply.get("queued_s", 0.0)))
        if error == "speech":
            failure = SpeechError(str(reply.get("message", "the speech cannot be rendered")))
            failure.code = str(reply.get("code", SpeechError.code))
            raise failure
        raise CallNotLiveError(str(reply.get("message") or "the call is not in progress any more"))

    async def press(self, digits: str, spec: DtmfToneSpec) -> Injected:
        reply = await self._ask({"t": "press", "digits": digits, "spec": asdict(spec)})
        return Injected(reply["call_time_s"], reply["duration_s"])

    async def say(self, text: str, voice: str | None = None) -> Injected:
        reply = await self._ask({"t": "say", "text": text, "voice": voice})
        return Injected(reply["call_time_s"], reply["duration_s"])

    async def hangup(self) -> float:
        reply = await self._ask({"t": "hangup"})
        return float(reply["call_time_s"])


class WorkerHub:
    """``CallExecutor`` and ``JobExecutor`` over the job queue and the sessions of the workers that take its jobs.

    ``api_url``: where workers reach this API (it goes in each job, so a worker needs only the queue).
    ``recordings_dir``: where this API serves recordings from; the path stored for a worker's recording.
    ``timeline``: the manual clock's, whose steps go to every worker. Calls the desktop phone answers
    (``CallJob.soundcard``) go to the ``phone`` lane, which only the process that owns the sound card takes."""

    def __init__(
        self,
        queue_url: str,
        config: WorkerConfig,
        api_url: str,
        recordings_dir: Path,
        timeline: ManualTimeline | None = None,
        token: str | None = None,
        unclaimed_after_s: float = UNCLAIMED_AFTER_S,
    ) -> None:
        #: The queue's lanes: calls, background jobs, and calls to the sound card.
        self.queues = {lane: JobQueue(queue_url, lane) for lane in LANES}
        self.queue = self.queues["calls"]
        self.config = config
        self.api_url = api_url.rstrip("/")
        self.recordings_dir = recordings_dir
        self.token = token or secrets.token_urlsafe(24)
        self.timeline = timeline
        self.rate_hz = LineSettings(**config.line).rate_hz
        self._calls: dict[str, QueuedCall] = {}
        self._sessions: dict[str, WorkerSession] = {}
        self._session_ids = itertools.count(1)
        self._enqueue = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivrsim-enqueue")  # one: jobs keep their order
        self._end_orphaned: OrphanEnder | None = None
        self._jobs: JobService | None = None
        self._nudge_scheduled = False
        self._closing = False
        #: Jobs in the queue and not yet claimed, with when they were put there (monotonic seconds).
        self._unclaimed_jobs: dict[str, float] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self.unclaimed_after_s = unclaimed_after_s
        recordings_dir.mkdir(parents=True, exist_ok=True)
        (recordings_dir / SHARE_MARKER).write_text(self.token, encoding="utf-8")

    # -- CallExecutor ------------------------------------------------------------------------------------

    def bind(self, end_orphaned: OrphanEnder) -> None:
        self._end_orphaned = end_orphaned

    def submit(self, job: CallJob, output: CallOutput) -> None:
        call = self._calls[job.call_id] = QueuedCall(job, output)
        if self._closing:  # placed while the server stops: it would run nowhere
            self._end(call, PLACED_WHILE_STOPPING, "failed")
            return
        self._put(lane_of(job), call_message(job, self.api_url, self.token), call)
        if job.soundcard:  # a phone that is not there never rings: the call ends when its ring timeout has passed
            asyncio.get_running_loop().call_later(job.request.timeout_s, self._phone_unanswered, call)

    def _put(self, lane: str, message: dict[str, Any], call: QueuedCall | None = None) -> None:
        """Enqueue off the event loop (one thread: the queue keeps the order); on success nudge the
        workers, on failure end the call or the job with the reason."""
        what = message.get("call_id") or message.get("job_id")

        def enqueued(done: asyncio.Future[None]) -> None:
            error = None if done.cancelled() else done.exception()
            if not done.cancelled() and error is None:
                if call is not None:
                    call.enqueued_at = time.monotonic()
                else:
                    self._unclaimed_jobs[str(what)] = time.monotonic()
                self._nudge()
                return
            logger.error("%s could not be queued: %s", what, error)
            reason = f"the job queue ({self.queue.where}) could not be reached: {type(error).__name__}"
            if call is not None:
                self._end(call, reason, "failed")
            elif self._jobs is not None:
                self._jobs.finish(str(what), error=reason)

        try:
            queued = asyncio.get_running_loop().run_in_executor(self._enqueue, self.queues[lane].put, message)
        except RuntimeError:  # the enqueue thread has shut down: the server is stopping
            if call is not None:
                self._end(call, PLACED_WHILE_STOPPING, "failed")
            return
        queued.add_done_callback(enqueued)
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._requeue_unclaimed(), name="hub-unclaimed")

    async def _requeue_unclaimed(self) -> None:
        """Put back what a worker took from the queue but never claimed (it died in between): what is
        neither waiting in the queue nor claimed, well after it was queued."""
        while not self._closing:
            await asyncio.sleep(self.unclaimed_after_s / 3)
            stale = time.monotonic() - self.unclaimed_after_s
            calls = [c for c in self._calls.values() if c.session is None and not c.ending and c.enqueued_at is not None and c.enqueued_at < stale]
            jobs = [job_id for job_id, at in self._unclaimed_jobs.items() if at < stale]
            if not calls and not jobs:
                continue
            try:
                waiting_calls = await asyncio.to_thread(lambda: self.queues["calls"].waiting("call_id") | self.queues["phone"].waiting("call_id"))
                waiting_jobs = await asyncio.to_thread(self.queues["jobs"].waiting, "job_id") if jobs else set()
            except Exception as error:  # the queue is unreachable: try again at the next check
                logger.warning("could not read the queue to find lost work: %s", error)
                continue
            for call in calls:
                if call.job.call_id not in waiting_calls and call.session is None and not call.ending:
                    logger.warning("call %s was taken from the queue but never claimed (its worker stopped); queued again", call.job.call_id)
                    call.enqueued_at = None
                    self._put(lane_of(call.job), call_message(call.job, self.api_url, self.token), call)
            for job_id in jobs:
                if job_id not in waiting_jobs and job_id in self._unclaimed_jobs:
                    logger.warning("job %s was taken from the queue but never claimed (its worker stopped); queued again", job_id)
                    del self._unclaimed_jobs[job_id]
                    self._put("jobs", job_message(job_id, self.api_url, self.token))

    def _phone_unanswered(self, call: QueuedCall) -> None:
        """A call to the desktop phone that no phone took within its ring timeout: busy when a phone is
        connected (it is on another call), failed when none is (SIP 480: nobody is registered there)."""
        if call.session is not None or call.ending or self._calls.get(call.job.call_id) is not call:
            return
        phones = [session for session in self._sessions.values() if "phone" in session.lanes]
        waited_s = call.job.request.timeout_s
        if phones:
            self._end(call, f"the desktop phone was on another call for the whole ring timeout ({waited_s:g} s)", "busy", waited_s)
        else:
            self._end(call, NO_PHONE_REASON, "failed", waited_s)

    def live_call(self, call_id: str) -> LiveCallHandle | None:
        call = self._calls.get(call_id)
        if call is None or call.ending:
            return None
        if call.session is None:
            return PendingCall(self.rate_hz)
        return RemoteCall(call, call.session, self.rate_hz)

    @property
    def live_count(self) -> int:
        return len(self._calls)

    async def wait(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            await call.done.wait()

    async def close(self) -> None:
        """Stop the live calls: workers end theirs as an in-process shutdown would (``completed`` when
        answered, else ``failed``); what no worker ended within ``STOP_WAIT_S``, and what is still queued,
        is ended here."""
        if self._closing:
            return
        self._closing = True
        by_session: dict[str, list[str]] = {}
        for call in self._calls.values():
            if call.session is not None:
                by_session.setdefault(call.session.id, []).append(call.job.call_id)
            else:
                call.ending = True
        for session_id, call_ids in by_session.items():
            self._sessions[session_id].send({"t": "stop", "call_ids": call_ids})
        claimed = [call.done.wait() for call in self._calls.values() if call.session is not None]
        if claimed:
            await asyncio.wait([asyncio.ensure_future(waiting) for waiting in claimed], timeout=STOP_WAIT_S)
        for call in list(self._calls.values()):
            self._end(call, STOPPED_REASON, None)
        if self._watchdog is not None:
            self._watchdog.cancel()
        for session in self._sessions.values():
            session.close()
        self._enqueue.shutdown(wait=False, cancel_futures=True)  # a put stuck on a dead Redis must not hold the shutdown
        for queue in self.queues.values():
            queue.close()

    # -- JobExecutor ---------------------------------------------------------------------------------

    def bind_jobs(self, service: JobService) -> None:
        self._jobs = service

    def submit_job(self, job: JobRecord) -> None:
        """Queue a job on the jobs lane; a worker claims it (and gets its input) over its session."""
        if not self._closing:  # else it stays queued in the store: the next start queues it again
            self._put("jobs", job_message(job.id, self.api_url, self.token))

    async def close_jobs(self) -> None:
        """Nothing to wait for: a job still running when the server stops is queued again at its next start."""

    def pending(self) -> dict[str, int]:
        """Jobs waiting in each lane (blocking I/O: call it off the event loop)."""
        return {lane: queue.pending_count() for lane, queue in self.queues.items()}

    # -- sessions ----------------------------------------------------------------------------------------

    def sessions(self) -> list[dict[str, Any]]:
        return [session.describe() for session in self._sessions.values()]

    async def serve_session(self, socket: SessionSocket) -> None:
        """Run one worker's session until it ends; then end its calls ``failed``."""
        try:
            hello = (await asyncio.wait_for(socket.receive(), HELLO_TIMEOUT_S))[0]
        except (TimeoutError, SessionClosed, ValueError):
            await socket.close(1008, "say hello first")
            return
        if hello.get("t") != "hello":
            await socket.close(1008, "say hello first")
            return
        session = WorkerSession(f"w{next(self._session_ids)}", hello)
        self._sessions[session.id] = session
        session.send({"t": "welcome", "session": session.id, "config": self.config.as_dict(),
                      "now_frames": self.timeline.now_frames if self.timeline else 0})
        writer = asyncio.create_task(session.write_loop(socket), name=f"session-{session.id}-writer")
        why = "its connection closed"
        logger.info("worker %s (%s) connected", session.name, session.id)
        try:
            while True:
                for message in await socket.receive():
                    self._handle(session, message)
                # Frames arrive in bursts that receive() hands over without suspending: let the HTTP requests
                # waiting on the loop go between them (measured: POST p99 at 100 calls/s).
                await asyncio.sleep(0)
        except SessionClosed as closed:
            why = str(closed) or why
        except (KeyError, TypeError, ValueError) as error:
            why = f"it sent a message ivrsim does not understand ({type(error).__name__})"
            logger.error("worker %s: %s", session.name, why)
            await socket.close(1003, why[:120])
        except Exception as error:  # a bug here must end this session (and its calls), never leave it half-open
            why = f"the server failed on one of its messages ({type(error).__name__})"
            logger.exception("worker %s: %s", session.name, why)
            await socket.close(1011, why[:120])
        finally:
            session.close()
            writer.cancel()
            self._sessions.pop(session.id, None)
            self._gone(session, why)

    def _gone(self, session: WorkerSession, why: str) -> None:
        if session.calls:
            logger.warning("worker %s stopped (%s) with %d live call(s); they end failed", session.name, why, len(session.calls))
        for call_id in list(session.calls):
            call = self._calls.get(call_id)
            if call is not None:
                self._end(call, f"the worker running the call stopped ({session.name}: {why})", "failed")
        session.calls.clear()
        for job_id in list(session.jobs):
            again = self._jobs.interrupted(job_id, f"the worker running it stopped ({session.name}: {why})") if self._jobs else None
            if again is not None and not self._closing:
                self.submit_job(again)
        session.jobs.clear()

    def _end(self, call: QueuedCall, reason: str, status: str | None, at_s: float | None = None) -> None:
        """End a call that no worker will report on any more, from what the store holds (``at_s``: its call
        time then, when the store's events do not say it)."""
        call.ending = True
        self._calls.pop(call.job.call_id, None)
        if call.session is not None:
            call.session.calls.discard(call.job.call_id)
        if self._end_orphaned is not None:
            try:
                self._end_orphaned(call.job.call_id, reason, status, at_s)
            except Exception:  # one call's record never stops the others
                logger.exception("call %s could not be ended", call.job.call_id)
        call.done.set()

    def _handle(self, session: WorkerSession, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "reply":
            session.replied(message)
            return
        if kind == "claim_job":
            self._claim_job(session, str(message["job_id"]))
            return
        if kind == "job_done":
            job_id = str(message["job_id"])
            if job_id in session.jobs and self._jobs is not None:
                session.jobs.discard(job_id)
                session.jobs_run += 1
                result, error = message.get("result"), message.get("error")
                if not isinstance(result, dict) and error is None:
                    error = "the worker reported no result"
                self._jobs.finish(job_id, result if error is None else None, None if error is None else str(error)[:2000])
            return
        call_id = message["call_id"]
        if kind == "claim":
            self._claim(session, call_id)
            return
        call = self._calls.get(call_id)
        if call is None or call.session is not session:
            logger.warning("worker %s reported on call %s, which it does not run; ignored", session.name, call_id)
            return
        if kind == "event":
            call.output.event(event_of(message))
        elif kind == "update":
            fields = dict(message["fields"])
            if "status" in fields:
                call.status = str(fields["status"])
            call.output.update_call(call_id, **fields)
        elif kind == "recording_started":
            recording_id = str(message["recording_id"])
            if not RECORDING_ID.match(recording_id):
                raise ValueError("recording_id")
            path = self.recordings_dir / f"{recording_id}.wav"  # where this API serves it from (shared, or uploaded)
            call.output.recording_started(recording_id, call_id, str(path), str(message["channels"]))
        elif kind == "recording_completed":
            call.output.recording_completed(str(message["recording_id"]), float(message["duration_s"]))
        elif kind == "ended":
            self._calls.pop(call_id, None)
            session.calls.discard(call_id)
            session.calls_run += 1
            call.done.set()
        else:
            raise ValueError(kind)

    def _claim(self, session: WorkerSession, call_id: str) -> None:
        call = self._calls.get(call_id)
        ok = call is not None and call.session is None and not call.ending and not self._closing
        if ok:
            assert call is not None
            call.session = session
            session.calls.add(call_id)
        session.send({"t": "claimed", "call_id": call_id, "ok": ok, "now_frames": self.timeline.now_frames if self.timeline else 0})

    def _claim_job(self, session: WorkerSession, job_id: str) -> None:
        job = self._jobs.start(job_id, session.name) if self._jobs is not None and not self._closing else None
        if job is not None:
            session.jobs.add(job_id)
            self._unclaimed_jobs.pop(job_id, None)
        session.send({"t": "job_claimed", "job_id": job_id, "ok": job is not None,
                      "job_kind": job.kind if job else None, "input": job.input if job else None})

    async def settle_clock(self, now_frames: int) -> None:
        """Tell every worker the manual clock's present, and return once each has its calls caught up
        with it (as the server's own process would have before answering the step)."""
        steps = [session.request({"t": "clock", "now_frames": now_frames}) for session in list(self._sessions.values())]
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, (CallNotLiveError, WorkerUnavailableError)):
                raise result

    def _nudge(self) -> None:
        """Tell the workers there is work (once per loop turn, however many calls were queued in it)."""
        if self._nudge_scheduled:
            return
        self._nudge_scheduled = True

        def send() -> None:
            self._nudge_scheduled = False
            for session in self._sessions.values():
                session.send({"t": "nudge"})

        asyncio.get_running_loop().call_soon(send)
