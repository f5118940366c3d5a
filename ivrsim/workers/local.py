"""Local workers: ``ivrsim serve`` starts ``--workers N`` ``ivrsim worker`` processes on its own machine and
keeps them running (one that exits is started again), each with its own media cache, all sharing the
server's rendered prompts and writing recordings into its recordings folder. They stop with the server, and die with it when it is killed."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


class LocalWorkers:
    """``count`` worker processes, supervised from the server's event loop."""

    def __init__(self, count: int, spec: LocalWorkerSpec) -> None:
        self.count = count
        self.spec = spec
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        spec = self.spec
        command = [
            sys.executable, "-m", "ivrsim", "worker", "--connect", spec.api_url,
            "--name", f"local-{index}", "--recordings-dir", str(spec.recordings_dir),
            "--cache-dir", str(spec.cache_root / f"worker-{index}"), "--prompt-cache-dir", str(spec.prompt_cache_dir),
            "--max-calls", str(spec.max_calls),
            "--parent-pid", str(os.getpid()), "--lane", "calls", "--lane", "jobs", "--nice", str(LOCAL_NICE),
        ]
        if index == 1:  # the sound card is this machine's: one process owns it
            command += ["--lane", "phone"]
        # The token and the queue (whose URL may hold a password) go by environment, not on the command line
        # that every local user can read.
        env = {**os.environ, "IVRSIM_WORKER_TOKEN": spec.token, "IVRSIM_QUEUE": spec.queue_url}
        # Started from the event loop's own thread: the kernel's parent-death signal is tied to the thread
        # that forks, and this one lives as long as the server.
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)

    async def start(self) -> None:
        for index in range(1, self.count + 1):
            self._processes[index] = self._spawn(index)
            self._supervisors.append(asyncio.create_task(self._supervise(index), name=f"local-worker-{index}"))
        logger.info("started %d local worker(s)", self.count)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes.values() if process.poll() is None]

    async def _supervise(self, index: int) -> None:
        """Start the worker again whenever it exits: after ``RESTART_DELAY_S``, doubling (up to a minute)
        while it keeps exiting within a minute of its start."""
        loop = asyncio.get_running_loop()
        delay_s = RESTART_DELAY_S
        while not self._stopping:
            started = loop.time()
            process = self._processes[index]
            while process.poll() is None:
                await asyncio.sleep(0.2)
            if self._stopping:
                return
            delay_s = RESTART_DELAY_S if loop.time() - started > STEADY_S else min(delay_s * 2, MAX_RESTART_DELAY_S)
            logger.warning("local worker %d exited with %s; starting it again in %.0f s", index, process.returncode, delay_s)
            await asyncio.sleep(delay_s)
            if self._stopping:
                return
            self._processes[index] = self._spawn(index)
            self.restarts += 1

    async def stop(self) -> None:
        """SIGTERM every worker (they end their calls and report it), then SIGKILL what is left after
        ``STOP_GRACE_S``."""
        self._stopping = True
        for task in self._supervisors:
            task.cancel()
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
        for process in self._processes.values():
            while process.poll() is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is None:
                logger.warning("local worker %d did not stop in %.0f s; killed", process.pid, STOP_GRACE_S)
                process.kill()
                process.wait()
