"""Waiting for a condition in a test: poll it until it holds, within a bound, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float = 60.0, interval_s: float = 0.02) -> T:
    """Call ``condition`` until it returns something truthy, and return that; ``AssertionError`` after
    ``timeout_s`` (an upper bound for a cold machine, not a wait: a passing test returns as soon as it can)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:g} s")
        time.sleep(interval_s)
