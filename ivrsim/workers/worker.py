"""``ivrsim worker``: takes calls from the job queue and runs them, reporting over a session with the API.

A worker needs the queue and nothing else: each job names the API that queued it (URL and session token),
and the session's welcome says how that API runs calls (clock, line, seed, phonebook, media limits). The
worker runs up to ``max_calls`` calls at once on its event loop, as the API's own process would
(``CallRunner``), and takes a job only when it has room, so the queue keeps the rest for other workers.

Recordings: a worker writes them into ``recordings_dir``, which must be the folder the API serves them from
(local workers get the API's own; on another machine, mount it: NFS, SMB, a bind mount). The API leaves
its session token in a marker file there, so a worker knows whether it writes where the API reads; when
it does not, a call with ``record: true`` fails with a reason that says so, never silently without audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ivrsim.analysis.jobs import JobContext
from ivrsim.analysis.service import describe_failure, run_job_apart
from ivrsim.audio.dtmf_generator import DtmfToneSpec
from ivrsim.blas import one_blas_thread
from ivrsim.engine.callees import DeskPhone, Phonebook
from ivrsim.engine.clock import ManualTimeline
from ivrsim.engine.events import CallEvent
from ivrsim.engine.job import CallJob
from ivrsim.engine.output import CallOutput
from ivrsim.engine.runner import CallRunner, InjectionLimitError
from ivrsim.exceptions import IvrsimError, SpeechError
from ivrsim.media.audio_url import AudioUrlLoader
from ivrsim.speech.asr.engines import SpeechEngines
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.speech.voices import VoiceCatalog
from ivrsim.workers.protocol import (
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    PING_INTERVAL_S,
    PING_TIMEOUT_S,
    SESSION_PATH,
    SHARE_MARKER,
    WorkerConfig,
    event_message,
    job_of,
)
from ivrsim.workers.queue import JobQueue

if TYPE_CHECKING:
    from ivrsim.phone.desktop import PhoneSettings

logger = logging.getLogger(__name__)

#: How often an idle worker looks at a queue that cannot block (SQLite), in seconds; a nudge from the API
#: wakes it at once.
IDLE_POLL_S = 0.5
#: How long opening a session may take (connection, then the API's welcome), each, in seconds.
OPEN_TIMEOUT_S = 5.0
WELCOME_TIMEOUT_S = 5.0
#: How long a worker waits before it tries an unreachable queue again, in seconds.
QUEUE_RETRY_S = 1.0
#: A job whose API cannot be reached goes back to the queue this many times (a second apart), then is dropped.
MAX_REQUEUES = 30


class SessionRefused(Exception):
    """The API refused the session (a token from an earlier run of the API, or worker mode is off)."""


@dataclass
class WorkerOptions:
    """How ``ivrsim worker`` runs. ``connect``: an API to open a session with at once (local workers; others
    learn it from their first job). ``parent_pid``: stop when that process is gone (local workers)."""

    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    max_calls: int = 100
    #: Background jobs (analyses) run at once, each on a thread of its own.
    max_jobs: int = 1
    #: The queue's lanes this worker takes from; ``phone`` only where the sound card is.
    lanes: tuple[str, ...] = ("calls", "jobs")
    recordings_dir: Path | None = None
    cache_dir: Path = Path(".ivrsim-worker")
    cache_max_bytes: int = 200 * 1024 * 1024
    #: Rendered prompts; None: inside ``cache_dir``. A folder shared with the server and the other workers
    #: renders each prompt once, and every process then plays the very same samples (espeak-ng carries
    #: state from one render to the next, so two first renders of a text can differ by a few samples).
    prompt_cache_dir: Path | None = None
    phonebook: Path | None = None
    #: The desktop phone this worker answers ``phone`` calls with (``ivrsim serve --answer soundcard``'s first
    #: local worker); ``ivrsim phone`` hands its own to ``Worker``.
    phone: PhoneSettings | None = None
    connect: str | None = None
    token: str | None = None
    parent_pid: int | None = None


class CallObserver(Protocol):
    """Watches the calls a worker runs (the desktop phone's console): each call as it starts, its events."""

    def call_started(self, job: CallJob) -> None: ...

    def call_event(self, event: CallEvent) -> None: ...


class ObservedOutput:
    """A ``CallOutput`` that also shows every event to an observer."""

    def __init__(self, output: CallOutput, observer: CallObserver) -> None:
        self.output = output
        self.observer = observer

    def event(self, event: CallEvent) -> None:
        self.output.event(event)
        try:
            self.observer.call_event(event)
        except Exception:  # what is shown never breaks what is reported
            logger.exception("the call observer failed on %s", event.type)

    def update_call(self, call_id: str, **fields: Any) -> None:
        self.output.update_call(call_id, **fields)

    def recording_started(self, recording_id: str, call_id: str, path: str, channels: str) -> None:
        self.output.recording_started(recording_id, call_id, path, channels)

    def recording_completed(self, recording_id: str, duration_s: float) -> None:
        self.output.recording_completed(recording_id, duration_s)


class SessionOutput:
    """``CallOutput`` of one call, sent over the session in the order it happens."""

    def __init__(self, session: ApiSession, call_id: str) -> None:
        self.session = session
        self.call_id = call_id

    def event(self, event: CallEvent) -> None:
        self.session.send(event_message(event))

    def update_call(self, call_id: str, **fields: Any) -> None:
        self.session.send({"t": "update", "call_id": call_id, "fields": fields})

    def recording_started(self, recording_id: str, call_id: str, path: str, channels: str) -> None:
        self.session.send({"t": "recording_started", "call_id": call_id, "recording_id": recording_id, "channels": channels})

    def recording_completed(self, recording_id: str, duration_s: float) -> None:
        self.session.send({"t": "recording_completed", "call_id": self.call_id, "recording_id": recording_id, "duration_s": duration_s})


def session_url(api_url: str) -> str:
    parts = urlsplit(api_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path + SESSION_PATH, "", ""))


