"""Real services for tests and benchmarks: a ``redis-server`` on a loopback port with its own folder, and
``ivrsim worker`` processes. Both are context managers that leave nothing running behind them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from ivrsim.testing.waiting import wait_until


def free_port() -> int:
    """A TCP port free on loopback right now (the caller binds it soon after; retry on a clash)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` (Debian package ``redis-server``) on 127.0.0.1, persistence off, data in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: ./setup.sh installs it (Debian package redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # a port taken between free_port and redis's bind: try another
            self.port = free_port()
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "", "--appendonly", "no",
                 "--logfile", str(self.folder / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if wait_until(lambda: self._answers() or self.process is None or self.process.poll() is not None, timeout_s=20):
                if self.process.poll() is None:
                    return self
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def blocked_clients(self) -> int:
        """Clients waiting in a blocking pop (workers waiting for a job)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(b"INFO clients\r\n")
            reply = b""
            while b"blocked_clients:" not in reply or not reply.endswith(b"\r\n"):
                reply += connection.recv(4096)
        line = next(line for line in reply.decode().splitlines() if line.startswith("blocked_clients:"))
        return int(line.split(":")[1])

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(b"FLUSHALL\r\n")
            assert connection.recv(16).startswith(b"+OK")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class WorkerProcess:
    """``ivrsim worker`` in a process of its own; ``kill()`` is SIGKILL (a worker that dies)."""

    def __init__(self, queue_url: str, name: str, cache_dir: Path, recordings_dir: Path | None = None, max_calls: int = 100,
                 log: Path | None = None, prompt_cache_dir: Path | None = None) -> None:
        self.command = [sys.executable, "-m", "ivrsim", "worker", "--queue", queue_url, "--name", name, "--cache-dir", str(cache_dir),
                        "--max-calls", str(max_calls), "--verbose"]
        if recordings_dir is not None:
            self.command += ["--recordings-dir", str(recordings_dir)]
        if prompt_cache_dir is not None:
            self.command += ["--prompt-cache-dir", str(prompt_cache_dir)]
        self.name = name
        self.log = log or cache_dir.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_for_exit(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        raise AssertionError(f"process {process.pid} still runs after {timeout_s:g} s")
    return int(process.returncode)
