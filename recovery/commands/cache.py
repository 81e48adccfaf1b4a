"""`recovery cache failover|recreate`: the Redis cache after losing its primary, or the whole group.

Thin: parse options, build the runbook (recovery/runbooks/cache.py), hand it to the engine with a
ConsoleReporter, print the journal (or the dry-run plan) with --json. Both run as the restore job's role.
"""

from __future__ import annotations

import click

from recovery.commands.common import console_reporter, finish_runbook, journal_store_for, outputs_for, runbook_options
from recovery.commands.params import DURATION


@click.group("cache")
def cache() -> None:
    """Recover the Redis cache group (RTO 10 min; it holds no durable data)."""


@cache.command("failover")
@runbook_options
@click.option("--timeout", type=DURATION, default="15m", show_default=True, help="How long to wait for the promotion.")
def failover_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, timeout: float) -> None:
    """The primary is lost: promote a replica (TestFailover), then verify a write with the current token."""
    from recovery.runbooks.cache import failover

    outputs = outputs_for(stack, outputs_file, "restore")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    finish_runbook(lambda: failover(outputs, store, yes=yes, dry_run=dry_run, reporter=reporter, timeout_s=timeout),
                   as_json)


@cache.command("recreate")
@runbook_options
@click.option("--timeout", type=DURATION, default="30m", show_default=True, help="How long to wait for delete and create.")
def recreate_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, timeout: float) -> None:
    """Every node is lost: recreate the group from the stack's declared settings, verify it answers empty."""
    from recovery.runbooks.cache import recreate

    outputs = outputs_for(stack, outputs_file, "restore")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    finish_runbook(lambda: recreate(outputs, store, yes=yes, dry_run=dry_run, reporter=reporter, timeout_s=timeout),
                   as_json)
