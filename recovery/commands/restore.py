"""`recovery restore db|pitr|chain`: the DR plan's scenarios 1 and 2 as runbooks.

Thin: parse options, build the runbook, hand it to the engine with a ConsoleReporter (plan,
progress and summary on stderr), print the journal (or the dry-run plan) with --json on stdout.
Errors propagate to `recovery.cli.Main`, which prints one line and exits with the error's code.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from recovery.cli import _emit_json, _outputs, stack_options
from recovery.errors import InputError, StepFailedError


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")(f)
    f = click.option("--dry-run", is_flag=True, help="Show the plan and change nothing.")(f)
    return stack_options(f)


def _store(outputs: Any, reporter: Any) -> Any:
    from recovery.aws import client
    from recovery.runbook import journal_store

    return journal_store(client("s3", outputs.region), outputs.backup_bucket_name, warn=reporter.message)


def _finish(run: Callable[[], tuple[Any, Any]], as_json: bool) -> Any:
    """Run; print the journal (or plan) as JSON when asked, on failure too."""
    try:
        journal, plan = run()
    except StepFailedError as err:
        if as_json and getattr(err, "journal", None) is not None:
            _emit_json(err.journal.to_dict())  # type: ignore[attr-defined]
        raise
    if as_json:
        _emit_json(plan if plan is not None else journal.to_dict())
    return journal


def _duration(text: str) -> float:
    """'15m', '90s', '1h', '300' (seconds) -> seconds."""
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}
    try:
        if t and t[-1] in mult:
            value = float(t[:-1]) * mult[t[-1]]
        else:
            value = float(t)
    except ValueError:
        raise InputError(f"'{text}' is not a duration", "use e.g. 15m, 90s, 1h or seconds") from None
    if value <= 0:
        raise InputError(f"duration '{text}' must be positive", "use e.g. 15m")
    return value


@click.group()
def restore() -> None:
    """Restore the database (from a dump or to a point in time) or the node's chain data."""


@restore.command("db")
@_common
@click.option("--backup", default="latest", show_default=True, help="Backup key or file name, or 'latest'.")
@click.option("--target-db", help="Database to replace (default: the stack's db_name).")
@click.option("--no-keep-old", is_flag=True, help="Drop the replaced database instead of quarantining it.")
@click.option("--force", is_flag=True, help="Replace a target database that holds tables (it is quarantined).")
@click.option("--dsn", help="PostgreSQL connection string overriding the stack's (PG* env vars also override).")
def restore_db_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, backup: str,
                   target_db: str | None, no_keep_old: bool, force: bool, dsn: str | None) -> None:
    """Restore a database dump into a scratch database, verify it, swap it in by rename."""
    from recovery.runbook import ConsoleReporter
    from recovery.runbooks.restore_db import DbRestoreOptions, restore_db

    outputs = _outputs(stack, outputs_file)
    reporter = ConsoleReporter()
    opts = DbRestoreOptions(backup=backup, target_db=target_db, keep_old=not no_keep_old, force=force, dsn=dsn)
    store = _store(outputs, reporter)
    _finish(lambda: restore_db(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter), as_json)


@restore.command("chain")
@_common
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="The node's data directory, e.g. /var/lib/xai/blockchain.")
@click.option("--backup", default="latest", show_default=True, help="Backup key or file name, or 'latest'.")
@click.option("--owner", default="xai:xai", show_default=True, help="USER:GROUP to chown the restored data to (as root).")
@click.option("--archive-current", is_flag=True, help="First upload the current data dir to s3://BUCKET/quarantine/chain/.")
@click.option("--node-url", default="http://localhost:8080", show_default=True, help="The node's API.")
@click.option("--sync-timeout", default="15m", show_default=True, help="How long to wait for the node to sync.")
def restore_chain_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, data_dir: str,
                      backup: str, owner: str, archive_current: bool, node_url: str, sync_timeout: str) -> None:
    """Restore the node's data directory from a chain backup; the current one is quarantined."""
    from recovery.runbook import ConsoleReporter
    from recovery.runbooks.restore_chain import ChainRestoreOptions, restore_chain

    outputs = _outputs(stack, outputs_file)
    reporter = ConsoleReporter()
    opts = ChainRestoreOptions(data_dir=data_dir, backup=backup, owner=owner, archive_current=archive_current,
                               node_url=node_url, sync_timeout_s=_duration(sync_timeout))
    store = _store(outputs, reporter)
    _finish(lambda: restore_chain(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter), as_json)


@restore.command("pitr")
@_common
@click.option("--to-time", required=True, help="UTC time to restore to, ISO 8601 (e.g. 2026-11-25T17:00:00Z).")
@click.option("--new-cluster", help="Identifier of the new cluster (default: <source>-pitr-<time>).")
@click.option("--instance-class", help="Instance class of the new cluster's instance (default: the source's).")
@click.option("--wait-timeout", default="60m", show_default=True, help="How long to wait for the new cluster.")
def restore_pitr_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, to_time: str,
                     new_cluster: str | None, instance_class: str | None, wait_timeout: str) -> None:
    """Aurora point-in-time restore into a NEW cluster; the source cluster is never modified."""
    from recovery.runbook import ConsoleReporter
    from recovery.cli import _out
    from recovery.runbooks.restore_pitr import PitrOptions, fmt, next_steps, parse_time, restore_pitr

    outputs = _outputs(stack, outputs_file)
    reporter = ConsoleReporter()
    opts = PitrOptions(to_time=parse_time(to_time), new_cluster=new_cluster, instance_class=instance_class,
                       wait_timeout_s=_duration(wait_timeout))
    store = _store(outputs, reporter)
    journal = _finish(lambda: restore_pitr(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter), as_json)
    if journal is not None and not as_json:
        for line in next_steps(outputs, journal.step("report").detail, fmt(opts.to_time)):
            _out(line)
