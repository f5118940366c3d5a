"""SQLite persistence: calls, events, recordings, pending work."""

from ivrsim.store.sqlite import CallRecord, RecordingRecord, Store

__all__ = ["CallRecord", "RecordingRecord", "Store"]
