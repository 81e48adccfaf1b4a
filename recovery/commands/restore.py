"""`recovery restore db|pitr|snapshot|chain|config`: the DR plan's scenarios 1 and 2, and containment's
"redeploy from known-good state", as runbooks.

Thin: parse options, build the runbook, hand it to the engine with a ConsoleReporter (plan,
progress and summary on stderr), print the journal (or the dry-run plan) with --json on stdout.
Errors propagate to `recovery.commands.common.Main`, which prints one line and exits with the error's code.
"""

from __future__ import annotations

import click

from recovery.commands.common import (console_reporter, finish_runbook, journal_store_for, local_node_url,
                                      node_data_dir, out, outputs_for, runbook_options)
from recovery.commands.params import DURATION, URL


@click.group()
def restore() -> None:
    """Restore the database (from a dump, to a point in time or from a snapshot), the node's chain data, or configuration."""


@restore.command("db")
@runbook_options
@click.option("--backup", default="latest", show_default=True, help="Backup key or file name, or 'latest'.")
@click.option("--target-db", help="Database to replace (default: the stack's db_name).")
@click.option("--no-keep-old", is_flag=True, help="Drop the replaced database instead of quarantining it.")
@click.option("--force", is_flag=True, help="Replace a target database that holds tables (it is quarantined).")
@click.option("--dsn", help="PostgreSQL connection string overriding the stack's (PG* env vars also override).")
@click.option("--reindex", is_flag=True, help="REINDEX DATABASE the restored database before the services start "
                                              "(the plan's step when corruption was detected).")
@click.option("--jobs", type=int, default=None,
              help="Connections loading a --format parallel backup at once, 1..16, default 2 (about one per core "
                   "of the database server); other formats load on one.")
def restore_db_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, backup: str,
                   target_db: str | None, no_keep_old: bool, force: bool, dsn: str | None, reindex: bool,
                   jobs: int | None) -> None:
    """Restore a database dump into a scratch database, verify it, swap it in by rename."""
    from recovery.runbooks.restore_db import DbRestoreOptions, restore_db

    opts = DbRestoreOptions(backup=backup, target_db=target_db, keep_old=not no_keep_old, force=force, dsn=dsn,
                            reindex=reindex, jobs=jobs)
    outputs = outputs_for(stack, outputs_file, "restore")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    finish_runbook(lambda: restore_db(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter), as_json)


@restore.command("chain")
@runbook_options
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="The node's data directory, e.g. /var/lib/xai/blockchain (default for local stacks: the local node's).")
@click.option("--backup", default="latest", show_default=True, help="Backup key or file name, or 'latest'.")
@click.option("--owner", help="USER:GROUP to chown the restored data to, as root [default xai:xai as in the plan; "
                             "local stacks: unchanged].")
@click.option("--archive-current", is_flag=True, help="First upload the current data dir to s3://BUCKET/quarantine/chain/.")
@click.option("--node-url", type=URL, help="The node's API [default http://localhost:8080, as in the plan; local stacks: the local node].")
@click.option("--sync-timeout", type=DURATION, default="15m", show_default=True, help="How long to wait for the node to sync.")
def restore_chain_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool,
                      data_dir: str | None, backup: str, owner: str | None, archive_current: bool, node_url: str | None,
                      sync_timeout: float) -> None:
    """Restore the node's data directory from a chain backup; the current one is quarantined."""
    from recovery.runbooks.restore_chain import ChainRestoreOptions, default_owner, restore_chain

    outputs = outputs_for(stack, outputs_file, "restore")
    reporter = console_reporter()
    opts = ChainRestoreOptions(data_dir=node_data_dir(outputs, data_dir), backup=backup,
                               owner=owner if owner is not None else default_owner(outputs),
                               archive_current=archive_current, node_url=node_url or local_node_url(outputs),
                               sync_timeout_s=sync_timeout)
    store = journal_store_for(outputs, reporter)
    finish_runbook(lambda: restore_chain(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter), as_json)


