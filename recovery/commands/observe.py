"""`recovery metrics` and `recovery status`: how DR is doing, for Prometheus and for the on-call engineer."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from recovery import redact
from recovery.commands.common import emit_json, local_node_url, out, outputs_for, stack_options
from recovery.commands.params import URL, check_writable_dir
from recovery.errors import InputError, StatusRedError


@click.command("metrics")
@stack_options
@click.option("--format", "fmt", type=click.Choice(["prometheus", "json"]), default="prometheus", show_default=True,
              help="What to print on stdout (--json is the same as --format json).")
@click.option("--textfile", type=click.Path(dir_okay=False),
              help="Also write the Prometheus exposition here atomically, for node_exporter's textfile collector "
                   "(e.g. /var/lib/node_exporter/textfile_collector/xai_dr.prom); stdout then gets a one-line summary.")
def metrics_cmd(stack: str, outputs_file: str | None, as_json: bool, fmt: str, textfile: str | None) -> None:
    """Backup/restore/drill success rates, backup ages, recovery times and RPO/RTO compliance."""
    from recovery.reports.metrics import check_textfile, collect, render_prometheus, write_textfile

    if textfile:  # before the collection's AWS calls, not after
        check_textfile(textfile)
        check_writable_dir(os.path.dirname(os.path.abspath(textfile)), "--textfile's directory",
                           "check permissions of the textfile directory")
    outputs = outputs_for(stack, outputs_file, "backup")
    report = collect(outputs)
    as_json = as_json or fmt == "json"
    if textfile:
        path = write_textfile(textfile, render_prometheus(report.samples))
        if as_json:
            emit_json({**report.to_json(), "textfile": str(path)})
        else:
            out(f"wrote {len(report.samples)} samples for stack '{stack}' to {path}")
        return
    if as_json:
        emit_json(report.to_json())
    elif sys.stdout.isatty():  # a person: a dozen lines; scrapers and pipes get the exposition
        from recovery.reports.metrics_summary import summary_lines

        for line in summary_lines(report.to_json()):
            out(line)
    else:
        click.echo(render_prometheus(report.samples), nl=False)


_STYLE = {"green": "green", "yellow": "yellow", "red": "bold red", "skip": "dim"}


@click.command("status")
@stack_options
@click.option("--reference", "reference_url", type=URL, envvar="RECOVERY_REFERENCE_URL",
              help="A reference node's API to compare heights with, e.g. https://mainnet-rpc.example.com "
                   "[env RECOVERY_REFERENCE_URL].")
@click.option("--node-url", type=URL, help="The node API to check [default: the stack's local node, else http://localhost:8080].")
@click.option("--dsn", help="PostgreSQL connection string overriding the stack's (PG* env vars also override).")
@click.option("--max-lag", type=click.IntRange(min=0), default=5, show_default=True, help="Blocks behind the reference before yellow.")
@click.option("--red-lag", type=click.IntRange(min=1), default=50, show_default=True, help="Blocks behind the reference before red.")
def status_cmd(stack: str, outputs_file: str | None, as_json: bool, reference_url: str | None, node_url: str | None,
               dsn: str | None, max_lag: int, red_lag: int) -> None:
    """The DR plan's detection checks in one view; exit 29 if any line is red."""
    from recovery.notify_findings import status_findings
    from recovery.reports.status import StatusOptions, run_status

    if red_lag <= max_lag:
        raise InputError(f"--red-lag {red_lag} is not above --max-lag {max_lag}",
                         "pass a --red-lag greater than --max-lag (defaults 50 and 5)")
    outputs = outputs_for(stack, outputs_file, "backup")
    opts = StatusOptions(node_url=node_url or local_node_url(outputs), reference_url=reference_url, dsn=dsn,
                         max_lag=max_lag, red_lag=red_lag, local=outputs.local, role=outputs.role)
    tty = not as_json and sys.stdout.isatty()
    report = run_status(outputs, opts)
    status_findings(outputs, report.lines)
    if as_json:
        emit_json(report.to_json())
    elif tty:
        _render_rich(report)
    else:
        for ln in report.lines:
            out(f"{ln.mark} {ln.component:<11} {ln.check:<9} {ln.detail}")
        out(f"{'✗' if report.red else '!' if report.level == 'yellow' else '✓'} stack '{stack}': {report.level}"
            f" ({len(report.red)} red of {len(report.lines)} checks)")
    if report.red:
        names = ", ".join(f"{ln.component} {ln.check}" for ln in report.red)
        raise StatusRedError(f"{len(report.red)} red check(s) on stack '{stack}': {names}",
                             "read the ✗ lines; docs/observability.md says which plan scenario each one calls for")


def _render_rich(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"DR status of stack '{report.stack}' at {report.checked_at[:19]}Z", show_lines=False)
    for col in ("", "component", "check", "detail"):
        table.add_column(col, overflow="fold")
    for ln in report.lines:
        style = _STYLE[ln.level]
        table.add_row(Text(ln.mark, style=style), ln.component, ln.check, Text(redact.scrub(ln.detail), style=style))
    console = Console()
    console.print(table)
    console.print(Text(f"overall: {report.level}", style=_STYLE[report.level]))


@click.command("sites")
@stack_options
def sites_cmd(stack: str, outputs_file: str | None, as_json: bool) -> None:
    """Both sites at a glance: the writer, each database's role and lag, nodes, DNS, backups, the failover lock."""
    from recovery.reports.sites import render, sites_view

    outputs = outputs_for(stack, outputs_file, "failover")
    view = sites_view(outputs)
    if as_json:
        emit_json(view.to_json())
        return
    for line in render(view):
        out(line)
