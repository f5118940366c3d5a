"""Operations on a data folder: who holds it, retention (prune), and snapshots (save, load).

All of it is safe while a server runs on the folder: prune opens its own SQLite connection (WAL lets the
server keep reading and writing) and deletes in small, short write transactions with a pause between them,
so the server's own writes (which wait for the write lock on the event loop) wait milliseconds, never up to
the busy timeout; a snapshot copies the database with SQLite's online backup API in one step, so it is one
consistent state even while calls are being written. Loading a
snapshot is the one thing that needs the folder to itself: it refuses while a server holds the folder's
lock.

The lock is an advisory ``flock`` on ``server.lock`` held by the server for its whole life; the kernel
drops it when the process ends, even on SIGKILL, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import io
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ivrsim import __version__
from ivrsim.exceptions import IvrsimError
from ivrsim.engine.events import iso_days_ago, utc_now
from ivrsim.store.sqlite import BUSY_TIMEOUT_S, LIVE_STATUSES, Store, delete_expired_idempotency_keys

logger = logging.getLogger(__name__)

#: The database file inside a data folder (the engine's name for it).
DATABASE_NAME = "ivrsim.sqlite3"
#: The server's lock file inside a data folder; it holds the server's pid while it runs.
LOCK_NAME = "server.lock"
#: What a snapshot's manifest says it is, and the newest layout this version reads.
SNAPSHOT_FORMAT = "ivrsim-snapshot"
SNAPSHOT_VERSION = 1
#: Calls deleted per write transaction by prune, at most: small transactions keep the server's writes flowing.
PRUNE_BATCH_CALLS = 20
#: A prune transaction that took longer than this halves the next batch (calls with many events), in seconds.
PRUNE_TRANSACTION_S = 0.05
#: Prune's pause between two transactions, in seconds: the server's waiting writes go first.
PRUNE_PAUSE_S = 0.02
#: Files in a data folder that a snapshot never copies (the live database is copied by the backup API).
_NOT_COPIED = {DATABASE_NAME, f"{DATABASE_NAME}-wal", f"{DATABASE_NAME}-shm", f"{DATABASE_NAME}-journal", LOCK_NAME}

#: Progress callback: (what, done, total) in bytes or items.
Progress = Callable[[str, int, int], None]


class MaintenanceError(IvrsimError):
    """A data folder or snapshot that cannot be worked on; the message says why and what to do."""

    code = "maintenance_error"


class DataDirInUse(MaintenanceError):
    """A running server holds the data folder (its ``server.lock``)."""

    code = "data_dir_in_use"

    def __init__(self, data_dir: Path, holder: dict[str, Any]) -> None:
        pid = holder.get("pid")
        who = f"pid {pid}" if pid else "another process"
        listen = f", listening on {holder['listen']}" if holder.get("listen") else ""
        stop = f"stop it first (Ctrl-C in its terminal, or `kill {pid}`)" if pid else "stop it first"
        super().__init__(f"data folder {data_dir} is in use by a running ivrsim server ({who}{listen}); {stop}")
        self.holder = holder


class DataDirNotEmpty(MaintenanceError):
    code = "data_dir_not_empty"


# -- the lock -----------------------------------------------------------------------------------------------


class DataDirLock:
    """The server's claim on a data folder: an exclusive ``flock`` on ``server.lock`` holding who it is."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self, **info: Any) -> None:
        """Take the lock or raise DataDirInUse naming the holder; ``info`` is written for others to read."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirInUse(self.data_dir, _read_holder(self.path)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": utc_now(), "ivrsim": __version__, **info}))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(data_dir: Path) -> dict[str, Any] | None:
    """Who holds ``data_dir`` (the holder's pid, listen address, start time), or None when nobody does."""
    path = Path(data_dir) / LOCK_NAME
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


# -- retention ----------------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    """What prune removed (or, with ``dry_run``, would remove). ``rows`` counts rows per table."""

    data_dir: str
    older_than_days: float
    cutoff: str
    dry_run: bool
    calls: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    recording_files: int = 0
    bytes_freed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _connect(db: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def _database(data_dir: Path) -> Path:
    db = Path(data_dir) / DATABASE_NAME
    if not db.is_file():
        raise MaintenanceError(f"no ivrsim database in {data_dir} (expected {DATABASE_NAME}); check --data-dir")
    return db


def _tables_with(connection: sqlite3.Connection, column: str, skip: set[str]) -> list[str]:
    """Tables (other than ``skip``) that have ``column``: today's and those later schemas add."""
    names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return [n for n in names if n not in skip and any(row[1] == column for row in connection.execute(f'PRAGMA table_info("{n}")'))]


def recording_files(data_dir: Path, recording_id: str, stored_path: str) -> set[Path]:
    """A recording's files, looked up inside ``data_dir/recordings`` only (the stored path may be relative
    to another working directory, and neither prune nor the /_sim reset deletes outside the data folder):
    the WAV and any conversions beside it (``<id>.mp3``)."""
    folder = Path(data_dir) / "recordings"
    files = {p for p in folder.glob(f"{glob.escape(recording_id)}.*") if p.is_file()}
    name = PurePosixPath(stored_path.replace("\\", "/")).name
    named = folder / name
    if name not in ("", ".", "..") and named.is_file():
        files.add(named)
    return files


def remove_files(files: set[Path]) -> tuple[int, int]:
    """Delete ``files``; returns (how many were there, their bytes). One already gone is skipped."""
    count = size_bytes = 0
    for file in files:
        try:
            size = file.stat().st_size
            file.unlink()
        except FileNotFoundError:
            continue
        count += 1
        size_bytes += size
    return count, size_bytes


def prune(
    data_dir: Path,
    older_than_days: float,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    stop: threading.Event | None = None,
    idempotency_ttl_s: float | None = None,
) -> PruneResult:
    """Delete calls that ended more than ``older_than_days`` ago, with every row that names them (events,
    webhook deliveries, recordings, ...) and their recording files. Live calls, and calls with webhook
    deliveries still pending, are never touched. With ``idempotency_ttl_s``, Idempotency-Keys older than
    that go too (they name no call: they go by age). Deletes in small transactions with a pause between;
    ``stop`` ends it between two of them."""
    if not older_than_days >= 0:
        raise MaintenanceError(f"older_than_days must be 0 or more, got {older_than_days}")
    data_dir = Path(data_dir)
    db = _database(data_dir)
    cutoff = iso_days_ago(older_than_days, now)
    result = PruneResult(str(data_dir), older_than_days, cutoff, dry_run)
    live = ",".join("?" * len(LIVE_STATUSES))
    old_calls = (  # a call whose webhooks are still being retried stays until they are delivered or given up
        f"SELECT id FROM calls WHERE status NOT IN ({live}) AND COALESCE(ended_at, updated_at) < ?"
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.call_id = calls.id AND d.status = 'pending')"
    )
    old_params = (*LIVE_STATUSES, cutoff)
    connection = _connect(db)
    try:
        by_call = _tables_with(connection, "call_id", skip={"calls", "recordings"})
        by_recording = _tables_with(connection, "recording_id", skip={"recordings", *by_call})
        has_keys = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'idempotency_keys'").fetchone()
        if idempotency_ttl_s is not None and has_keys:  # a folder made before the table has none to prune
            _prune_idempotency_keys(connection, idempotency_ttl_s, now, result, dry_run)
        if dry_run:
            ids = [row[0] for row in connection.execute(old_calls, old_params)]
            _count_or_delete(connection, data_dir, ids, by_call, by_recording, result, delete=False)
            return result
        batch = PRUNE_BATCH_CALLS
        while stop is None or not stop.is_set():
            started = time.monotonic()
            connection.execute("BEGIN IMMEDIATE")
            try:
                ids = [row[0] for row in connection.execute(old_calls + f" ORDER BY created_at LIMIT {batch}", old_params)]
                files = _count_or_delete(connection, data_dir, ids, by_call, by_recording, result, delete=True)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            took_s = time.monotonic() - started
            removed, size_bytes = remove_files(files)  # after the commit: a row never points at a file already gone
            result.recording_files += removed
            result.bytes_freed += size_bytes
            if len(ids) < batch:
                break
            if took_s > PRUNE_TRANSACTION_S:  # calls with many rows: fewer per transaction
                batch = max(1, batch // 2)
            if stop is not None:
                stop.wait(PRUNE_PAUSE_S)
            else:
                time.sleep(PRUNE_PAUSE_S)
    finally:
        connection.close()
    return result


def _prune_idempotency_keys(connection: sqlite3.Connection, ttl_s: float, now: datetime | None, result: PruneResult, dry_run: bool) -> None:
    now_s = now.timestamp() if now is not None else time.time()
    if dry_run:
        count = int(connection.execute("SELECT COUNT(*) FROM idempotency_keys WHERE created_at < ?", (now_s - ttl_s,)).fetchone()[0])
    else:
        count = delete_expired_idempotency_keys(connection, now_s, ttl_s)  # one indexed DELETE, its own short transaction
    if count:
        result.rows["idempotency_keys"] = result.rows.get("idempotency_keys", 0) + count


def _count_or_delete(
    connection: sqlite3.Connection,
    data_dir: Path,
    ids: list[str],
    by_call: list[str],
    by_recording: list[str],
    result: PruneResult,
    delete: bool,
) -> set[Path]:
    """Count (and with ``delete``, delete) the rows of calls ``ids``; returns the recording files to remove
    (a dry run counts them into ``result`` itself)."""
    files: set[Path] = set()
    if not ids:
        return files

    def apply(table: str, where: str, params: list[str]) -> None:
        verb = "DELETE" if delete else "SELECT COUNT(*)"
        cursor = connection.execute(f'{verb} FROM "{table}" WHERE {where}', params)
        count = cursor.rowcount if delete else int(cursor.fetchone()[0])
        result.rows[table] = result.rows.get(table, 0) + max(count, 0)

    for chunk in _chunks(ids, 500):  # SQLite's limit on bound parameters
        marks = ",".join("?" * len(chunk))
        recordings = connection.execute(f"SELECT id, path FROM recordings WHERE call_id IN ({marks})", chunk).fetchall()
        for recording_id, stored_path in recordings:
            files |= recording_files(data_dir, recording_id, stored_path)
        recording_ids = [r[0] for r in recordings]
        for table in by_recording:
            for rchunk in _chunks(recording_ids, 500):
                apply(table, f"recording_id IN ({','.join('?' * len(rchunk))})", rchunk)
        for table in by_call:
            apply(table, f"call_id IN ({marks})", chunk)
        apply("recordings", f"call_id IN ({marks})", chunk)
        apply("calls", f"id IN ({marks})", chunk)
    result.calls += len(ids)
    if not delete:
        for file in files:
            result.recording_files += 1
            result.bytes_freed += file.stat().st_size
    return files


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Housekeeping:
    """What a server does for its data folder while it runs, at start and then every ``interval_s``, on its
    own thread (never the event loop): forget Idempotency-Keys past their TTL and, when ``retain_days`` is
    set, prune the calls that ended longer ago. The folder's lock is the server's (taken before uvicorn
    starts), not this object's."""

    def __init__(self, data_dir: Path, store: Store, retain_days: float | None, interval_s: float = 3600.0,
                 idempotency_ttl_s: float = 24 * 3600.0) -> None:
        self.data_dir = Path(data_dir)
        self.store = store
        self.retain_days = retain_days
        self.interval_s = interval_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.last_result: PruneResult | None = None
        self._stop = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, data_dir: Path, store: Store, retain_days: float | None, interval_s: float = 3600.0,
                    idempotency_ttl_s: float = 24 * 3600.0) -> Housekeeping:
        housekeeping = cls(data_dir, store, retain_days, interval_s, idempotency_ttl_s)
        housekeeping._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivrsim-housekeeping")
        housekeeping._task = asyncio.create_task(housekeeping._loop(), name="ivrsim-housekeeping")
        return housekeeping

    def run_once(self) -> PruneResult | None:
        """One pass (blocking: run it off the event loop); the prune result when retention is on."""
        connection = _connect(_database(self.data_dir))  # its own connection: the server's lock stays free
        try:
            keys = delete_expired_idempotency_keys(connection, time.time(), self.idempotency_ttl_s)
        finally:
            connection.close()
        if keys:
            logger.info("housekeeping: forgot %d Idempotency-Key(s) older than %g s", keys, self.idempotency_ttl_s)
        if self.retain_days is None:
            return None
        result = prune(self.data_dir, self.retain_days, stop=self._stop)
        if result.calls:
            logger.info("retention: pruned %d call(s) ended before %s, %d recording file(s), %d bytes",
                        result.calls, result.cutoff, result.recording_files, result.bytes_freed)
        return result

    async def _loop(self) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.last_result = await loop.run_in_executor(self._executor, self.run_once)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed pass is retried at the next interval, never fatal to the server
                logger.exception("housekeeping of %s failed; trying again in %g s", self.data_dir, self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        """Stop (a prune in progress ends after its current transaction) and wait for the thread."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)


# -- snapshots ----------------------------------------------------------------------------------------------


@dataclass
class SnapshotManifest:
    """``manifest.json`` of a snapshot: what it holds, and counts to check it by."""

    format: str
    version: int
    ivrsim_version: str
    created_at: str
    source: str
    counts: dict[str, int]
    files: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(connection: sqlite3.Connection) -> dict[str, int]:
    names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {n: int(connection.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]) for n in names}


def _data_files(data_dir: Path) -> list[tuple[Path, str]]:
    """(path, name in the archive) of every file but the database and the lock: recordings, caches."""
    found = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(data_dir).as_posix()
            if relative in _NOT_COPIED or ".partial-" in name or not path.is_file() or path.is_symlink():
                continue
            found.append((path, relative))
    return found


def save_snapshot(data_dir: Path, file: Path, progress: Progress | None = None) -> SnapshotManifest:
    """Write ``file`` (tar.gz): ``manifest.json`` and the data folder under ``data/``. The database is one
    consistent state (online backup), even while a server writes to it; ``file`` appears only when complete."""
    data_dir, file = Path(data_dir), Path(file)
    db = _database(data_dir)
    if file.resolve().is_relative_to(data_dir.resolve()):
        raise MaintenanceError(f"snapshot file {file} is inside the data folder {data_dir}; write it elsewhere")
    if not file.parent.is_dir():  # else the error would name the hidden .partial file
        raise MaintenanceError(f"cannot write snapshot {file}: the folder {file.parent} does not exist; create it or choose another path")
    partial = file.with_name(f"{file.name}.partial-{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="ivrsim-snapshot-") as staging:
        copy = Path(staging) / DATABASE_NAME
        source = _connect(db)
        target = sqlite3.connect(copy)
        try:
            pages = max(1, int(source.execute("PRAGMA page_count").fetchone()[0]))
            if progress:
                progress("database", 0, pages)
            # One step (pages=-1): a stepped backup starts over whenever the server writes between two
            # steps, so on a busy server it might never end. One step is one read transaction; in WAL mode
            # the server keeps writing meanwhile.
            source.backup(target, pages=-1)
            if progress:
                progress("database", pages, pages)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            counts = _counts(target)
        finally:
            target.close()
            source.close()
        files = _data_files(data_dir)
        total_bytes = copy.stat().st_size + sum(_size(p) for p, _ in files)
        done = 0
        included = 0
        try:
            with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
                tar.add(copy, arcname=f"data/{DATABASE_NAME}")
                done += copy.stat().st_size
                for path, name in files:
                    try:  # a cache file may be evicted while we copy: skip it, it is only a cache
                        with open(path, "rb") as handle:
                            info = tar.gettarinfo(fileobj=handle, arcname=f"data/{name}")
                            tar.addfile(info, handle)
                    except FileNotFoundError:
                        continue
                    included += 1
                    done += info.size
                    if progress:
                        progress("files", done, total_bytes)
                manifest = SnapshotManifest(SNAPSHOT_FORMAT, SNAPSHOT_VERSION, __version__, utc_now(), str(data_dir.resolve()),
                                            counts, included + 1, done)
                body = json.dumps(manifest.as_dict(), indent=2).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size, info.mtime = len(body), int(time.time())
                tar.addfile(info, io.BytesIO(body))
            os.replace(partial, file)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_manifest(file: Path) -> SnapshotManifest:
    """The manifest of snapshot ``file``; MaintenanceError when it is not a snapshot this version reads."""
    try:
        with tarfile.open(file, "r:gz") as tar:
            member = tar.getmember("manifest.json")
            handle = tar.extractfile(member)
            document = json.loads(handle.read() if handle else b"")
    except FileNotFoundError:
        raise MaintenanceError(f"snapshot {file}: no such file") from None
    except KeyError:
        raise MaintenanceError(f"snapshot {file}: no manifest.json inside; make snapshots with `ivrsim snapshot save`") from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        raise MaintenanceError(f"snapshot {file}: not a readable ivrsim snapshot (tar.gz): {error}") from None
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise MaintenanceError(f"snapshot {file}: manifest.json is not an ivrsim snapshot manifest")
    if not isinstance(document.get("version"), int) or document["version"] > SNAPSHOT_VERSION:
        raise MaintenanceError(f"snapshot {file}: layout version {document.get('version')!r} is newer than this ivrsim reads "
                               f"({SNAPSHOT_VERSION}); upgrade ivrsim (this is {__version__})")
    try:
        return SnapshotManifest(**{k: document[k] for k in SnapshotManifest.__dataclass_fields__})
    except KeyError as error:
        raise MaintenanceError(f"snapshot {file}: manifest.json lacks {error.args[0]!r}") from None


def _occupied(data_dir: Path) -> list[str]:
    if not data_dir.exists():
        return []
    return sorted(p.name for p in data_dir.iterdir() if p.name != LOCK_NAME)


def load_snapshot(file: Path, data_dir: Path, force: bool = False, progress: Progress | None = None) -> SnapshotManifest:
    """Replace ``data_dir``'s contents with snapshot ``file``. Refuses (DataDirInUse) while a server holds
    the folder and (DataDirNotEmpty) when it has data, unless ``force``. Nothing is changed until the
    snapshot is extracted and its database checked."""
    file, data_dir = Path(file), Path(data_dir)
    manifest = read_manifest(file)
    holder = lock_holder(data_dir)
    if holder is not None:
        raise DataDirInUse(data_dir, holder)
    occupied = _occupied(data_dir)
    if occupied and not force:
        raise DataDirNotEmpty(f"data folder {data_dir} is not empty ({', '.join(occupied[:3])}{', ...' if len(occupied) > 3 else ''}); "
                              "pass --force to replace its contents, or load into an empty folder")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.loading-", dir=data_dir.resolve().parent))
    try:
        _extract(file, staging, manifest, progress)
        extracted = staging / "data"
        _check_database(file, extracted / DATABASE_NAME, data_dir)
        with DataDirLock(data_dir):  # a server starting now waits out the swap by failing, not by racing it
            retired = staging / "retired"
            retired.mkdir()
            for entry in data_dir.iterdir():
                if entry.name != LOCK_NAME:
                    entry.rename(retired / entry.name)
            for entry in extracted.iterdir():
                entry.rename(data_dir / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _extract(file: Path, staging: Path, manifest: SnapshotManifest, progress: Progress | None) -> None:
    done = 0
    try:
        with tarfile.open(file, "r:gz") as tar:
            for member in tar:
                if member.name == "manifest.json":
                    continue
                parts = PurePosixPath(member.name).parts
                if not parts or parts[0] != "data" or ".." in parts or member.name.startswith("/") or not (member.isfile() or member.isdir()):
                    raise MaintenanceError(f"snapshot {file}: unexpected entry {member.name!r}; refusing to load it")
                tar.extract(member, staging, filter="data")
                done += member.size
                if progress:
                    progress("files", done, manifest.bytes)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise MaintenanceError(f"snapshot {file}: cannot be extracted ({error})") from None


def _check_database(file: Path, db: Path, data_dir: Path) -> None:
    """The extracted database passes a quick check; recording paths are pointed at their new folder."""
    if not db.is_file():
        raise MaintenanceError(f"snapshot {file}: holds no {DATABASE_NAME}")
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        if connection.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise MaintenanceError(f"snapshot {file}: its database fails SQLite's quick_check; the snapshot is damaged")
        folder = (data_dir / "recordings").resolve()
        rows = connection.execute("SELECT id, path FROM recordings").fetchall()
        connection.executemany(
            "UPDATE recordings SET path = ? WHERE id = ?",
            [(str(folder / PurePosixPath(path.replace("\\", "/")).name), rid) for rid, path in rows],
        )
    except sqlite3.DatabaseError as error:
        raise MaintenanceError(f"snapshot {file}: its database cannot be read ({error})") from None
    finally:
        connection.close()

