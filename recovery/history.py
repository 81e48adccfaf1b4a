"""What ran: the run journals of a stack (recovery/engine/journal.py), as `recovery runs list|show` shows them.

Journals are read where the engine wrote them: the stack's bucket under ``runs/<runbook>/`` and the
local fallback directory (``FallbackJournalStore`` reads both and keeps the newer copy of a run).
The local directory is shared by every stack this host ran against, and a DR bucket may hold the
primary's journals by replication, so a journal whose params name another stack is left out.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from recovery.engine.journal import RUN_RUNNING, Journal, JournalStore
from recovery.errors import InputError

# A run whose journal still says "running" but whose process is gone never ended: it died, was
# killed, or its host went down. The engine resumes it on the next same run; the operator should know.
UNFINISHED = "unfinished"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(value: str, what: str) -> str:
    """A runbook name or run id as the engine makes them: never a path (the local store joins it into one)."""
    if not _NAME_RE.match(value):
        raise InputError(f"{value!r} is not a {what} as the engine names them",
                         "use letters, digits, '.', '_' and '-' as `recovery runs list` shows them")
    return value


def _alive_here(pid: Any) -> bool:
    """Whether `pid` is a live `recovery` process on this host (a reused pid runs something else)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    cmdline = Path(f"/proc/{int(pid)}/cmdline")
    try:
        return b"recovery" in cmdline.read_bytes()
    except OSError:
        return True  # no /proc to tell by: the pid is alive, trust it


def run_status(j: Journal) -> str:
    """ok | failed | partial | running (its process is alive on this host) | unfinished (it never ended).

    A run in flight on another host cannot be told from one that died there: both are "unfinished",
    and the host column says where to look."""
    if j.status != RUN_RUNNING:
        return j.status
    last = j.attempts[-1] if j.attempts else {}
    if last.get("host") == socket.gethostname() and _alive_here(last.get("pid")):
        return RUN_RUNNING
    return UNFINISHED


def _last_activity(j: Journal) -> str:
    stamps = [j.started_at, j.ended_at, *(a.get("started_at") for a in j.attempts),
              *(t for s in j.steps for t in (s.started_at, s.ended_at))]
    return max(str(t) for t in stamps if t)


def elapsed_s(j: Journal, status: str) -> float:
    """Start to end; for a run still going, to now; for one that never ended, to its last recorded activity."""
    start = datetime.fromisoformat(j.started_at)
    if j.ended_at:
        end = datetime.fromisoformat(j.ended_at)
    elif status == RUN_RUNNING:
        end = datetime.now(timezone.utc)
    else:
        end = datetime.fromisoformat(_last_activity(j))
    return max(0.0, (end - start).total_seconds())


@dataclass
class RunRow:
    journal: Journal
    status: str

    def to_json(self) -> dict[str, Any]:
        j = self.journal
        return {"runbook": j.runbook, "run_id": j.run_id, "target": j.target, "status": self.status,
                "started_at": j.started_at, "ended_at": j.ended_at, "elapsed_s": round(elapsed_s(j, self.status), 3),
                "host": self.host, "failed_step": j.failed_step, "error": j.error, "location": j.location}

    @property
    def host(self) -> str:
        return str((self.journal.attempts[-1] if self.journal.attempts else {}).get("host") or "-")


def _of_stack(j: Journal, stack: str) -> bool:
    # restores name the stack, a failover its target stack; the other runbooks (cache, contain, partition,
    # rotate) do not, so a local fallback journal of theirs from another stack cannot be told apart
    named = j.params.get("stack") or (j.params.get("target") if j.runbook in ("failover", "failback") else None)
    return named is None or named == stack


def _newest_first(store: JournalStore, runbooks: list[str]) -> Iterator[tuple[str, str]]:
    """(runbook, run id) of every stored run, newest first: run ids begin with their start time."""
    pairs = [(run_id, rb) for rb in runbooks for run_id in store.run_ids(rb)]
    for run_id, rb in sorted(pairs, reverse=True):
        yield rb, run_id


def list_runs(store: JournalStore, stack: str, *, runbook: str | None = None, limit: int = 20,
              unfinished: bool = False) -> list[RunRow]:
    """The newest `limit` runs of the stack (of one runbook; only those that never ended), newest first.
    Loads journals one at a time and stops at `limit`, so a long history costs one listing per runbook."""
    runbooks = [runbook] if runbook else store.runbooks()
    rows: list[RunRow] = []
    for rb, run_id in _newest_first(store, runbooks):
        j = store.load(rb, run_id)
        if j is None or not _of_stack(j, stack):
            continue
        status = run_status(j)
        if unfinished and status not in (RUN_RUNNING, UNFINISHED):
            continue
        rows.append(RunRow(j, status))
        if len(rows) >= limit:
            break
    return rows


def find_run(store: JournalStore, stack: str, bucket: str, run_id: str) -> RunRow:
    """The run `run_id` (or the newest run for `latest`) of any runbook; InputError if no journal has it."""
    runbooks = store.runbooks()
    if run_id == "latest":
        rows = list_runs(store, stack, limit=1)
        if not rows:
            raise InputError(f"no runs recorded for stack {stack} (s3://{bucket}/runs/ nor the local journal)",
                             "a runbook writes its journal when it runs; check --stack")
        return rows[0]
    check_name(run_id, "run id")
    for rb in runbooks:
        if run_id in store.run_ids(rb):
            j = store.load(rb, run_id)
            if j is not None and _of_stack(j, stack):
                return RunRow(j, run_status(j))
    raise InputError(f"no run {run_id} in the journals of stack {stack} (s3://{bucket}/runs/ and the local journal)",
                     f"see `recovery runs list --stack {stack}`; a run of another stack needs that --stack")
