"""Jobs, API side: stored before they are acknowledged, handed to whoever runs them, and finished in the
store; after a restart the unfinished ones run again (DESIGN.md: nothing acknowledged is lost).

``JobService`` owns the jobs' records; a ``JobExecutor`` runs them: ``InProcessJobs`` from this process
(``--workers 0``), or ``ivrsim.workers.hub.WorkerHub`` on worker processes through the queue's ``jobs``
lane; either way off the event loop (``run_job_apart``: a thread, or a child process for speech). Either starts a job through ``JobService.start`` (so a job runs once at a time, and counts
its attempts) and ends it through ``finish`` or ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ivrsim.analysis.jobs import (
    JOB_KINDS,
    MAX_JOB_ATTEMPTS,
    JobContext,
    JobInputError,
    run_job,
)
from ivrsim.exceptions import IvrsimError
from ivrsim.forking import forkserver_context
from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings
from ivrsim.store.sqlite import JobRecord, Store

logger = logging.getLogger(__name__)
T = TypeVar("T")


class JobExecutor(Protocol):
    def bind_jobs(self, service: JobService) -> None:
        """Hear where jobs start and end."""

    def submit_job(self, job: JobRecord) -> None:
        """Run the job (returns at once)."""

    async def close_jobs(self) -> None:
        """Stop running jobs; what was running is queued again at the next start."""


class JobService:
    """Submits, starts and finishes jobs. ``seed``: job ids repeat from run to run (as call ids do)."""

    def __init__(self, store: Store, executor: JobExecutor, seed: int | None = None) -> None:
        self.store = store
        self.executor = executor
        self._ids = random.Random(seed) if seed is not None else None
        #: Called with each job once it has ended (completed or failed).
        self.listeners: list[Callable[[JobRecord], None]] = []
        executor.bind_jobs(self)

    def submit(self, kind: str, job_input: dict[str, Any]) -> JobRecord:
        if kind not in JOB_KINDS:
            raise JobInputError(f"kind: no job kind {kind!r}; kinds are {', '.join(JOB_KINDS)}")
        job = self.store.insert_job(self._new_id(), kind, job_input)
        self.executor.submit_job(job)
        return job

    def _new_id(self) -> str:
        token = f"{self._ids.getrandbits(80):020x}" if self._ids is not None else secrets.token_hex(10)
        return f"job_{token}"

    def record_done(self, kind: str, job_input: dict[str, Any], result: dict[str, Any], worker: str) -> JobRecord:
        """A job whose result is already known (its work was done elsewhere: a live transcript): stored
        as started and completed by ``worker``, and announced to the listeners like any other."""
        job = self.store.insert_job(self._new_id(), kind, job_input)
        self.store.start_job(job.id, worker)
        self.finish(job.id, result)
        return self.store.job(job.id) or job

    def recover(self) -> int:
        """Run again what a previous run left unfinished (a job that was processing starts over)."""
        jobs = self.store.unfinished_jobs()
        for job in jobs:
            if job.status == "processing":
                self.store.requeue_job(job.id)
            self.executor.submit_job(job)
        if jobs:
            logger.warning("recovery: %d unfinished job(s) queued again", len(jobs))
        return len(jobs)

    def start(self, job_id: str, worker: str) -> JobRecord | None:
        """The job, now ``processing`` on ``worker``; None when it is not queued (taken, ended, unknown)."""
        return self.store.start_job(job_id, worker)

    def finish(self, job_id: str, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.store.finish_job(job_id, result, error)
        job = self.store.job(job_id)
        if job is not None:
            for listener in self.listeners:
                try:
                    listener(job)
                except Exception:  # a listener's bug never loses the job
                    logger.exception("job listener failed for %s", job_id)

    def interrupted(self, job_id: str, why: str) -> JobRecord | None:
        """A job whose runner stopped mid-way: queued again (returned, for the executor to run), or
        failed for good after ``MAX_JOB_ATTEMPTS`` starts."""
        job = self.store.job(job_id)
        if job is None or job.status != "processing":
            return None
        if job.attempts >= MAX_JOB_ATTEMPTS:
            self.finish(job_id, error=f"{why}; it was started {job.attempts} times, each time its worker stopped")
            return None
        self.store.requeue_job(job_id)
        return self.store.job(job_id)


async def in_daemon_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on a daemon thread of its own: a job (a fetch, then DSP) that is still running
    when its process stops must not hold the process (executor threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(outcome)

    def run() -> None:
        try:
            value = function(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine
            settle(lambda failure=error: future.done() or future.set_exception(failure))
        else:
            settle(lambda: future.done() or future.set_result(value))

    threading.Thread(target=run, name="ivrsim-job", daemon=True).start()
    return await future


def recognises_speech(kind: str, job_input: dict[str, Any]) -> bool:
    """Whether a job runs a speech recognizer (a transcription, or an analysis asked to transcribe)."""
    return kind == "transcription" or (kind == "analysis" and bool(job_input.get("transcribe")) and not job_input.get("transcript_object"))


async def run_job_apart(kind: str, job_input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """Run a job off the event loop: on a thread when it is numpy work (which lets go of the GIL: an
    analysis of a minute takes tens of ms), in a child process when it recognises speech (a recognizer
    holds the GIL for seconds, which starved a worker's session until it was dropped). A child costs
    about 0.2 s to start; a thread nothing."""
    if recognises_speech(kind, job_input):
        return await in_child_process(kind, job_input, context)
    return await in_daemon_thread(run_job, kind, job_input, context)


class JobFailedError(IvrsimError):
    """A job that failed in its child process: the message is the failure as stored (``describe_failure``)."""

    code = "job_failed"


def _job_child(conn: Connection, kind: str, job_input: dict[str, Any], media: MediaSettings, recordings_folder: Path | None) -> None:
    """A job's child process: its own loader and speech engines, the job, and its outcome sent back."""
    from ivrsim.blas import one_blas_thread

    one_blas_thread()
    loader = AudioUrlLoader(media)
    outcome: tuple[str, Any]
    try:
        outcome = ("ok", run_job(kind, job_input, JobContext(loader, recordings_folder)))
    except Exception as error:  # noqa: BLE001 - every failure ends the job, with its reason
        if not isinstance(error, IvrsimError):
            logger.exception("job failed")
        outcome = ("error", describe_failure(error))
    finally:
        loader.close()
    with contextlib.suppress(OSError):  # the parent has gone (the job was cancelled): nobody to tell
        conn.send(outcome)
    conn.close()


def _outcome(conn: Connection, process: BaseProcess) -> tuple[str, Any]:
    """The child's outcome, waited for on a thread; a child that died without one is an internal error."""
    while True:
        if conn.poll(0.5):
            try:
                return conn.recv()  # type: ignore[no-any-return]
            except EOFError:
                pass
        elif process.is_alive():
            continue
        process.join(1)
        return ("error", f"internal error: the job's process ended without a result (exit code {process.exitcode})")


async def in_child_process(kind: str, job_input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """Run a job in a child process of its own (forked by multiprocessing's fork server) and return its
    result; JobFailedError with the reason when it fails. A job decodes, resamples and recognises speech,
    and a recognizer holds Python's GIL while it decodes: on a thread of this process it would starve this
    process's event loop (a worker's session missed its pings and was dropped; the API's requests would
    wait). Cancelled, the child is killed."""
    ctx = forkserver_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_job_child, args=(sender, kind, job_input, context.loader.settings, context.recordings_folder),
                          name="ivrsim-job", daemon=True)
    started = asyncio.get_running_loop().run_in_executor(None, process.start)
    try:
        await asyncio.shield(started)
        sender.close()  # the child holds the only write end now
        status, value = await asyncio.to_thread(_outcome, receiver, process)
    finally:
        if not started.done():  # cancelled while the child was starting: let it start, to kill it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(started), 30)
        if process.is_alive():  # cancelled (the worker stops): the job is queued again elsewhere; it must not run twice
            process.kill()
        sender.close()
        receiver.close()
    if status != "ok":
        raise JobFailedError(str(value))
    return dict(value)


def describe_failure(error: BaseException) -> str:
    """A job's error as stored: our own message, or the internal error's type and text."""
    if isinstance(error, IvrsimError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


class InProcessJobs:
    """``JobExecutor`` from this process, ``parallel`` at a time, each off the event loop (``--workers 0``)."""

    def __init__(self, context: JobContext, parallel: int = 2) -> None:
        self.context = context
        self._slots = asyncio.Semaphore(parallel)
        self._tasks: set[asyncio.Task[None]] = set()
        self._service: JobService | None = None

    def bind_jobs(self, service: JobService) -> None:
        self._service = service

    def submit_job(self, job: JobRecord) -> None:
        task = asyncio.create_task(self._run(job.id), name=job.id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job_id: str) -> None:
        assert self._service is not None
        async with self._slots:
            job = self._service.start(job_id, "in-process")
            if job is None:
                return
            try:
                result = await run_job_apart(job.kind, job.input, self.context)
            except asyncio.CancelledError:
                raise  # stays processing: queued again at the next start
            except Exception as error:  # noqa: BLE001 - every failure ends the job, with its reason
                if not isinstance(error, IvrsimError):
                    logger.exception("job %s failed", job_id)
                self._service.finish(job_id, error=describe_failure(error))
            else:
                self._service.finish(job_id, result)

    async def close_jobs(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
