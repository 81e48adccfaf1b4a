"""`recovery runs list|show` (what ran, from the run journals) and `recovery quarantine list|prune` (what
restores kept). Logic in recovery/history.py and recovery/quarantine.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click

from recovery.commands.common import (confirm, emit_json, human_bytes, human_seconds, journal_store_for, out,
                                      outputs_for, stack_options, table)
from recovery.commands.params import Duration
from recovery.errors import InputError

# Journals of every runbook sit in the stack's bucket under runs/; the backup job's role reads the
# whole vault already (status and metrics), the restore job's only its own runbooks' journals.
HISTORY_JOB = "backup"


def _runbook(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from recovery.history import check_name

    if value is None:
        return None
    try:
        return check_name(value, "runbook")
    except InputError as err:
        raise click.BadParameter(f"{err.problem} ({err.fix})") from None


@click.group()
def runs() -> None:
    """What runbooks ran on a stack: their journals, newest first."""


@runs.command("list")
@stack_options
@click.option("--runbook", callback=_runbook, help="Only this runbook's runs, e.g. restore-db.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="At most this many runs.")
@click.option("--unfinished", is_flag=True, help="Only runs that never ended (running, or their process is gone).")
def runs_list_cmd(stack: str, outputs_file: str | None, as_json: bool, runbook: str | None, limit: int,
                  unfinished: bool) -> None:
    """Runs newest first: runbook, run id, target, status, started, elapsed, host."""
    from recovery.engine.console import ConsoleReporter
    from recovery.history import elapsed_s, list_runs

    outputs = outputs_for(stack, outputs_file, HISTORY_JOB)
    rows = list_runs(journal_store_for(outputs, ConsoleReporter()), stack, runbook=runbook, limit=limit,
                     unfinished=unfinished)
    if as_json:
        emit_json([r.to_json() for r in rows])
        return
    if not rows:
        out(f"no {'unfinished ' if unfinished else ''}runs" + (f" of {runbook}" if runbook else "")
            + f" recorded for stack {stack}")
        return
    table([("RUNBOOK", "RUN ID", "TARGET", "STATUS", "STARTED", "ELAPSED", "HOST")]
          + [(r.journal.runbook, r.journal.run_id, r.journal.target, r.status, r.journal.started_at[:19] + "Z",
              human_seconds(elapsed_s(r.journal, r.status)), r.host) for r in rows])


@runs.command("show")
@stack_options
@click.argument("run_id")
def runs_show_cmd(stack: str, outputs_file: str | None, as_json: bool, run_id: str) -> None:
    """One run's steps with status, duration and detail, and where its journal is. RUN_ID: as `runs list`
    shows it, or latest."""
    from recovery.engine.console import ConsoleReporter
    from recovery.history import elapsed_s, find_run

    outputs = outputs_for(stack, outputs_file, HISTORY_JOB)
    row = find_run(journal_store_for(outputs, ConsoleReporter()), stack, outputs.backup_bucket_name, run_id)
    j = row.journal
    if as_json:
        emit_json({**j.to_dict(), "status": row.status, "journal_status": j.status})
        return
    out(f"{j.runbook} {j.run_id} on {j.target}: {row.status} ({human_seconds(elapsed_s(j, row.status))}, "
        f"started {j.started_at[:19]}Z on {row.host})")
    if j.error:
        out(f"error: {j.error}")
    table([("STEP", "STATUS", "DURATION", "DETAIL")]
          + [(s.name, s.status, human_seconds(s.duration_s), _detail(s.error, s.detail)) for s in j.steps])
    for gap in j.not_restored():
        out(f"not restored: {gap}")
    out(f"journal {j.location}")


def _detail(error: str | None, detail: dict[str, Any]) -> str:
    """One line per step: its error, else its detail as key=value (nested values as they are)."""
    if error:
        return error
    return ", ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", [], {}))[:200]


@click.group()
def quarantine() -> None:
    """What restores kept (replaced databases, data directories, archives): list and prune."""


def _quarantine_options(f: Any) -> Any:
    f = click.option("--dsn", help="PostgreSQL connection string overriding the stack's (the server `restore db` used).")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False),
                     help="The node's data directory whose quarantined copies to look for [default for local "
                          "stacks: the local node's].")(f)
    return stack_options(f)


def _find(stack: str, outputs_file: str | None, dsn: str | None, data_dir: str | None) -> tuple[Any, Any, Any, Any]:
    from recovery import postgres
    from recovery.aws import client
    from recovery.quarantine import find

    # the restore job's role: it made them, and reads the DB secret and lists the vault already
    outputs = outputs_for(stack, outputs_file, "restore")
    data_dir = data_dir or outputs.node_data_dir  # the local environment's node; elsewhere only if given
    cp = postgres.resolve(outputs, dsn)
    s3 = client("s3", outputs.region)
    return outputs, find(outputs, s3=s3, cp=cp, data_dir=data_dir), (s3, cp), data_dir


def _show(items: list[Any], now: datetime) -> None:
    table([("KIND", "AGE", "SIZE", "KEPT AT", "NAME", "WHERE")]
          + [(i.kind, human_seconds(i.age_s(now)), human_bytes(i.size_bytes), i.kept_at.strftime("%Y-%m-%d %H:%M:%SZ"),
              i.name, i.where) for i in items])


@quarantine.command("list")
@_quarantine_options
def quarantine_list_cmd(stack: str, outputs_file: str | None, as_json: bool, data_dir: str | None,
                        dsn: str | None) -> None:
    """Quarantined databases, chain data directories and archives, with age and size."""
    _outputs, found, _, _ = _find(stack, outputs_file, dsn, data_dir)
    now = datetime.now(timezone.utc)
    if as_json:
        emit_json({"items": [i.to_json(now) for i in found.items], "notes": found.notes})
        return
    for note in found.notes:
        click.echo(f"note: {note}", err=True)
    if not found.items:
        out(f"nothing quarantined on stack {stack}")
        return
    _show(found.items, now)


@quarantine.command("prune")
@_quarantine_options
@click.option("--older-than", type=Duration(max_s=3650 * 86400), default="7d", show_default=True,
              help="Only what a restore kept longer ago than this (e.g. 7d, 12h).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--dry-run", is_flag=True, help="List exactly what would be deleted, and delete nothing.")
def quarantine_prune_cmd(stack: str, outputs_file: str | None, as_json: bool, data_dir: str | None, dsn: str | None,
                         older_than: float, yes: bool, dry_run: bool) -> None:
    """Delete what restores kept longer ago than --older-than; only names a restore makes, exactly."""
    from recovery.quarantine import prune

    outputs, found, (s3, cp), data_dir = _find(stack, outputs_file, dsn, data_dir)
    now = datetime.now(timezone.utc)
    doomed = [i for i in found.items if i.age_s(now) > older_than]
    for note in found.notes:
        click.echo(f"note: {note}", err=True)
    if dry_run or not doomed:
        if as_json:
            emit_json({"dry_run": dry_run, "would_delete" if dry_run else "deleted": [i.to_json(now) for i in doomed],
                       "kept": len(found.items) - len(doomed), "notes": found.notes})
        elif not doomed:
            out(f"nothing quarantined longer ago than {human_seconds(older_than)} on stack {stack}")
        else:
            out(f"would delete {len(doomed)} item(s) ({human_bytes(sum(i.size_bytes or 0 for i in doomed))}):")
            _show(doomed, now)
        return
    if not as_json:
        _show(doomed, now)
    confirm(f"prune deletes {len(doomed)} quarantined item(s) of stack {stack}", stack, outputs.production, yes)

    def told(item: Any, error: str | None) -> None:
        if not as_json:
            out(f"✓ deleted {item.kind} {item.name}" if error is None else f"✗ {item.kind} {item.name}: {error}")

    failed = prune(doomed, s3=s3, bucket=outputs.backup_bucket_name, cp=cp, data_dir=data_dir, on_item=told)
    if as_json:
        emit_json({"dry_run": False, "deleted": [i.to_json(now) for i in doomed if all(i is not f for f, _ in failed)],
                   "failed": [{**i.to_json(now), "error": e.line()} for i, e in failed],
                   "kept": len(found.items) - len(doomed), "notes": found.notes})
    if failed:
        item, first = failed[0]
        raise type(first)(f"{len(failed)} of {len(doomed)} quarantined item(s) were not deleted "
                          f"(first: {item.name}: {first.problem})", first.fix)
