"""SQLite persistence in WAL mode: calls, their events, recordings, and pending work.

Every write commits before it returns, so whatever the API acknowledged survives a crash. On start,
``recover()`` ends the calls that were live when the process stopped as ``failed`` with a reason, and
leaves their events and recordings in place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivrsim.engine.events import CallEvent, utc_now

#: Statuses of a call that has not ended.
LIVE_STATUSES = ("queued", "ringing", "in-progress")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    to_number TEXT NOT NULL,
    from_number TEXT NOT NULL,
    status TEXT NOT NULL,
    direction TEXT NOT NULL DEFAULT 'outbound',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    answered_at TEXT,
    ended_at TEXT,
    duration_s REAL,
    reason TEXT,
    request_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_status ON calls (status, created_at);
CREATE TABLE IF NOT EXISTS events (
    call_id TEXT NOT NULL REFERENCES calls (id),
    sequence INTEGER NOT NULL,
    type TEXT NOT NULL,
    call_time_s REAL NOT NULL,
    timestamp TEXT NOT NULL,
    data_json TEXT NOT NULL,
    PRIMARY KEY (call_id, sequence)
);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls (id),
    path TEXT NOT NULL,
    channels TEXT NOT NULL,
    duration_s REAL,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts_json TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_by_call ON webhook_deliveries (call_id, id);
-- Queued background work (analysis jobs arrive with the Canonical API); kept across restarts.
CREATE TABLE IF NOT EXISTS pending_work (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    done_at TEXT
);
"""


@dataclass(frozen=True)
class CallRecord:
    """A call as stored. Times are ISO 8601 UTC; ``duration_s`` is the in-progress time in seconds."""

    id: str
    to: str
    from_: str
    status: str
    direction: str
    created_at: str
    updated_at: str
    answered_at: str | None
    ended_at: str | None
    duration_s: float | None
    reason: str | None
    request: dict[str, Any]


@dataclass(frozen=True)
class RecordingRecord:
    id: str
    call_id: str
    path: str
    channels: str
    duration_s: float | None
    created_at: str
    completed_at: str | None


