"""`recovery rotate db|cache|app|all`: the DR plan's scenario 5 credential rotation as a runbook.

Thin: parse options, build the runbook (recovery/runbooks/rotate.py), hand it to the engine with a
ConsoleReporter, print the journal (or the dry-run plan) with --json. No secret value is ever
printed: journals hold version ids and outcomes only.
"""

from __future__ import annotations

import click

from recovery.commands.common import console_reporter, finish_runbook, journal_store_for, outputs_for, runbook_options
from recovery.commands.params import DURATION, Duration


@click.command("rotate")
@click.argument("what", type=click.Choice(["db", "cache", "app", "all"]))
@runbook_options
@click.option("--grace", type=Duration(allow_zero=True), default="5m", show_default=True,
              help="Cache: how long old and new auth tokens both stay valid before SET drops the old one.")
@click.option("--no-grace", is_flag=True, help="Cache: drop the old auth token at once (same as --grace 0).")
@click.option("--set-timeout", type=DURATION, default="2m", show_default=True,
              help="How long to wait for the service to accept a new credential.")
def rotate(what: str, stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, grace: float,
           no_grace: bool, set_timeout: float) -> None:
    """Rotate secrets: create (AWSPENDING), set, test, finish; resumable, never locks clients out."""
    from recovery.runbooks.rotate import rotate as run_rotation

    outputs = outputs_for(stack, outputs_file, "rotate")
    reporter = console_reporter()
    grace_s = 0.0 if no_grace else grace
    store = journal_store_for(outputs, reporter)
    finish_runbook(lambda: run_rotation(outputs, what, store, grace_s=grace_s, yes=yes, dry_run=dry_run,
                                        reporter=reporter, set_timeout_s=set_timeout), as_json)