@restore.command("pitr")
@runbook_options
@click.option("--to-time", required=True, help="UTC time to restore to, ISO 8601 (e.g. 2026-11-25T17:00:00Z).")
@click.option("--new-cluster", help="Identifier of the new cluster (default: <source>-pitr-<time>).")
@click.option("--instance-class", help="Instance class of the new cluster's instance (default: the source's).")
@click.option("--wait-timeout", type=DURATION, default="60m", show_default=True, help="How long to wait for the new cluster.")
@click.option("--cutover", is_flag=True, help="Then verify the new cluster and repoint the clients to it: stops and "
              "starts the services, rewrites the DB secret's host/port and the endpoints parameter.")
def restore_pitr_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, to_time: str,
                     new_cluster: str | None, instance_class: str | None, wait_timeout: float, cutover: bool) -> None:
    """Aurora point-in-time restore into a NEW cluster; the source cluster is never modified."""
    from recovery.runbooks.restore_pitr import PitrOptions, fmt, next_steps, parse_time, restore_pitr

    opts = PitrOptions(to_time=parse_time(to_time), new_cluster=new_cluster, instance_class=instance_class,
                       wait_timeout_s=wait_timeout, cutover=cutover)  # checks them before anything happens
    outputs = outputs_for(stack, outputs_file, "restore")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    journal = finish_runbook(lambda: restore_pitr(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter), as_json)
    if journal is not None and not as_json:
        for line in next_steps(outputs, journal, fmt(opts.to_time)):
            out(line)


@restore.command("snapshot")
@runbook_options
@click.option("--snapshot", default="latest", show_default=True,
              help="Cluster snapshot identifier or ARN (an AWS Backup recovery point's ARN), or 'latest'.")
@click.option("--new-cluster", help="Identifier of the new cluster (default: <source>-snap-<snapshot time>).")
@click.option("--instance-class", help="Instance class of the new cluster's instance (default: the source's).")
@click.option("--wait-timeout", type=DURATION, default="60m", show_default=True, help="How long to wait for the new cluster.")
@click.option("--cutover", is_flag=True, help="Then verify the new cluster and repoint the clients to it: stops and "
              "starts the services, rewrites the DB secret's host/port and the endpoints parameter.")
def restore_snapshot_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, snapshot: str,
                         new_cluster: str | None, instance_class: str | None, wait_timeout: float, cutover: bool) -> None:
    """Restore an Aurora cluster snapshot into a NEW cluster; the source cluster is never modified."""
    from recovery.runbooks.restore_snapshot import SnapshotOptions, next_steps, restore_snapshot

    opts = SnapshotOptions(snapshot=snapshot, new_cluster=new_cluster, instance_class=instance_class,
                           wait_timeout_s=wait_timeout, cutover=cutover)  # checks them before anything happens
    outputs = outputs_for(stack, outputs_file, "restore")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    journal = finish_runbook(lambda: restore_snapshot(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter),
                             as_json)
    if journal is not None and not as_json:
        for line in next_steps(outputs, journal):
            out(line)


@restore.command("config")
@runbook_options
@click.option("--backup", default="latest", show_default=True, help="Backup key or file name, or 'latest'.")
@click.option("--path", "paths", multiple=True, help="Restore only this path (a path the backup holds, or one inside "
                                                     "it); repeatable [default: every path in the backup].")
@click.option("--restart", multiple=True, help="Stop then start this service after the swap (a name from the "
                                              "services config); repeatable, in order.")
def restore_config_cmd(stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool, backup: str,
                       paths: tuple[str, ...], restart: tuple[str, ...]) -> None:
    """Put configuration files back from a `backup config` archive; what they replace is quarantined."""
    from recovery.runbooks.restore_config import ConfigRestoreOptions, kept, restore_config

    opts = ConfigRestoreOptions(backup=backup, paths=paths, restart=restart)
    outputs = outputs_for(stack, outputs_file, "restore")
    reporter = console_reporter()
    store = journal_store_for(outputs, reporter)
    journal = finish_runbook(lambda: restore_config(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter),
                             as_json)
    if not as_json:
        for line in kept(journal):
            out(line)
