"""The job queue between the API and its workers: Huey, over SQLite (embedded) or Redis (many machines).

Why Huey: one task code over both storages. ``SqliteHuey`` is a file beside the database, so the
embedded default needs no server and survives a restart; ``RedisHuey`` is the same queue for workers on
other machines (``--queue redis://host:6379/0``), with blocking pops. Dramatiq (no SQLite broker), RQ
(Redis only) and Celery (a broker and a result backend to run, and far more than we use) were the others.

The queue carries only *which* work to do, as plain JSON-able messages; the conversation about a job
(claiming it, its events, control of a live call) goes over the worker's session with the API
(``ivrsim.workers.hub``), because a queue has no way back to one particular worker. Huey removes a task
when a worker takes it, so a worker takes a job only when it has room to run it at once, and claims it
from the API straight away: what the API acknowledged is either still in the queue, or claimed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huey import RedisHuey, SqliteHuey
from huey.api import Huey

logger = logging.getLogger(__name__)

#: The queue's name (Redis keys ``huey.redis.<name>``); servers sharing one Redis pick their own.
DEFAULT_QUEUE_NAME = "ivrsim"
#: The embedded queue's file in the data folder.
EMBEDDED_QUEUE_FILE = "queue.sqlite3"
#: Longest a Redis pop blocks before it returns nothing, in seconds (so a stopping worker stops soon).
REDIS_POP_S = 1.0


class QueueUrlError(ValueError):
    """A ``--queue`` value that names no queue ivrsim can use."""


def embedded_queue_url(data_dir: Path) -> str:
    """The embedded queue of a data folder: a SQLite file beside the database."""
    return f"sqlite:///{(data_dir / EMBEDDED_QUEUE_FILE).resolve()}"


def check_queue_url(url: str) -> str:
    """``url`` when it names a queue (``sqlite:///path`` or ``redis://host:port/db``), else QueueUrlError."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise QueueUrlError(f"queue {url!r}: a SQLite queue needs a file path, as in sqlite:////var/lib/ivrsim/queue.sqlite3")
        return url
    if parts.scheme in ("redis", "rediss", "unix"):
        if parts.scheme != "unix" and not parts.hostname:
            raise QueueUrlError(f"queue {url!r}: a Redis queue needs a host, as in redis://127.0.0.1:6379/0")
        return url
    raise QueueUrlError(f"queue {url!r}: use sqlite:///path/to/queue.sqlite3 (one machine) or redis://host:6379/0 (many machines)")


def redacted(url: str) -> str:
    """A queue URL without its credentials (for logs and listings)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite" or not parts.hostname:
        return url if parts.scheme == "sqlite" else f"{parts.scheme}://{parts.path}"
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _run(message: dict[str, Any]) -> None:
    """The Huey task of every job. Workers take it with ``JobQueue.take`` and run it on their own event
    loop (calls, many at once) or threads (analyses); Huey's consumer would hold a thread per call."""
    raise RuntimeError("ivrsim jobs are run by `ivrsim worker`, not by huey_consumer")


#: The queue's lanes: calls, background jobs (analyses), and calls to the sound card. A worker takes from
#: each lane only when it has room for that kind of work (one full of calls still takes an analysis), and
#: only the process that owns the sound card takes the ``phone`` lane.
LANES = ("calls", "jobs", "phone")


class JobQueue:
    """One lane of the Huey queue, for the API (``put``) and for workers (``take``). Messages are plain
    JSON-able dicts."""

    def __init__(self, url: str, lane: str = "calls", name: str = DEFAULT_QUEUE_NAME) -> None:
        if lane not in LANES:
            raise ValueError(f"lane must be one of {', '.join(LANES)}")
        self.url = check_queue_url(url)
        self.lane = lane
        parts = urlsplit(url)
        huey_name = f"{name}_{lane}"
        self.huey: Huey
        if parts.scheme == "sqlite":
            path = Path(parts.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.huey = SqliteHuey(huey_name, filename=str(path), results=False, utc=True)
            self.blocking = False
        else:
            self.huey = RedisHuey(huey_name, url=url, results=False, utc=True, blocking=True, read_timeout=REDIS_POP_S)
            self.blocking = True
        self._task = self.huey.task(name="ivrsim.run")(_run)

    @property
    def where(self) -> str:
        """The queue's address without credentials, for logs and /_sim/workers."""
        return redacted(self.url)

    def put(self, message: dict[str, Any]) -> None:
        """Enqueue a job (blocking I/O: call it off the event loop). Raises the storage's error when the
        queue cannot be reached."""
        self._task(message)

    def take(self) -> dict[str, Any] | None:
        """The next job's message, or None when there is none (a Redis queue waits up to ``REDIS_POP_S``
        for one; SQLite answers at once). Blocking I/O: call it off the event loop."""
        task = self.huey.dequeue()
        if task is None:
            return None
        if task.name != "ivrsim.run" or len(task.args) != 1 or not isinstance(task.args[0], dict):
            logger.warning("queue %s: dropped a task ivrsim does not know (%s)", self.where, task.name)
            return None
        return task.args[0]

    def pending_count(self) -> int:
        return int(self.huey.pending_count())

    def flush(self) -> None:
        """Forget every queued job of this lane."""
        self.huey.storage.flush_queue()

    def close(self) -> None:
        storage = self.huey.storage
        close = getattr(storage, "close", None)
        if close is not None:
            close()
        pool = getattr(storage, "pool", None)
        if pool is not None:
            pool.disconnect()
