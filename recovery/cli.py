"""The `recovery` command line. Thin on purpose: the top-level group and its command groups.

Options, rendering and error mapping live in recovery/commands/ (common.py and one module per
area); runbooks live in recovery/runbooks/.
"""

from __future__ import annotations

import signal

import click

from recovery import __version__, knobs
from recovery.commands import backups, cache, contain, drill, failover, history, local, observe, partition, restore, rotate
from recovery.commands.common import Main, setup_logging, terminate


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recovery")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: int) -> None:
    """Carry out the XAI disaster recovery plan against a Pulumi stack's outputs."""
    ctx.obj = {"debug": debug, "verbose": verbose}
    setup_logging(verbose, debug)
    knobs.check_all()  # a bad RECOVERY_* or AWS_ENDPOINT_URL* value stops here, before anything happens
    # systemd stops a unit with SIGTERM: unwind like Ctrl-C, so uploads are aborted and locks released.
    signal.signal(signal.SIGTERM, terminate)


for command in (backups.backup, backups.list_cmd, backups.verify_cmd, backups.offsite, restore.restore, local.local, rotate.rotate, contain.contain, contain.investigate, observe.metrics_cmd, observe.status_cmd, observe.sites_cmd, drill.drill, failover.failover, failover.failback, partition.partition,
                cache.cache, history.runs, history.quarantine):
    main.add_command(command)


if __name__ == "__main__":
    main()
