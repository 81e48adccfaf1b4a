"""`recovery contain [terminate]` and `recovery investigate`: scenario 5 (security breach).

Thin: parse options, build the runbook (recovery/runbooks/contain.py), hand it to the engine with a
ConsoleReporter, print the journal (or the dry-run plan) with --json.
"""

from __future__ import annotations

from typing import Any

import click

from recovery.commands.common import (_note_json, _note_stack, console_reporter, emit_json, finish_runbook,
                                      journal_store_for, out, outputs_for, runbook_options, stack_options)
from recovery.commands.params import DURATION, Duration
from recovery.errors import InputError


@click.group("contain", invoke_without_command=True)
@click.option("--stack", envvar="RECOVERY_STACK", callback=_note_stack, help="Pulumi stack name [env RECOVERY_STACK].")
@click.option("--outputs", "outputs_file", envvar="RECOVERY_OUTPUTS",
              help="JSON of `pulumi stack output --json` [env RECOVERY_OUTPUTS].")
@click.option("--json", "as_json", is_flag=True, callback=_note_json, is_eager=True, help="Print a machine-readable result.")
@click.option("--dry-run", is_flag=True, help="Show the plan and change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--instance", "instance_id", help="The compromised EC2 instance, e.g. i-0123456789abcdef0.")
@click.option("--user", "users", multiple=True, help="IAM user whose access keys are deactivated (repeatable).")
@click.option("--role", "roles", multiple=True, help="A stack role whose active sessions are revoked (repeatable).")
@click.option("--incident", "incident_id", help="Incident id [default inc-YYYYMMDD-<instance>].")
@click.option("--delete-keys", is_flag=True, help="Delete the users' access keys after deactivating them.")
@click.option("--wait-timeout", type=DURATION, default="30m", show_default=True, help="How long to wait for the image and snapshots.")
@click.pass_context
def contain(ctx: click.Context, stack: str | None, outputs_file: str | None, as_json: bool, dry_run: bool, yes: bool,
            instance_id: str | None, users: tuple[str, ...], roles: tuple[str, ...], incident_id: str | None,
            delete_keys: bool, wait_timeout: float) -> None:
    """Isolate an instance, preserve evidence, revoke credentials, ensure forensic logging; all recorded."""
    if ctx.invoked_subcommand is not None:
        return
    if not stack:
        raise InputError("no --stack given", "pass --stack NAME (e.g. production)")
    if not instance_id:
        raise InputError("no --instance given", "pass the compromised instance, e.g. --instance i-0123456789abcdef0")
    from recovery.runbooks.contain import ContainOptions, contain as run_contain

    opts = ContainOptions(instance_id=instance_id, users=list(users), roles=list(roles), incident_id=incident_id,
                          delete_keys=delete_keys, wait_timeout_s=wait_timeout)  # checks them before anything happens
    outputs = outputs_for(stack, outputs_file, "contain")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    journal = finish_runbook(lambda: run_contain(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter),
                             as_json)
    if journal is not None and not as_json:
        out(f"incident {opts.incident_id} contained; next: `recovery investigate --stack {stack} --incident "
            f"{opts.incident_id}`")


@contain.command("terminate")
@runbook_options
@click.option("--instance", "instance_id", required=True, help="The contained instance.")
@click.option("--incident", "incident_id", required=True, help="Its incident id (evidence must exist).")
def terminate_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, instance_id: str,
                  incident_id: str) -> None:
    """Terminate a contained instance, only once its incident's image and snapshots exist."""
    from recovery.runbooks.contain import check_instance_id, terminate

    check_instance_id(instance_id)
    outputs = outputs_for(stack, outputs_file, "contain")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    finish_runbook(lambda: terminate(outputs, instance_id, incident_id, store, yes=yes, dry_run=dry_run,
                                     reporter=reporter), as_json)


@click.command("investigate")
@stack_options
@click.option("--incident", "incident_id", required=True, help="The incident id.")
@click.option("--since", type=Duration(max_s=90 * 86400), default="24h", show_default=True, help="How far back to look in CloudTrail.")
def investigate(stack: str, outputs_file: str | None, as_json: bool, incident_id: str, since: float) -> None:
    """Add CloudTrail events of the incident's users and instance to its record; write the report."""
    from recovery.runbooks.contain import investigate as run_investigate

    outputs = outputs_for(stack, outputs_file, "contain")
    say: Any = (lambda m: click.echo(m, err=True))
    result = run_investigate(outputs, incident_id, since, say=say)
    if as_json:
        emit_json(result)
    else:
        out(f"{result['events']} event(s) added to {result['record']}")
        out(f"report: {result['report_md']} and {result['report_html']}")
