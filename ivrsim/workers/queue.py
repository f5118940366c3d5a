"""The job queue between the API and its workers: Huey's storages, SQLite (embedded) or Redis (many machines).

Why Huey: one queue interface over both. ``SqliteStorage`` is a file beside the database, so the embedded
default needs no server and survives a restart; ``RedisStorage`` is the same queue for workers on other
machines (``--queue redis://host:6379/0``), with blocking pops. Dramatiq (no SQLite broker), RQ (Redis only)
and Celery (a broker and a result backend to run, and far more than we use) were the others. We use the
storages, not Huey's task layer: its messages are pickles, and a worker must not run code that anyone
able to write to a Redis on the network put there. Our messages are JSON objects.

The queue carries only *which* work to do; the conversation about it (claiming it, its events, control
of a live call) goes over the worker's session with the API (``ivrsim.workers.hub``), because a queue has
no way back to one particular worker. A storage removes a message when a worker takes it, so a worker
takes work only when it has room to run it at once, and claims it from the API straight away; the API
puts back what was taken but never claimed (a worker that died in between), so what it acknowledged is
always in the queue, claimed, or ended.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huey.storage import BaseStorage, RedisStorage, SqliteStorage

logger = logging.getLogger(__name__)

#: The queue's name (Redis keys ``huey.redis.<name>``); servers sharing one Redis pick their own.
DEFAULT_QUEUE_NAME = "ivrsim"
#: The embedded queue's file in the data folder.
EMBEDDED_QUEUE_FILE = "queue.sqlite3"
#: Longest a Redis pop blocks before it returns nothing, in seconds (so a stopping worker stops soon).
REDIS_POP_S = 1.0


class QueueUrlError(ValueError):
    """A ``--queue`` value that names no queue ivrsim can use."""


class QueueUnreachableError(OSError):
    """The queue does not answer (Redis down, a SQLite file that cannot be opened)."""


def embedded_queue_url(data_dir: Path) -> str:
    """The embedded queue of a data folder: a SQLite file beside the database."""
    return f"sqlite:///{(data_dir / EMBEDDED_QUEUE_FILE).resolve()}"


def check_queue_url(url: str) -> str:
    """``url`` when it names a queue (``sqlite:///path`` or ``redis://host:port/db``), else QueueUrlError
    (whose message shows the URL without its credentials)."""
    try:
        parts = urlsplit(url)
        shown = redacted(url)
    except ValueError:
        raise QueueUrlError("queue: not a URL; use sqlite:///path/to/queue.sqlite3 (one machine) or redis://host:6379/0 (many machines)") from None
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise QueueUrlError(f"queue {shown!r}: a SQLite queue needs a file path, as in sqlite:////var/lib/ivrsim/queue.sqlite3")
        return url
    if parts.scheme in ("redis", "rediss", "unix"):
        if parts.scheme != "unix" and not parts.hostname:
            raise QueueUrlError(f"queue {shown!r}: a Redis queue needs a host, as in redis://127.0.0.1:6379/0")
        database = parts.path.strip("/")
        if parts.scheme != "unix" and database and not database.isdigit():
            raise QueueUrlError(f"queue {shown!r}: the Redis database is a number, as in redis://127.0.0.1:6379/0")
        if parts.query or parts.fragment:
            raise QueueUrlError(f"queue {shown!r}: leave out the ?query and #fragment: redis://[user:password@]host:port/db")
        return url
    raise QueueUrlError(f"queue {shown!r}: use sqlite:///path/to/queue.sqlite3 (one machine) or redis://host:6379/0 (many machines)")


def redacted(url: str) -> str:
    """A queue URL without its credentials (for logs and listings)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite" or not parts.hostname:
        return url if parts.scheme in ("sqlite", "") else f"{parts.scheme}://{parts.path}"
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


#: The queue's lanes: calls, background jobs (analyses), and calls to the sound card. A worker takes from
#: each lane only when it has room for that kind of work (one full of calls still takes an analysis), and
#: only the process that owns the sound card takes the ``phone`` lane.
LANES = ("calls", "jobs", "phone")


class JobQueue:
    """One lane of the queue, for the API (``put``) and for workers (``take``): JSON objects in, JSON
    objects out."""

    def __init__(self, url: str, lane: str = "calls", name: str = DEFAULT_QUEUE_NAME) -> None:
        if lane not in LANES:
            raise ValueError(f"lane must be one of {', '.join(LANES)}")
        self.url = check_queue_url(url)
        self.lane = lane
        parts = urlsplit(url)
        storage_name = f"{name}_{lane}"
        self.storage: BaseStorage
        if parts.scheme == "sqlite":
            path = Path(parts.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.storage = SqliteStorage(storage_name, filename=str(path))
            self.blocking = False
        else:
            self.storage = RedisStorage(storage_name, url=url, blocking=True, read_timeout=REDIS_POP_S)
            self.blocking = True

    @property
    def where(self) -> str:
        """The queue's address without credentials, for logs and /_sim/workers."""
        return redacted(self.url)

    def put(self, message: dict[str, Any]) -> None:
        """Enqueue a message (blocking I/O: call it off the event loop). Raises the storage's error when
        the queue cannot be reached."""
        self.storage.enqueue(json.dumps(message, separators=(",", ":")).encode())

    def take(self) -> dict[str, Any] | None:
        """The next message, or None when there is none (a Redis queue waits up to ``REDIS_POP_S`` for one;
        SQLite answers at once). Blocking I/O: call it off the event loop."""
        data = self.storage.dequeue()
        if data is None:
            return None
        try:
            message = json.loads(bytes(data))
        except (UnicodeDecodeError, json.JSONDecodeError):
            message = None
        if not isinstance(message, dict) or message.get("kind") not in ("call", "job"):
            logger.warning("queue %s: dropped a message that is not ivrsim's (%d bytes)", self.where, len(data))
            return None
        return message

    def waiting(self, key: str) -> set[str]:
        """The ``key`` of every message waiting in this lane (read without taking anything)."""
        found = set()
        for item in self.storage.enqueued_items():
            try:
                value = json.loads(bytes(item)).get(key)
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                continue
            if isinstance(value, str):
                found.add(value)
        return found

    def pending_count(self) -> int:
        return int(self.storage.queue_size())

    def check(self) -> None:
        """Reach the queue now (blocking I/O); QueueUnreachableError, naming it without credentials, if not."""
        try:
            self.pending_count()
        except Exception as error:  # redis, sqlite: whatever the storage raises
            raise QueueUnreachableError(f"the queue {self.where} cannot be reached: {type(error).__name__}: {error}") from None

    def flush(self) -> None:
        """Forget every queued message of this lane."""
        self.storage.flush_queue()

    def close(self) -> None:
        close = getattr(self.storage, "close", None)
        if close is not None:
            close()
        pool = getattr(self.storage, "pool", None)
        if pool is not None:
            pool.disconnect()
