"""Polling for the integration tests: conditions on a real cluster hold eventually, never at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.1


def wait_until(condition: Callable[[], T], *, what: str, timeout_seconds: float = 60.0) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value; fail after ``timeout_seconds``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds:.0f} s waiting for {what}; last value: {value!r}")
        time.sleep(_POLL_SECONDS)
