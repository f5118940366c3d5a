"""Helpers for tests of ivrsim and of flows built on it; the pytest plugin is ``ivrsim.testing.plugin``."""

from ivrsim.testing.http import serve_bytes

__all__ = ["serve_bytes"]
