"""SQLite persistence in WAL mode: calls, their events, recordings, and pending work.

Every write commits before it returns, so whatever the API acknowledged survives a crash. On start, the
engine's ``recover()`` ends the calls that were live when the process stopped (``live_calls``), finalises
their recordings and sends their last events; webhook deliveries left ``pending`` resume at their stored
``next_attempt_at``.
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
#: How long any connection to a data folder's database waits for another's write lock before SQLite says
#: "database is locked", in seconds. Prune's write transactions are kept far shorter than this.
BUSY_TIMEOUT_S = 10.0

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
    request_json TEXT NOT NULL,
    callee TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_status ON calls (status, created_at);
-- The call list pages newest first by (created_at, id): this keeps a page an index walk however many calls there are.
CREATE INDEX IF NOT EXISTS calls_by_created ON calls (created_at, id);
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
    finished_at TEXT,
    next_attempt_at TEXT,
    round_start INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deliveries_by_call ON webhook_deliveries (call_id, id);
-- Background jobs (analyses of recordings): stored before they are acknowledged, so that a restart
-- finishes them; status queued -> processing -> completed | failed.
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    input_json TEXT NOT NULL,
    result_json TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at);
-- A recording's transcript is the transcription job whose input names it.
CREATE INDEX IF NOT EXISTS jobs_by_recording ON jobs (json_extract(input_json, '$.recording_id')) WHERE kind = 'transcription';
DROP TABLE IF EXISTS pending_work;
"""

# Idempotency-Key: the first response to (scope, key), kept for a TTL; status_code is NULL while the first
# request is still being handled. created_at is Unix time in seconds, so expiry is one indexed comparison.
_IDEMPOTENCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status_code INTEGER,
    response_json TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency_keys (created_at);
"""

# The Canonical API (/api/v1): one row per callId, whose analysis is the job ``job_id`` (NULL only between
# the row and its job, or when a crash fell in between: recovery submits ``job_input_json``). ``seq`` orders the calls (newest
# first, pages by ``starting_after``). ``counted_at`` is set once, when the call's end has been added to its
# assistant's aggregates, so that a job that runs again after a restart is never counted twice.
# canonical_assistants holds those aggregates incrementally (bounded work per read, however many calls):
# counts, sums, and a histogram of every latency value (whole ms -> count; ms is what the analysis reports).
_CANONICAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS canonical_calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE,
    assistant_id TEXT NOT NULL,
    assistant_json TEXT NOT NULL,
    source TEXT NOT NULL,
    job_id TEXT,
    webhook_url TEXT,
    job_input_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    counted_at TEXT
);
CREATE INDEX IF NOT EXISTS canonical_by_assistant ON canonical_calls (assistant_id, seq);
CREATE INDEX IF NOT EXISTS canonical_by_job ON canonical_calls (job_id);
CREATE TABLE IF NOT EXISTS canonical_assistants (
    assistant_id TEXT PRIMARY KEY,
    assistant_json TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    analysed_s REAL NOT NULL DEFAULT 0,
    user_interrupted INTEGER NOT NULL DEFAULT 0,
    assistant_interrupted INTEGER NOT NULL DEFAULT 0,
    dead_air_count INTEGER NOT NULL DEFAULT 0,
    dead_air_total_s REAL NOT NULL DEFAULT 0,
    latency_histogram_json TEXT NOT NULL DEFAULT '{}',
    first_call_at TEXT NOT NULL,
    last_call_at TEXT NOT NULL
);
"""

# IVR flows (ivrsim/flows), stored validated: ``document_json`` is the flow as JSON, ``source`` the YAML it
# came from (NULL for a JSON body). ``seq`` orders them (newest first, pages by ``starting_after``).
_FLOWS_SCHEMA = """
CREATE TABLE IF NOT EXISTS flows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    document_json TEXT NOT NULL,
    source TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FlowRecord:
    """A stored IVR flow: its validated document and, when it was sent as YAML, that text."""

    id: str
    name: str
    document: dict[str, Any]
    source: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class IdempotencyRecord:
    """What an earlier request with the same key left: its body's fingerprint and, once done, its response."""

    fingerprint: str
    status_code: int | None
    response: dict[str, Any] | None


