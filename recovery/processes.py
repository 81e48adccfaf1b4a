"""Whether a process still runs, and stopping one: the one place for pid handling.

Used by the local environment (its daemons), drills (their per-stack lock) and runbook locks
(is the holder a crashed run on this host?).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """True while `pid` runs. A zombie (exited, not yet reaped) does not count as running."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        # /proc/<pid>/stat is "pid (comm) state ...": comm may hold spaces and parentheses.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_pid(pid: int | None, timeout: float = 10) -> None:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL. Safe on a process already gone."""
    if not pid or not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or None if unknown.

    A pid alone names a process only while it runs: after it exits the number is reused. The pair
    (pid, start ticks) names one process for the life of the machine's boot.
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_namespace() -> str | None:
    """This process's pid namespace ("pid:[4026531836]"): pids of another namespace (a container
    sharing the host name) mean nothing here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_gone(pid: int, started: int | None) -> bool:
    """True when the process `pid` that started at `started` ticks certainly no longer runs:
    the pid is free, or it now names a later process (reused)."""
    if not pid_alive(pid):
        return True
    now = start_ticks(pid)
    return started is not None and now is not None and now != started
