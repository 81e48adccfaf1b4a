"""Free space for a restore, checked before anything is created (the restores' ``check-backup`` step).

A one-pass restore writes the backup's uncompressed content beside the live data (a scratch
database, a staging dir) while the live data stays, so the filesystem must hold all of it, plus a
margin for metadata and rounding. Short of that the run stops at once with one line naming what is
needed and what is free, instead of filling the disk half-way through the load.

For a database this is only checkable when the server runs on this host; elsewhere (a managed
server, another machine, a role that may not read ``data_directory``) the step's detail says it
was not checked and how much the server needs, rather than guessing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import psycopg

from recovery.errors import InputError
from recovery.units import human_bytes

MARGIN_MIN = 64 * 1024 * 1024
MARGIN_FRACTION = 0.05  # metadata, directory blocks and rounding beyond the raw bytes


def space_needed(raw_bytes: int) -> int:
    return raw_bytes + max(MARGIN_MIN, int(raw_bytes * MARGIN_FRACTION))


def free_bytes(path: Path) -> int:
    """What an unprivileged writer may use (f_bavail), as `df` reports it."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_free_space(path: Path, expected: int, what: str, fix: str) -> dict[str, Any]:
    """InputError, naming what is needed and what is free, unless `path`'s filesystem holds
    `expected` bytes plus the margin."""
    need, free = space_needed(expected), free_bytes(path)
    if free < need:
        raise InputError(f"not enough free space for {what}: it needs {human_bytes(need)} "
                         f"({human_bytes(expected)} + margin) on the filesystem of {path}, {human_bytes(free)} is free",
                         fix)
    return {"space_needed": need, "space_free": free, "space_checked_on": str(path)}



def local_datadir(datadir: str, port: int, started: float) -> Path | None:
    """The server's ``base`` directory (where a new database goes) when the server runs on this host:
    its postmaster.pid is readable here and names the same port, a start time within 2 s of
    ``pg_postmaster_start_time()`` and a live process. A same-named directory of another server is
    thereby not mistaken for it. None when any of that does not hold."""
    try:
        lines = (Path(datadir) / "postmaster.pid").read_text().splitlines()
        pid, start, pid_port = int(lines[0]), float(lines[2]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    if pid_port != port or abs(start - started) > 2 or not Path(f"/proc/{pid}").exists():
        return None
    return Path(datadir) / "base"


def server_free_space(connect: Callable[[], Any], target: str, raw_bytes: int) -> dict[str, Any]:
    """Room for a scratch copy of database `target` on its server (`connect`: a maintenance
    connection). Expected size: the larger of the dump's raw size and the live target's
    (pg_database_size)."""
    with connect() as c:
        try:  # needs CONNECT on it (or pg_read_all_stats), which a REVOKE may have taken away
            row = c.execute("SELECT pg_database_size(oid) FROM pg_database WHERE datname = %s", (target,)).fetchone()
            live = int(row[0]) if row else None
        except psycopg.errors.InsufficientPrivilege:
            live = None
        expected = max(raw_bytes, live or 0)
        try:
            datadir = str(c.execute("SHOW data_directory").fetchone()[0])
            port = int(c.execute("SHOW port").fetchone()[0])
            started = float(c.execute("SELECT extract(epoch FROM pg_postmaster_start_time())").fetchone()[0])
        except psycopg.errors.InsufficientPrivilege:
            datadir, port, started = None, 0, 0.0
    detail: dict[str, Any] = {"expected_db_bytes": expected, "live_db_bytes": live}
    where = local_datadir(datadir, port, started) if datadir else None
    if where is None:
        why = "the role may not read data_directory" if datadir is None else f"its data directory {datadir} is not on this host"
        return {**detail, "space_checked": f"no: {why}; the server needs about {human_bytes(space_needed(expected))} free"}
    detail.update(check_free_space(where, expected, f"the scratch copy of {target}",
                                   f"free space on the server's disk (old {target}_quarantine_* databases "
                                   "can go: `recovery quarantine prune`), then rerun"))
    return {**detail, "space_checked": "yes"}
