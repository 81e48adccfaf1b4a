"""`recovery failover` and `recovery failback`: the DR plan's scenario 3 as a runbook.

Thin: options -> recovery/runbooks/failover.py. Preflight lines, plan, progress and the summary go
to stderr; `--json` prints the journal (or the dry-run plan with the preflight report) on stdout.
"""

from __future__ import annotations

from typing import Any

import click

from recovery.commands.common import (console_reporter, emit_json, finish_runbook, journal_store_for,
                                      outputs_for, runbook_options)
from recovery.commands.params import DURATION


def _options(f: Any) -> Any:
    f = click.option("--data-dir", type=click.Path(file_okay=False), metavar="DIR",
                     help="The target node's data directory, for restoring its chain data on this host "
                          "(default: the stack's node_data_dir output, which local stacks have).")(f)
    f = click.option("--peer-services-config", type=click.Path(dir_okay=False),
                     help="Service control config of the peer site, to stop and start its writers in a switchover "
                          "(default: the peer stack's services_config output, which local stacks have).")(f)
    f = click.option("--lock-ttl", type=DURATION, default="15m", show_default=True, help="Lease of the S3 lock (renewed while running).")(f)
    f = click.option("--sync-timeout", type=DURATION, default="5m", show_default=True, help="How long to wait for the node to sync.")(f)
    f = click.option("--take-over-stale", is_flag=True, help="Take over an EXPIRED lock left by another run (logged).")(f)
    f = click.option("--detach-fallback", is_flag=True,
                     help="If failover_global_cluster is unavailable, detach the cluster from the global cluster instead.")(f)
    f = click.option("--max-lag", type=DURATION, default="60s", show_default=True, help="Refuse when replication lag is over this.")(f)
    f = click.option("--force", is_flag=True, help="Override the forceable preflight checks (lag, node, chain data).")(f)
    f = click.option("--mode", type=click.Choice(["switchover", "failover"]),
                     help="switchover (planned, no data loss, needs a healthy peer) or failover (unplanned, AllowDataLoss). "
                          "Default: decided by preflight.")(f)
    return runbook_options(f)


def _run(direction: str, stack: str, outputs_file: str | None, as_json: bool, yes: bool, dry_run: bool,
         mode: str | None, force: bool, max_lag: float, detach_fallback: bool, take_over_stale: bool,
         sync_timeout: float, lock_ttl: float, peer_services_config: str | None, data_dir: str | None) -> None:
    from recovery.runbooks.failover import FailoverOptions, run_failover

    outputs = outputs_for(stack, outputs_file, "failover")
    reporter = console_reporter()
    opts = FailoverOptions(direction=direction, mode=mode, force=force, max_lag_s=max_lag,
                           detach_fallback=detach_fallback, take_over_stale=take_over_stale,
                           sync_timeout_s=sync_timeout, lock_ttl_s=int(lock_ttl),
                           peer_services_config=peer_services_config, data_dir=data_dir)
    store = journal_store_for(outputs, reporter)

    def go() -> tuple[Any, Any]:
        journal, plan, _pre = run_failover(outputs, opts, store, yes=yes, dry_run=dry_run, reporter=reporter)
        return journal, plan

    finish_runbook(go, as_json)


@click.command("failover")
@_options
def failover(**kw: Any) -> None:
    """Promote the DR site (--stack production-dr): preflight, lock, promote, repoint, DNS, verify, report."""
    _run("failover", **kw)


@click.command("failback")
@_options
def failback(**kw: Any) -> None:
    """Return to the primary site (--stack production) once it is healthy: a switchover back, DNS restored."""
    _run("failback", **kw)


__all__ = ["failover", "failback", "emit_json"]
