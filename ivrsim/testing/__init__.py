"""Helpers for tests of ivrsim and of flows built on it (the audio-fixture pytest plugin comes later)."""

from ivrsim.testing.http import serve_bytes

__all__ = ["serve_bytes"]