class ApiSession:
    """A worker's session with one API: its configuration, its runner, and the calls it runs for it."""

    def __init__(self, worker: Worker, api_url: str, token: str) -> None:
        self.worker = worker
        self.api_url = api_url
        self.token = token
        self.config: WorkerConfig | None = None
        self.runner: CallRunner | None = None
        self.timeline: ManualTimeline | None = None
        self.recordings_shared = False
        #: Why this worker cannot run the server's calls as configured (a phonebook it cannot read), if so.
        self.phonebook_error: str | None = None
        #: Running calls and jobs, by id.
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.loader: AudioUrlLoader | None = None
        self.job_context: JobContext | None = None
        self._socket: ClientConnection | None = None
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._claims: dict[str, asyncio.Future[dict[str, Any]]] = {}  # by call or job id
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: set[asyncio.Task[Any]] = set()
        self.closed = asyncio.Event()

    async def open(self) -> None:
        """Connect and read the welcome; SessionRefused when the API says no, OSError when unreachable."""
        try:
            self._socket = await connect(
                session_url(self.api_url), additional_headers={"Authorization": f"Bearer {self.token}"},
                ping_interval=PING_INTERVAL_S, ping_timeout=PING_TIMEOUT_S, max_size=MAX_MESSAGE_BYTES, open_timeout=OPEN_TIMEOUT_S,
                compression=None,  # small JSON on a local network: deflate costs both ends more CPU than it saves
            )
        except websockets.InvalidStatus as error:
            raise SessionRefused(f"the API at {self.api_url} refused the session (HTTP {error.response.status_code})") from None
        except websockets.InvalidHandshake as error:
            raise OSError(f"no session with the API at {self.api_url}: {error}") from None
        options = self.worker.options
        await self._socket.send(json.dumps({"t": "hello", "name": options.name, "host": socket.gethostname(), "pid": os.getpid(),
                                            "max_calls": options.max_calls, "lanes": list(options.lanes)}))
        welcome = json.loads(await asyncio.wait_for(self._socket.recv(), WELCOME_TIMEOUT_S))
        if welcome.get("t") != "welcome":
            raise SessionRefused(f"the API at {self.api_url} did not welcome this worker")
        self.config = WorkerConfig.from_dict(welcome["config"])
        self._configure(self.config, int(welcome.get("now_frames", 0)))
        self._tasks = [asyncio.create_task(self._read(), name="session-reader"), asyncio.create_task(self._write(), name="session-writer")]
        logger.info("session with %s open (%s clock)", self.api_url, self.config.clock)

    def _configure(self, config: WorkerConfig, now_frames: int) -> None:
        options = self.worker.options
        recordings = options.recordings_dir
        marker = recordings / SHARE_MARKER if recordings is not None else None
        try:
            self.recordings_shared = marker is not None and marker.read_text(encoding="utf-8").strip() == self.token
        except OSError:
            self.recordings_shared = False
        if config.clock == "manual":
            self.timeline = ManualTimeline()
            self.timeline.now_frames = now_frames
        phonebook_path = options.phonebook or (Path(config.phonebook) if config.phonebook else None)
        catalog = self.worker.synthesizer.catalog
        phonebook = Phonebook.default_book(catalog)
        if phonebook_path is not None:
            try:
                phonebook = Phonebook.load(phonebook_path, catalog)
            except IvrsimError as error:  # every call fails with this reason, rather than the worker
                self.phonebook_error = f"worker {options.name} cannot use the server's phonebook ({error}); pass --phonebook with a copy"
        loader = self.loader = AudioUrlLoader(config.media_settings(options.cache_dir / "media", options.cache_max_bytes))
        settings = config.engine_settings(options.cache_dir, recordings or options.cache_dir / "recordings")
        self.runner = CallRunner(settings, phonebook, self.worker.synthesizer, loader, self.timeline, self.worker.speech, self.worker.phone)
        # Transcripts read recordings where the API serves them: only a worker that shares that folder can.
        self.job_context = JobContext(loader, recordings if self.recordings_shared else None, self.worker.speech)

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed.is_set():
            self._outbox.put_nowait(message)

    async def _write(self) -> None:
        assert self._socket is not None
        try:
            ending = False
            while not ending and (message := await self._outbox.get()) is not None:
                batch = [message]  # what else is waiting goes in the same frame: one receive for the API, not many
                while len(batch) < MAX_BATCH and not self._outbox.empty():
                    queued = self._outbox.get_nowait()
                    if queued is None:
                        ending = True
                        break
                    batch.append(queued)
                await self._socket.send(json.dumps(batch if len(batch) > 1 else message, separators=(",", ":")))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._lost()

    async def _read(self) -> None:
        assert self._socket is not None
        try:
            async for raw in self._socket:
                self._handle(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._lost()

    def _lost(self) -> None:
        """The session ended: the API has ended (or will end) this session's calls; stop running them."""
        if self.closed.is_set():
            return
        self.closed.set()
        self._outbox.put_nowait(None)
        for claim in self._claims.values():
            if not claim.done():
                claim.set_exception(OSError("the session closed"))
        for task in self.tasks.values():
            task.cancel()
        if self.tasks:
            logger.warning("session with %s closed; %d call(s) and job(s) stopped", self.api_url, len(self.tasks))
        else:
            logger.info("session with %s closed", self.api_url)
        self.worker.session_lost(self)

    async def close(self, drain_s: float = 2.0) -> None:
        """Send what is still in the outbox (the stopped calls' last events), then close."""
        if not self.closed.is_set() and self._tasks:
            self._outbox.put_nowait(None)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._tasks[1]), drain_s)  # the writer, ending at the None
        if self._socket is not None:
            await self._socket.close()
        for task in self._tasks:
            task.cancel()
        self._lost()

    async def _claim(self, key: str, message: dict[str, Any]) -> dict[str, Any]:
        """Send a claim and wait for the API's answer (keyed by the call's or the job's id). No timeout
        while the session is open: an answer the API sent is never ignored (that would strand the work,
        claimed but not run); a session that closes fails the wait (OSError)."""
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._claims[key] = answer
        self.send(message)
        try:
            return await answer
        finally:
            self._claims.pop(key, None)

    async def claim(self, call_id: str) -> bool:
        """Claim a call from the API: True when this worker is to run it. The manual clock's present comes
        with the answer."""
        reply = await self._claim(call_id, {"t": "claim", "call_id": call_id})
        if self.timeline is not None:
            await self.timeline.move_to(int(reply.get("now_frames", 0)))
        return bool(reply.get("ok"))

    async def claim_job(self, job_id: str) -> tuple[str, dict[str, Any]] | None:
        """Claim a background job: its kind and input when this worker is to run it, else None."""
        reply = await self._claim(job_id, {"t": "claim_job", "job_id": job_id})
        return (str(reply["job_kind"]), dict(reply["input"])) if reply.get("ok") else None

    async def run_job(self, job_id: str, kind: str, job_input: dict[str, Any]) -> None:
        """Run a job off the loop (``run_job_apart``) and report its result or error (never raises, but for cancellation)."""
        assert self.job_context is not None
        try:
            result = await run_job_apart(kind, job_input, self.job_context)
        except asyncio.CancelledError:
            raise  # the session is gone: the API queues the job again
        except Exception as error:  # noqa: BLE001 - every failure ends the job, with its reason
            if not isinstance(error, IvrsimError):
                logger.exception("job %s failed", job_id)
            self.send({"t": "job_done", "job_id": job_id, "error": describe_failure(error)})
        else:
            self.send({"t": "job_done", "job_id": job_id, "result": result})

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind in ("claimed", "job_claimed"):
            answer = self._claims.get(message.get("call_id") or message.get("job_id") or "")
            if answer is not None and not answer.done():
                answer.set_result(message)
        elif kind in ("press", "say", "hangup"):
            self._spawn(self._answer(message), f"request-{kind}")
        elif kind == "stop":
            for call_id in message.get("call_ids", []):
                task = self.tasks.get(call_id)
                if task is not None:
                    task.cancel()
        elif kind == "clock":
            self._spawn(self._step(message), "clock")
        elif kind == "nudge":
            self.worker.wake()

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` as a task this session holds until it is done (a task nobody holds may vanish)."""
        task = asyncio.create_task(work, name=name)
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _step(self, message: dict[str, Any]) -> None:
        """The manual clock moved: move this worker's copy, and reply once its calls have caught up."""
        if self.timeline is not None and self.runner is not None:
            await self.timeline.move_to(int(message["now_frames"]))
            runner = self.runner
            await self.timeline.settle(lambda: runner.timeline_count)
        self.send({"t": "reply", "rid": message.get("rid"), "ok": True})

    async def _answer(self, message: dict[str, Any]) -> None:
        """Carry out a request on a live call and reply: the call's own ``LiveCall`` checks it."""
        reply: dict[str, Any] = {"t": "reply", "rid": message.get("rid"), "ok": False}
        call = self.runner.live_call(message.get("call_id", "")) if self.runner is not None else None
        try:
            if call is None or call.status != "in-progress":
                reply["error"] = "not_live"
                reply["message"] = "the call is not in progress any more"
            elif message["t"] == "press":
                injected = await call.press(str(message["digits"]), DtmfToneSpec(**message["spec"]))
                reply.update(ok=True, call_time_s=injected.call_time_s, duration_s=injected.duration_s)
            elif message["t"] == "say":
                injected = await call.say(str(message["text"]), message.get("voice"))
                reply.update(ok=True, call_time_s=injected.call_time_s, duration_s=injected.duration_s)
            else:
                reply.update(ok=True, call_time_s=await call.hangup())
        except InjectionLimitError as error:
            reply.update(error="injection_limit", seconds=error.seconds, queued_s=error.queued_s)
        except SpeechError as error:
            reply.update(error="speech", code=error.code, message=str(error))
        except IvrsimError as error:
            reply.update(error="not_live", message=str(error))
        self.send(reply)

    async def run_call(self, call_job: CallJob) -> None:
        assert self.runner is not None
        output: CallOutput = SessionOutput(self, call_job.call_id)
        observer = self.worker.observer
        if observer is not None:
            observer.call_started(call_job)
            output = ObservedOutput(output, observer)
        try:
            if self.phonebook_error is not None:
                await self.runner.refuse(call_job, output, self.phonebook_error)
            elif call_job.request.record and not self.recordings_shared:
                await self.runner.refuse(
                    call_job, output,
                    f"worker {self.worker.options.name} cannot write recordings where the API serves them; start it with "
                    "--recordings-dir on the API's recordings folder (shared with this machine)",
                )
            else:
                await self.runner.run(call_job, output)
        finally:
            self.send({"t": "ended", "call_id": call_job.call_id})


class Worker:
    """Takes calls and jobs from the queue at ``queue_url`` while it has room for each, and runs them in the
    session of the API that queued them."""

    def __init__(self, queue_url: str, options: WorkerOptions, phone: DeskPhone | None = None, observer: CallObserver | None = None) -> None:
        self.queues = {lane: JobQueue(queue_url, lane) for lane in options.lanes}
        self.options = options
        #: The desktop phone that answers the ``phone`` lane's calls (None: such a call fails, saying why).
        self.phone = phone if phone is not None else _phone_of(options.phone)
        self.observer = observer
        options.cache_dir.mkdir(parents=True, exist_ok=True)
        catalog = VoiceCatalog.load()
        self.synthesizer = SpeechSynthesizer(catalog=catalog, cache=PromptCache(options.prompt_cache_dir or options.cache_dir / "prompts",
                                                                                                disk_max_bytes=options.cache_max_bytes))
        #: Speech recognition for every session's calls and transcripts: each model loads once per process.
        self.speech = SpeechEngines.from_environment()
        self._sessions: dict[str, ApiSession] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._requeues: set[asyncio.Task[None]] = set()
        self._running: dict[str, set[asyncio.Task[None]]] = {lane: set() for lane in options.lanes}
        self._room = {lane: asyncio.Event() for lane in options.lanes}
        self._wake = {lane: asyncio.Event() for lane in options.lanes}
        self._stopping = asyncio.Event()

    def _capacity(self, lane: str) -> int:
        if lane == "phone":
            return 1  # one person at one phone: the next call waits for this one to end
        return self.options.max_jobs if lane == "jobs" else self.options.max_calls

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    def stop(self) -> None:
        self._stopping.set()
        for lane in self.options.lanes:
            self._wake[lane].set()
            self._room[lane].set()

    def session_lost(self, session: ApiSession) -> None:
        if self._sessions.get(session.token) is session:
            del self._sessions[session.token]
        if self.options.connect is not None and session.api_url == self.options.connect.rstrip("/"):
            logger.info("the API this worker was started for has gone; stopping")
            self.stop()

    async def run(self) -> None:
        """Take and run work until ``stop`` (SIGTERM, or the parent process gone); then stop the live calls
        (they report their end) and drop the running jobs (the server queues them again)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)
        watcher = asyncio.create_task(self._watch_parent()) if self.options.parent_pid else None
        if self.options.connect is not None and self.options.token is not None:
            await self._first_session(self.options.connect, self.options.token)
        takers = [asyncio.create_task(self._take_loop(lane), name=f"taker-{lane}") for lane in self.options.lanes]
        await self._stopping.wait()
        running = [task for tasks in self._running.values() for task in tasks]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, *takers, return_exceptions=True)
        await asyncio.gather(*self._requeues, return_exceptions=True)  # what goes back to the queue gets there
        for session in list(self._sessions.values()):
            await session.close()
        if watcher is not None:
            watcher.cancel()
        self.synthesizer.close()
        for queue in self.queues.values():
            queue.close()

    async def _first_session(self, api_url: str, token: str, within_s: float = 30.0) -> None:
        """Open the session with the server that started this worker (it may still be starting)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while not self._stopping.is_set():
            try:
                await self._session(api_url, token)
                return
            except SessionRefused as refused:
                logger.error("%s; stopping", refused)
                break
            except (OSError, TimeoutError) as error:
                if asyncio.get_running_loop().time() > deadline:
                    logger.error("no session with %s within %.0f s (%s); stopping", api_url, within_s, error)
                    break
                await asyncio.sleep(0.2)
        self.stop()

    async def _watch_parent(self) -> None:
        while True:
            if os.getppid() != self.options.parent_pid:
                logger.info("the server that started this worker has gone; stopping")
                self.stop()
                return
            await asyncio.sleep(0.5)

    async def _session(self, api_url: str, token: str) -> ApiSession:
        """The open session with the server run that ``token`` names, else a new one to ``api_url``. By
        token, because one server may be reached by several URLs: its local workers use the address it
        bound, while its jobs name its public URL for workers elsewhere."""
        async with self._opening.setdefault(token, asyncio.Lock()):  # one session per server run, however many lanes ask
            session = self._sessions.get(token)
            if session is not None and not session.closed.is_set():
                return session
            session = ApiSession(self, api_url.rstrip("/"), token)
            await session.open()
            self._sessions[token] = session
            return session

    async def _take_loop(self, lane: str) -> None:
        """Take work from ``lane`` whenever there is room for it. It is never cancelled in the middle of a
        take: work taken as the worker stops goes back to the queue."""
        loop = asyncio.get_running_loop()
        queue = self.queues[lane]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ivrsim-take-{lane}") as taker:
            while not self._stopping.is_set():
                if len(self._running[lane]) >= self._capacity(lane):
                    self._room[lane].clear()
                    await self._room[lane].wait()
                    continue
                self._wake[lane].clear()
                try:
                    message = await loop.run_in_executor(taker, queue.take)
                    if message is not None and self._stopping.is_set():
                        await loop.run_in_executor(taker, queue.put, message)
                        return
                except Exception as error:  # the queue is unreachable (a Redis restart, a locked file): try again soon
                    logger.warning("queue %s (%s lane): %s: %s; trying again in %.0f s", queue.where, lane, type(error).__name__, error, QUEUE_RETRY_S)
                    await asyncio.sleep(QUEUE_RETRY_S)
                    continue
                if message is None:
                    if not queue.blocking:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake[lane].wait(), IDLE_POLL_S)
                    continue
                try:
                    await self._start(lane, message)
                except Exception:  # one bad message never stops the worker taking work
                    logger.exception("could not start %s", message.get("call_id") or message.get("job_id"))

    async def _start(self, lane: str, message: dict[str, Any]) -> None:
        """Claim the work from its API and start it; unclaimed work is left to whoever has it."""
        what = message.get("call_id") or message.get("job_id")
        try:
            session = await self._session(str(message["api_url"]), str(message["token"]))
            if message.get("kind") == "job":
                claimed = await session.claim_job(str(message["job_id"]))
                work = session.run_job(str(message["job_id"]), *claimed) if claimed is not None else None
            else:
                work = session.run_call(job_of(message)) if await session.claim(str(message["call_id"])) else None
        except SessionRefused as refused:
            logger.warning("dropped %s: %s (the API that queued it has restarted and ended or queued it again)", what, refused)
            return
        except (OSError, TimeoutError) as error:
            # back to the queue a second later, without holding this lane meanwhile
            task = asyncio.create_task(self._requeue(lane, message, error), name="requeue")
            self._requeues.add(task)
            task.add_done_callback(self._requeues.discard)
            return
        if work is None:
            logger.debug("%s was not ours to run (ended, or claimed elsewhere)", what)
            return
        task = asyncio.create_task(work, name=str(what))
        session.tasks[str(what)] = task
        self._running[lane].add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._running[lane].discard(done)
            session.tasks.pop(str(what), None)
            self._room[lane].set()

        task.add_done_callback(finished)

    async def _requeue(self, lane: str, message: dict[str, Any], error: BaseException) -> None:
        """The API could not be reached: the work goes back to the queue (a bounded number of times)."""
        what = message.get("call_id") or message.get("job_id")
        attempts = int(message.get("requeued", 0)) + 1
        if attempts > MAX_REQUEUES:
            logger.error("dropped %s: its API %s was unreachable %d times (%s)", what, message.get("api_url"), attempts, error)
            return
        logger.warning("%s: the API %s is unreachable (%s); it goes back to the queue", what, message.get("api_url"), error)
        await asyncio.sleep(1.0)
        try:
            await asyncio.to_thread(self.queues[lane].put, {**message, "requeued": attempts})
        except Exception as failure:  # the API puts back what nobody claimed, in time
            logger.error("could not put %s back in the queue (%s); its server will queue it again", what, failure)


def _phone_of(settings: PhoneSettings | None) -> DeskPhone | None:
    """A headless desktop phone from plain settings (sound-card code loads only where one is asked for)."""
    if settings is None:
        return None
    from ivrsim.phone.desktop import DesktopPhone

    os.environ.update(dict(settings.environment))  # the sound server of the process that asked for the phone
    return DesktopPhone(settings)


def run_worker(queue_url: str, options: WorkerOptions, nice: int = 0, verbose: bool = False) -> None:
    """A worker process's life: priority, logging, then ``Worker.run`` until it stops. With
    ``options.parent_pid`` it dies with that process (the kernel's parent-death signal, and a watch)."""
    if options.parent_pid is not None:
        die_with_parent()
    if nice:
        os.nice(nice)
    one_blas_thread()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s worker: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Worker(queue_url, options).run())


def run_local_worker(queue_url: str, options: WorkerOptions, nice: int) -> None:
    """A local worker, forked by multiprocessing's fork server (which has ivrsim imported already, so a
    worker starts in milliseconds, not the seconds numpy, scipy and espeak-ng take to load). It leaves the
    terminal's process group (Ctrl-C reaches the server, which stops its workers in order) and dies with
    the fork server, which exits when the server does."""
    os.setsid()
    run_worker(queue_url, replace(options, parent_pid=os.getppid()), nice)


def die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the parent process dies (a local worker never outlives its
    server, even one killed with SIGKILL); elsewhere the parent watcher does it within half a second."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