class Store:
    """One SQLite database (``:memory:`` for none on disk); safe to use from several threads."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- calls ----------------------------------------------------------------------------------------

    def insert_call(self, call_id: str, to: str, from_: str, request: dict[str, Any]) -> CallRecord:
        now = utc_now()
        with self._lock:
            self._db.execute(
                "INSERT INTO calls (id, to_number, from_number, status, created_at, updated_at, request_json)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (call_id, to, from_, now, now, json.dumps(request)),
            )
        record = self.get_call(call_id)
        assert record is not None
        return record

    def update_call(self, call_id: str, **fields: Any) -> None:
        """Set columns (status, answered_at, ended_at, duration_s, reason) and ``updated_at``."""
        allowed = {"status", "answered_at", "ended_at", "duration_s", "reason"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        fields["updated_at"] = utc_now()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE calls SET {assignments} WHERE id = ?", (*fields.values(), call_id))

    def get_call(self, call_id: str) -> CallRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        return _call(row) if row else None

    def list_calls(self, status: str | None = None, limit: int = 50, before: str | None = None) -> list[CallRecord]:
        """Newest first; ``before`` is a call id to page from (exclusive)."""
        query = "SELECT * FROM calls"
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if before is not None:
            clauses.append("(created_at, id) < (SELECT created_at, id FROM calls WHERE id = ?)")
            params.append(before)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [_call(row) for row in rows]

    # -- events ---------------------------------------------------------------------------------------

    def insert_event(self, event: CallEvent) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (call_id, sequence, type, call_time_s, timestamp, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                (event.call_id, event.sequence, event.type, event.call_time_s, event.timestamp, json.dumps(event.data)),
            )

    def events(self, call_id: str) -> list[CallEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id, sequence, type, call_time_s, timestamp, data_json FROM events WHERE call_id = ? ORDER BY sequence",
                (call_id,),
            ).fetchall()
        return [CallEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def next_sequence(self, call_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(sequence), 0) FROM events WHERE call_id = ?", (call_id,)).fetchone()
        return int(row[0]) + 1

    # -- recordings -----------------------------------------------------------------------------------

    def insert_recording(self, recording_id: str, call_id: str, path: str, channels: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO recordings (id, call_id, path, channels, created_at) VALUES (?, ?, ?, ?, ?)",
                (recording_id, call_id, path, channels, utc_now()),
            )

    def complete_recording(self, recording_id: str, duration_s: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE recordings SET duration_s = ?, completed_at = ? WHERE id = ?", (duration_s, utc_now(), recording_id)
            )

    def recording(self, recording_id: str) -> RecordingRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, call_id, path, channels, duration_s, created_at, completed_at FROM recordings WHERE id = ?", (recording_id,)
            ).fetchone()
        return RecordingRecord(*row) if row else None

    def reset(self) -> None:
        """Forget every call, event, recording row and delivery (the /_sim reset)."""
        with self._lock:
            for table in ("webhook_deliveries", "events", "recordings", "pending_work", "calls"):
                self._db.execute(f"DELETE FROM {table}")

    def recent_events(self, limit: int = 100) -> list[CallEvent]:
        """The newest events of all calls, oldest first (the /_sim event journal)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id, sequence, type, call_time_s, timestamp, data_json FROM events ORDER BY rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        return [CallEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in reversed(rows)]

    def recording_for_call(self, call_id: str) -> RecordingRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, call_id, path, channels, duration_s, created_at, completed_at FROM recordings WHERE call_id = ?"
                " ORDER BY created_at DESC LIMIT 1",
                (call_id,),
            ).fetchone()
        return RecordingRecord(*row) if row else None

    # -- webhook deliveries ---------------------------------------------------------------------------

    def insert_delivery(self, call_id: str, sequence: int, event_type: str, url: str, payload: dict[str, Any]) -> int:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO webhook_deliveries (call_id, sequence, event_type, url, payload_json, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (call_id, sequence, event_type, url, json.dumps(payload), utc_now()),
            )
        return int(cursor.lastrowid or 0)

    def record_attempts(self, delivery_id: int, attempts: list[dict[str, Any]], status: str | None = None) -> None:
        """Store a delivery's attempt log; ``status`` 'delivered' or 'failed' closes it."""
        with self._lock:
            if status is None:
                self._db.execute("UPDATE webhook_deliveries SET attempts_json = ? WHERE id = ?", (json.dumps(attempts), delivery_id))
            else:
                self._db.execute(
                    "UPDATE webhook_deliveries SET attempts_json = ?, status = ?, finished_at = ? WHERE id = ?",
                    (json.dumps(attempts), status, utc_now(), delivery_id),
                )

    def deliveries(self, call_id: str | None = None, pending_only: bool = False) -> list[dict[str, Any]]:
        query = "SELECT id, call_id, sequence, event_type, url, payload_json, status, attempts_json, created_at, finished_at FROM webhook_deliveries"
        clauses: list[str] = []
        params: list[Any] = []
        if call_id is not None:
            clauses.append("call_id = ?")
            params.append(call_id)
        if pending_only:
            clauses.append("status = 'pending'")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        keys = ("id", "call_id", "sequence", "event_type", "url", "payload", "status", "attempts", "created_at", "finished_at")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item["payload"] = json.loads(item["payload"])
            item["attempts"] = json.loads(item["attempts"])
            out.append(item)
        return out

    # -- recovery -------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """End calls that were live when the process stopped: ``failed``, with a reason and an event.
        Returns their ids."""
        reason = "ivrsim stopped while the call was live; it was ended when ivrsim started again"
        with self._lock:
            rows = self._db.execute(
                f"SELECT id FROM calls WHERE status IN ({','.join('?' * len(LIVE_STATUSES))})", LIVE_STATUSES
            ).fetchall()
        ended = [row[0] for row in rows]
        for call_id in ended:
            now = utc_now()
            self.update_call(call_id, status="failed", reason=reason, ended_at=now)
            last = self.events(call_id)
            call_time = last[-1].call_time_s if last else 0.0
            self.insert_event(
                CallEvent(call_id, self.next_sequence(call_id), "call.failed", call_time, now, {"status": "failed", "reason": reason})
            )
        return ended


def _call(row: tuple[Any, ...]) -> CallRecord:
    return CallRecord(
        id=row[0],
        to=row[1],
        from_=row[2],
        status=row[3],
        direction=row[4],
        created_at=row[5],
        updated_at=row[6],
        answered_at=row[7],
        ended_at=row[8],
        duration_s=row[9],
        reason=row[10],
        request=json.loads(row[11]),
    )
