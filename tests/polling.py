"""Waiting for something a real process does in its own time (a node mining, a lag growing)."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30, interval: float = 0.3) -> Any:
    """``check()``'s first truthy answer; an AssertionError naming ``what`` and the last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:g}s (last: {last})")