#: Columns added to webhook_deliveries after its first release, with their declarations.
_ADDED_DELIVERY_COLUMNS = {"next_attempt_at": "TEXT", "round_start": "INTEGER NOT NULL DEFAULT 0"}
_DELIVERY_COLUMNS = (
    "id", "call_id", "sequence", "event_type", "url", "payload", "status", "attempts", "created_at", "finished_at", "next_attempt_at", "round_start",
)
_DELIVERY_SELECT = (
    "SELECT id, call_id, sequence, event_type, url, payload_json, status, attempts_json, created_at, finished_at, next_attempt_at,"
    " round_start FROM webhook_deliveries"
)


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
    #: Who answered: the label ``call.ringing`` carried (the phonebook entry's name), kept when that event is stored.
    callee: str | None = None


#: Statuses of a job that has not ended.
UNFINISHED_JOB_STATUSES = ("queued", "processing")


@dataclass(frozen=True)
class JobRecord:
    """A background job as stored: its kind, input and, once done, its result or error."""

    id: str
    kind: str
    status: str
    input: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    worker: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "input": self.input, "result": self.result, "error": self.error,
                "attempts": self.attempts, "worker": self.worker, "created_at": self.created_at, "started_at": self.started_at,
                "completed_at": self.completed_at}


def _equal_to(filters: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """WHERE clauses ``column = ?`` and their parameters, for the filters that are set (not None)."""
    set_filters = {column: value for column, value in filters.items() if value is not None}
    return [f"{column} = ?" for column in set_filters], list(set_filters.values())


_JOB_SELECT = "SELECT id, kind, status, input_json, result_json, error, attempts, worker, created_at, started_at, completed_at FROM jobs"


def _job(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]) if row[4] else None, *row[5:])


@dataclass(frozen=True)
class CanonicalCallRecord:
    """A call of the Canonical API as stored, with its analysis job's status, result or error (the job
    holds them; ``status`` is queued until the job exists)."""

    call_id: str
    assistant_id: str
    assistant: dict[str, Any]
    source: str
    job_id: str | None
    webhook_url: str | None
    created_at: str
    counted_at: str | None
    status: str
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    started_at: str | None
    completed_at: str | None


@dataclass(frozen=True)
class CanonicalOutcome:
    """What one ended call adds to its assistant's aggregates."""

    completed: bool
    duration_s: float = 0.0
    latency_ms: tuple[int, ...] = ()
    user_interrupted: int = 0
    assistant_interrupted: int = 0
    dead_air_count: int = 0
    dead_air_total_s: float = 0.0


_CANONICAL_SELECT = (
    "SELECT c.call_id, c.assistant_id, c.assistant_json, c.source, c.job_id, c.webhook_url, c.created_at, c.counted_at,"
    " COALESCE(j.status, 'queued'), j.result_json, j.error, COALESCE(j.attempts, 0), j.started_at, j.completed_at"
    " FROM canonical_calls c LEFT JOIN jobs j ON j.id = c.job_id"
)


