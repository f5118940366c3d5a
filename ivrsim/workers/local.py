"""Local workers: ``ivrsim serve`` starts ``--workers N`` worker processes on its own machine and keeps them
running (one that exits is started again), each with its own media cache, all sharing the server's
rendered prompts and writing recordings into its recordings folder. They stop with the server, and die
with it when it is killed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from ivrsim.forking import forkserver_context
from ivrsim.workers.worker import WorkerOptions, run_local_worker

if TYPE_CHECKING:
    from ivrsim.phone.desktop import PhoneSettings

logger = logging.getLogger(__name__)

#: How long a stopping worker has to end its calls before it is killed, in seconds.
STOP_GRACE_S = 10.0
#: Scheduling priority of local workers (nice): below the server's, so that on a machine the workers keep
#: busy the server still answers at once (its work per request is small, theirs is the calls' DSP).
LOCAL_NICE = 10
#: Wait before a worker that exited is started again, in seconds; it doubles, up to ``MAX_RESTART_DELAY_S``,
#: while the worker keeps exiting within ``STEADY_S`` of its start.
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
STEADY_S = 60.0


@dataclass(frozen=True)
class LocalWorkerSpec:
    """What every local worker is started with."""

    queue_url: str
    api_url: str
    token: str
    recordings_dir: Path
    cache_root: Path
    prompt_cache_dir: Path
    max_calls: int = 100
    #: The desktop phone (``--answer soundcard``): the first worker owns the sound card and takes the ``phone``
    #: lane; None: no local worker does (``ivrsim phone`` takes it).
    phone: PhoneSettings | None = None


class LocalWorkers:
    """``count`` worker processes, supervised from the server's event loop. They are forked by
    multiprocessing's fork server with ``ivrsim.workers.worker`` imported once, so each starts in
    milliseconds; the token and the queue's URL (which may hold a password) reach them through the fork
    server's socket, never a command line that every local user can read."""

    def __init__(self, count: int, spec: LocalWorkerSpec) -> None:
        self.count = count
        self.spec = spec
        self._processes: dict[int, BaseProcess] = {}
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0
        self._context = forkserver_context()

    def _spawn(self, index: int) -> BaseProcess:
        spec = self.spec
        owns_phone = index == 1 and spec.phone is not None  # the sound card is this machine's: one process owns it
        lanes = ("calls", "jobs", "phone") if owns_phone else ("calls", "jobs")
        options = WorkerOptions(
            name=f"local-{index}", max_calls=spec.max_calls, lanes=lanes, recordings_dir=spec.recordings_dir, phone=spec.phone if owns_phone else None,
            cache_dir=spec.cache_root / f"worker-{index}", prompt_cache_dir=spec.prompt_cache_dir, connect=spec.api_url, token=spec.token,
        )
        process = self._context.Process(target=run_local_worker, args=(spec.queue_url, options, LOCAL_NICE), name=f"ivrsim-worker-{index}")
        process.start()
        return process

    async def start(self) -> None:
        for index in range(1, self.count + 1):
            self._processes[index] = await asyncio.to_thread(self._spawn, index)  # the first start runs the fork server up
            self._supervisors.append(asyncio.create_task(self._supervise(index), name=f"local-worker-{index}"))
        logger.info("started %d local worker(s)", self.count)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes.values() if process.pid is not None and process.is_alive()]

    async def _supervise(self, index: int) -> None:
        """Start the worker again whenever it exits: after ``RESTART_DELAY_S``, doubling (up to a minute)
        while it keeps exiting within a minute of its start."""
        loop = asyncio.get_running_loop()
        delay_s = RESTART_DELAY_S
        while not self._stopping:
            started = loop.time()
            process = self._processes[index]
            while process.is_alive():
                await asyncio.sleep(0.2)
            if self._stopping:
                return
            delay_s = RESTART_DELAY_S if loop.time() - started > STEADY_S else min(delay_s * 2, MAX_RESTART_DELAY_S)
            logger.warning("local worker %d exited with %s; starting it again in %.0f s", index, process.exitcode, delay_s)
            await asyncio.sleep(delay_s)
            if self._stopping:
                return
            self._processes[index] = await asyncio.to_thread(self._spawn, index)
            self.restarts += 1

    async def stop(self) -> None:
        """SIGTERM every worker (they end their calls and report it), then SIGKILL what is left after
        ``STOP_GRACE_S``."""
        self._stopping = True
        for task in self._supervisors:
            task.cancel()
        for process in self._processes.values():
            if process.is_alive():
                process.terminate()
        deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
        for process in self._processes.values():
            while process.is_alive() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            if process.is_alive():
                logger.warning("local worker %d did not stop in %.0f s; killed", process.pid, STOP_GRACE_S)
                process.kill()
            process.join(timeout=5)