def _canonical(row: tuple[Any, ...]) -> CanonicalCallRecord:
    return CanonicalCallRecord(
        call_id=row[0], assistant_id=row[1], assistant=json.loads(row[2]), source=row[3], job_id=row[4], webhook_url=row[5], created_at=row[6],
        counted_at=row[7], status=row[8], result=json.loads(row[9]) if row[9] else None, error=row[10], attempts=row[11], started_at=row[12],
        completed_at=row[13],
    )


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
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")  # stated, not left to the driver
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.executescript(_IDEMPOTENCY_SCHEMA)
            self._db.executescript(_CANONICAL_SCHEMA)
            self._db.executescript(_FLOWS_SCHEMA)
            # A claim without a response belonged to a process that stopped mid-request: let the key be retried.
            self._db.execute("DELETE FROM idempotency_keys WHERE status_code IS NULL")
            if "callee" not in {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}:  # data folders made before it
                self._db.execute("ALTER TABLE calls ADD COLUMN callee TEXT")
                self._db.execute("UPDATE calls SET callee = (SELECT json_extract(e.data_json, '$.callee') FROM events e"
                                 " WHERE e.call_id = calls.id AND e.type = 'call.ringing' ORDER BY e.sequence LIMIT 1)")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(webhook_deliveries)")}
            for column, declaration in _ADDED_DELIVERY_COLUMNS.items():  # data folders made before these columns
                if column not in columns:
                    self._db.execute(f"ALTER TABLE webhook_deliveries ADD COLUMN {column} {declaration}")

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

    def list_calls(self, status: str | None = None, limit: int = 50, before: str | None = None, number: str | None = None,
                   after: str | None = None) -> list[CallRecord]:
        """Newest first; ``before`` is a call id to page from (exclusive); ``number``: only calls whose
        to or from contains it (the dashboard's filter). ``after``: the ``limit`` calls just newer than that
        call id (keyset paging backwards), still newest first."""
        query = "SELECT * FROM calls"
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if number:
            pattern = "%" + number.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(to_number LIKE ? ESCAPE '\\' OR from_number LIKE ? ESCAPE '\\')")
            params.extend((pattern, pattern))
        if before is not None:
            clauses.append("(created_at, id) < (SELECT created_at, id FROM calls WHERE id = ?)")
            params.append(before)
        if after is not None:
            clauses.append("(created_at, id) > (SELECT created_at, id FROM calls WHERE id = ?)")
            params.append(after)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += f" ORDER BY created_at {'ASC' if after is not None else 'DESC'}, id {'ASC' if after is not None else 'DESC'} LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        records = [_call(row) for row in rows]
        return records[::-1] if after is not None else records

    # -- events ---------------------------------------------------------------------------------------

    def insert_event(self, event: CallEvent) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (call_id, sequence, type, call_time_s, timestamp, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                (event.call_id, event.sequence, event.type, event.call_time_s, event.timestamp, json.dumps(event.data)),
            )
            callee = event.data.get("callee") if event.type == "call.ringing" else None
            if isinstance(callee, str) and callee:  # the call list shows who answered without reading events per row
                self._db.execute("UPDATE calls SET callee = ? WHERE id = ?", (callee, event.call_id))

    def events(self, call_id: str) -> list[CallEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id, sequence, type, call_time_s, timestamp, data_json FROM events WHERE call_id = ? ORDER BY sequence",
                (call_id,),
            ).fetchall()
        return [CallEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

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

    def reset(self) -> list[tuple[str, str]]:
        """Forget every call, event, recording row and delivery (the /_sim reset), in one transaction;
        returns (id, stored path) of the recordings forgotten, for the caller to delete their files."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                recordings = [(row[0], row[1]) for row in self._db.execute("SELECT id, path FROM recordings")]
                for table in ("webhook_deliveries", "events", "recordings", "jobs", "idempotency_keys", "calls", "canonical_calls",
                              "canonical_assistants"):
                    self._db.execute(f"DELETE FROM {table}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return recordings

    def live_calls(self) -> list[CallRecord]:
        """Calls that have not ended (after a crash: those that were live when the process stopped)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM calls WHERE status IN ({','.join('?' * len(LIVE_STATUSES))}) ORDER BY created_at, id", LIVE_STATUSES
            ).fetchall()
        return [_call(row) for row in rows]

    def recent_events(self, limit: int = 100) -> list[CallEvent]:
        """The newest events of all calls, oldest first (the /_sim event journal)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id, sequence, type, call_time_s, timestamp, data_json FROM events ORDER BY rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        return [CallEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in reversed(rows)]

    def transcription_job(self, recording_id: str) -> JobRecord | None:
        """The newest transcription job of a recording, or None."""
        with self._lock:
            row = self._db.execute(
                f"{_JOB_SELECT} WHERE kind = 'transcription' AND json_extract(input_json, '$.recording_id') = ? ORDER BY created_at DESC LIMIT 1",
                (recording_id,),
            ).fetchone()
        return _job(row) if row else None

    def calls_missing_transcripts(self) -> list[str]:
        """Ended calls placed with ``transcribe: true`` whose finished recording has no transcription job."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.id FROM calls c JOIN recordings r ON r.call_id = c.id"
                # the call's own recording (the first: opened on answer), not a message a <Record> took later
                " AND r.rowid = (SELECT MIN(rowid) FROM recordings WHERE call_id = c.id)"
                " WHERE json_extract(c.request_json, '$.transcribe') = 1 AND r.completed_at IS NOT NULL"
                " AND c.status NOT IN ('queued', 'ringing', 'in-progress')"
                " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'transcription'"
                " AND json_extract(j.input_json, '$.recording_id') = r.id)"
            ).fetchall()
        return [row[0] for row in rows]

    def recording_for_call(self, call_id: str) -> RecordingRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, call_id, path, channels, duration_s, created_at, completed_at FROM recordings WHERE call_id = ?"
                " ORDER BY created_at, rowid LIMIT 1",  # the call's own (opened on answer); a <Record>'s comes later
                (call_id,),
            ).fetchone()
        return RecordingRecord(*row) if row else None

    # -- jobs -----------------------------------------------------------------------------------------

    def insert_job(self, job_id: str, kind: str, job_input: dict[str, Any]) -> JobRecord:
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, kind, status, input_json, created_at) VALUES (?, ?, 'queued', ?, ?)",
                             (job_id, kind, json.dumps(job_input), utc_now()))
        job = self.job(job_id)
        assert job is not None
        return job

    def job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def start_job(self, job_id: str, worker: str) -> JobRecord | None:
        """Mark a queued job ``processing`` by ``worker`` (one more attempt); None when it is not queued
        (already taken, ended, or unknown): a job runs once at a time."""
        with self._lock:
            changed = self._db.execute(
                "UPDATE jobs SET status = 'processing', attempts = attempts + 1, worker = ?, started_at = ? WHERE id = ? AND status = 'queued'",
                (worker, utc_now(), job_id),
            ).rowcount
        return self.job(job_id) if changed else None

    def finish_job(self, job_id: str, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        """``completed`` with ``result``, or ``failed`` with ``error``."""
        status = "failed" if error is not None else "completed"
        with self._lock:
            self._db.execute("UPDATE jobs SET status = ?, result_json = ?, error = ?, completed_at = ? WHERE id = ?",
                             (status, json.dumps(result) if result is not None else None, error, utc_now(), job_id))

    def requeue_job(self, job_id: str) -> None:
        """Back to ``queued`` (its worker stopped, or the server restarted while it ran)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET status = 'queued', worker = NULL WHERE id = ? AND status = 'processing'", (job_id,))

    def unfinished_jobs(self) -> list[JobRecord]:
        with self._lock:
            rows = self._db.execute(
                f"{_JOB_SELECT} WHERE status IN ({','.join('?' * len(UNFINISHED_JOB_STATUSES))}) ORDER BY created_at, id", UNFINISHED_JOB_STATUSES
            ).fetchall()
        return [_job(row) for row in rows]

    def list_jobs(self, kind: str | None = None, status: str | None = None, limit: int = 50, before: str | None = None) -> list[JobRecord]:
        """Newest first; ``before``: a job id, for the next page."""
        clauses, params = _equal_to({"kind": kind, "status": status})
        if before is not None:
            clauses.append("(created_at, id) < (SELECT created_at, id FROM jobs WHERE id = ?)")
            params.append(before)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(f"{_JOB_SELECT}{where} ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit)).fetchall()
        return [_job(row) for row in rows]

    # -- IVR flows ------------------------------------------------------------------------------------

    def insert_flow(self, flow_id: str, name: str, document: dict[str, Any], source: str | None) -> FlowRecord:
        now = utc_now()
        with self._lock:
            self._db.execute("INSERT INTO flows (id, name, document_json, source, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                             (flow_id, name, json.dumps(document), source, now, now))
        record = self.flow(flow_id)
        assert record is not None
        return record

    def flow(self, flow_id: str) -> FlowRecord | None:
        with self._lock:
            row = self._db.execute(f"{_FLOW_SELECT} WHERE id = ?", (flow_id,)).fetchone()
        return _flow(row) if row else None

    def list_flows(self, limit: int = 50, before: str | None = None) -> list[FlowRecord]:
        """Newest first; ``before``: a flow id, for the next page."""
        where, params = "", []
        if before is not None:
            where, params = " WHERE seq < (SELECT seq FROM flows WHERE id = ?)", [before]
        with self._lock:
            rows = self._db.execute(f"{_FLOW_SELECT}{where} ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
        return [_flow(row) for row in rows]

    def update_flow(self, flow_id: str, name: str, document: dict[str, Any], source: str | None) -> FlowRecord | None:
        """Replace a flow's name and document; None when there is no such flow."""
        with self._lock:
            changed = self._db.execute("UPDATE flows SET name = ?, document_json = ?, source = ?, updated_at = ? WHERE id = ?",
                                       (name, json.dumps(document), source, utc_now(), flow_id)).rowcount
        return self.flow(flow_id) if changed else None

    def delete_flow(self, flow_id: str) -> bool:
        with self._lock:
            return bool(self._db.execute("DELETE FROM flows WHERE id = ?", (flow_id,)).rowcount)

    # -- the Canonical API's calls --------------------------------------------------------------------

    def insert_canonical_call(self, call_id: str, assistant: dict[str, Any], source: str, webhook_url: str | None,
                              job_input: dict[str, Any]) -> bool:
        """Store a Canonical call and count it for its assistant, in one transaction; False (nothing
        written) when ``call_id`` was stored before."""
        now = utc_now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                inserted = self._db.execute(
                    "INSERT OR IGNORE INTO canonical_calls (call_id, assistant_id, assistant_json, source, webhook_url, job_input_json, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (call_id, assistant["id"], json.dumps(assistant), source, webhook_url, json.dumps(job_input), now),
                ).rowcount == 1
                if inserted:
                    self._db.execute(
                        "INSERT INTO canonical_assistants (assistant_id, assistant_json, calls, first_call_at, last_call_at) VALUES (?, ?, 1, ?, ?)"
                        " ON CONFLICT (assistant_id) DO UPDATE SET calls = calls + 1, assistant_json = excluded.assistant_json,"
                        " last_call_at = excluded.last_call_at",
                        (assistant["id"], json.dumps(assistant), now, now),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return inserted

    def forget_canonical_call(self, call_id: str) -> None:
        """Undo ``insert_canonical_call`` for a call whose job could not be submitted."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT assistant_id FROM canonical_calls WHERE call_id = ? AND job_id IS NULL", (call_id,)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM canonical_calls WHERE call_id = ?", (call_id,))
                    self._db.execute("UPDATE canonical_assistants SET calls = calls - 1 WHERE assistant_id = ?", (row[0],))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def canonical_job_input(self, call_id: str) -> dict[str, Any] | None:
        """The job input a call was stored with (to submit its job after a crash)."""
        with self._lock:
            row = self._db.execute("SELECT job_input_json FROM canonical_calls WHERE call_id = ?", (call_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_canonical_job(self, call_id: str, job_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE canonical_calls SET job_id = ? WHERE call_id = ?", (job_id, call_id))

    def canonical_call(self, call_id: str) -> CanonicalCallRecord | None:
        with self._lock:
            row = self._db.execute(f"{_CANONICAL_SELECT} WHERE c.call_id = ?", (call_id,)).fetchone()
        return _canonical(row) if row else None

    def canonical_call_for_job(self, job_id: str) -> CanonicalCallRecord | None:
        with self._lock:
            row = self._db.execute(f"{_CANONICAL_SELECT} WHERE c.job_id = ?", (job_id,)).fetchone()
        return _canonical(row) if row else None

    def list_canonical_calls(self, assistant_id: str | None = None, status: str | None = None, limit: int = 50,
                             after: str | None = None) -> list[CanonicalCallRecord]:
        """Newest first; ``after``: a call id, the last of the previous page (exclusive). ``status`` is the
        job's (a call whose job is not submitted yet is queued)."""
        clauses: list[str] = []
        params: list[Any] = []
        if assistant_id is not None:
            clauses.append("c.assistant_id = ?")
            params.append(assistant_id)
        if status is not None:
            clauses.append("COALESCE(j.status, 'queued') = ?")
            params.append(status)
        if after is not None:
            clauses.append("c.seq < (SELECT seq FROM canonical_calls WHERE call_id = ?)")
            params.append(after)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(f"{_CANONICAL_SELECT}{where} ORDER BY c.seq DESC LIMIT ?", (*params, limit)).fetchall()
        return [_canonical(row) for row in rows]

    def canonical_calls_to_recover(self) -> list[CanonicalCallRecord]:
        """Calls a crash left half done: stored without their job, or whose job ended uncounted."""
        with self._lock:
            rows = self._db.execute(
                f"{_CANONICAL_SELECT} WHERE c.job_id IS NULL OR (c.counted_at IS NULL AND j.status IN ('completed', 'failed')) ORDER BY c.seq"
            ).fetchall()
        return [_canonical(row) for row in rows]

    def count_canonical_call(self, call_id: str, outcome: CanonicalOutcome) -> bool:
        """Add a call's end to its assistant's aggregates, once: False when it was counted before."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changed = self._db.execute(
                    "UPDATE canonical_calls SET counted_at = ? WHERE call_id = ? AND counted_at IS NULL", (utc_now(), call_id)
                ).rowcount == 1
                row = self._db.execute(
                    "SELECT a.assistant_id, a.latency_histogram_json FROM canonical_assistants a"
                    " JOIN canonical_calls c ON c.assistant_id = a.assistant_id WHERE c.call_id = ?", (call_id,)
                ).fetchone()
                if changed and row is not None:
                    histogram: dict[str, int] = json.loads(row[1])
                    for value in outcome.latency_ms:
                        key = str(value)
                        histogram[key] = histogram.get(key, 0) + 1
                    self._db.execute(
                        "UPDATE canonical_assistants SET completed = completed + ?, failed = failed + ?, analysed_s = analysed_s + ?,"
                        " user_interrupted = user_interrupted + ?, assistant_interrupted = assistant_interrupted + ?,"
                        " dead_air_count = dead_air_count + ?, dead_air_total_s = dead_air_total_s + ?, latency_histogram_json = ?"
                        " WHERE assistant_id = ?",
                        (int(outcome.completed), int(not outcome.completed), outcome.duration_s, outcome.user_interrupted,
                         outcome.assistant_interrupted, outcome.dead_air_count, outcome.dead_air_total_s,
                         json.dumps(histogram, separators=(",", ":")), row[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return changed

    def canonical_assistants(self, limit: int = 100, after: str | None = None) -> list[dict[str, Any]]:
        """Assistants by id, with their aggregates as stored (``latency_histogram``: ms -> count)."""
        clause, params = ("WHERE assistant_id > ?", (after,)) if after is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                "SELECT assistant_id, assistant_json, calls, completed, failed, analysed_s, user_interrupted, assistant_interrupted,"
                f" dead_air_count, dead_air_total_s, latency_histogram_json, first_call_at, last_call_at FROM canonical_assistants {clause}"
                " ORDER BY assistant_id LIMIT ?", (*params, limit)
            ).fetchall()
        names = ("assistant_id", "assistant", "calls", "completed", "failed", "analysed_s", "user_interrupted", "assistant_interrupted",
                 "dead_air_count", "dead_air_total_s", "latency_histogram", "first_call_at", "last_call_at")
        out = []
        for row in rows:
            item = dict(zip(names, row))
            item["assistant"] = json.loads(item["assistant"])
            item["latency_histogram"] = {int(k): v for k, v in json.loads(item["latency_histogram"]).items()}
            out.append(item)
        return out

    # -- webhook deliveries ---------------------------------------------------------------------------

    def insert_delivery(self, call_id: str, sequence: int, event_type: str, url: str, payload: dict[str, Any]) -> int:
        """Store a delivery as ``pending``, due now."""
        now = utc_now()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO webhook_deliveries (call_id, sequence, event_type, url, payload_json, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (call_id, sequence, event_type, url, json.dumps(payload), now, now),
            )
        return int(cursor.lastrowid or 0)

    def record_attempts(self, delivery_id: int, attempts: list[dict[str, Any]], status: str | None = None, next_attempt_at: str | None = None) -> None:
        """Store a delivery's attempt log; ``status`` 'delivered' or 'failed' closes it, otherwise it stays
        pending until ``next_attempt_at``."""
        with self._lock:
            if status is None:
                self._db.execute(
                    "UPDATE webhook_deliveries SET attempts_json = ?, next_attempt_at = COALESCE(?, next_attempt_at) WHERE id = ?",
                    (json.dumps(attempts), next_attempt_at, delivery_id),
                )
            else:
                self._db.execute(
                    "UPDATE webhook_deliveries SET attempts_json = ?, status = ?, finished_at = ?, next_attempt_at = NULL WHERE id = ?",
                    (json.dumps(attempts), status, utc_now(), delivery_id),
                )

    def requeue_delivery(self, delivery_id: int) -> None:
        """Make a delivery pending and due now, keeping its attempt log; a new round of attempts starts
        after the ones it already made."""
        with self._lock:
            self._db.execute(
                "UPDATE webhook_deliveries SET status = 'pending', finished_at = NULL, next_attempt_at = ?,"
                " round_start = CASE WHEN status = 'pending' THEN round_start ELSE json_array_length(attempts_json) END WHERE id = ?",
                (utc_now(), delivery_id),
            )

    def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(_DELIVERY_SELECT + " WHERE id = ?", (delivery_id,)).fetchone()
        return _delivery(row) if row else None

    def next_pending_delivery(self, call_id: str) -> dict[str, Any] | None:
        """The call's oldest pending delivery: the one that must go before any other of the call."""
        with self._lock:
            row = self._db.execute(
                _DELIVERY_SELECT + " WHERE call_id = ? AND status = 'pending' ORDER BY id LIMIT 1", (call_id,)
            ).fetchone()
        return _delivery(row) if row else None

    def calls_with_pending_deliveries(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT call_id FROM webhook_deliveries WHERE status = 'pending'").fetchall()
        return [row[0] for row in rows]

    def deliveries(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries oldest first (of one call, or all)."""
        query = _DELIVERY_SELECT + (" WHERE call_id = ?" if call_id is not None else "")
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", () if call_id is None else (call_id,)).fetchall()
        return [_delivery(row) for row in rows]

    def list_deliveries(self, status: str | None = None, call_id: str | None = None, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before`` is a delivery id to page from (exclusive)."""
        clauses, params = _equal_to({"status": status, "call_id": call_id})
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        query = _DELIVERY_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*params, limit)).fetchall()
        return [_delivery(row) for row in rows]

    # -- idempotency keys -----------------------------------------------------------------------------

    def claim_idempotency_key(self, scope: str, key: str, fingerprint: str, now_s: float, ttl_s: float) -> IdempotencyRecord | None:
        """Claim ``key`` for a new request (None: go ahead), or return what the earlier request with it left.
        This key, when older than ``ttl_s``, is forgotten first, so an expired key is claimed afresh (the
        others go with housekeeping, never in a request)."""
        with self._lock:
            self._db.execute(
                "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND created_at < ?", (scope, key, now_s - ttl_s)
            )
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES (?, ?, ?, ?)",
                (scope, key, fingerprint, now_s),
            )
            if cursor.rowcount == 1:
                return None
            row = self._db.execute(
                "SELECT fingerprint, status_code, response_json FROM idempotency_keys WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
        return IdempotencyRecord(row[0], row[1], json.loads(row[2]) if row[2] is not None else None)

    def complete_idempotency_key(self, scope: str, key: str, status_code: int, response: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE idempotency_keys SET status_code = ?, response_json = ? WHERE scope = ? AND key = ?",
                (status_code, json.dumps(response), scope, key),
            )

    def release_idempotency_key(self, scope: str, key: str) -> None:
        """Forget a claim whose request failed before doing anything, so the key can be used again."""
        with self._lock:
            self._db.execute("DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND status_code IS NULL", (scope, key))


def delete_expired_idempotency_keys(db: sqlite3.Connection, now_s: float, ttl_s: float) -> int:
    """Delete the Idempotency-Keys older than ``ttl_s`` on ``db`` (the store's, or prune's own connection);
    returns how many. Keys belong to no call: they go by age alone."""
    return max(int(db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now_s - ttl_s,)).rowcount), 0)


_FLOW_SELECT = "SELECT id, name, document_json, source, created_at, updated_at FROM flows"


def _flow(row: tuple[Any, ...]) -> FlowRecord:
    return FlowRecord(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])


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
        callee=row[12] if len(row) > 12 else None,
    )


def _delivery(row: tuple[Any, ...]) -> dict[str, Any]:
    item = dict(zip(_DELIVERY_COLUMNS, row))
    item["payload"] = json.loads(item["payload"])
    item["attempts"] = json.loads(item["attempts"])
    return item
