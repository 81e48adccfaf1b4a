"""`recovery drill db|chain|full`: rehearse the DR plan, measure RTO/RPO, keep records and reports.

Progress goes to stderr; the RTO/RPO table and the report paths (or, with --json, the record) to
stdout. Exit codes: 0 the drill passed; 21 it ran but failed (the record and report say why);
20 `drill full` on a non-local stack; otherwise the usual RecoveryError codes.
"""

from __future__ import annotations

from typing import Any

import click

from recovery.commands.common import emit_json, out, outputs_for, stack_options
from recovery.commands.params import check_writable_dir
from recovery.errors import DrillFailedError

_REPORT_DIR = click.option("--report-dir", type=click.Path(file_okay=False), default=".recovery/reports",
                           show_default=True, envvar="RECOVERY_REPORT_DIR",
                           help="Where the Markdown and HTML reports go [env RECOVERY_REPORT_DIR].")


@click.group()
def drill() -> None:
    """DR drills: restore tests (db, chain) and the full exercise on the local environment (full)."""


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def table_lines(record: dict[str, Any]) -> list[str]:
    from recovery.drills.report import _verdict, objective_rows

    rows = [("scenario", "component", "RTO", "target", "", "RPO", "target", "", "result")]
    for r in objective_rows(record):
        rows.append((r["scenario"], r["component"], r["rto"], r["rto_target"], _verdict(r["rto_ok"]), r["rpo"],
                     r["rpo_target"], _verdict(r["rpo_ok"]), r["result"]))
    return _columns(rows)


def component_lines(record: dict[str, Any]) -> list[str]:
    from recovery.drills.report import component_rows

    rows = [("component", "worst RTO", "target", "worst RPO", "target", "result")]
    rows += [(r["component"], r["rto"], r["rto_target"], r["rpo"], r["rpo_target"], r["result"])
             for r in component_rows(record)]
    return _columns(rows)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _finish(result: Any, as_json: bool) -> None:
    rec = result.record
    if as_json:
        emit_json({**rec, "reports": result.reports, "record_error": result.record_error})
    else:
        verdict = "PASSED" if result.passed else "FAILED"
        out(f"drill {rec['drill']} on stack {rec['stack']}: {verdict} "
            f"({rec['ended_at'] - rec['started_at']:.0f}s, {len(rec['scenarios'])} scenario(s))")
        out("")
        for line in table_lines(rec):
            out(line)
        if rec["drill"] == "full":
            out("")
            for line in component_lines(rec):
                out(line)
        out("")
        for sc in rec["scenarios"]:
            if sc.get("error"):
                out(f"{sc['name']}: {sc['error']}")
        out(f"record  s3://{result.record_bucket}/{rec['record_key']}" if not result.record_error
            else f"record  NOT written: {result.record_error}")
        out(f"report  {result.reports['html']}")
        out(f"        {result.reports['markdown']}")
    if not result.passed:
        failed = [s["name"] for s in rec["scenarios"] if s.get("passed") is False] or ["no scenario ran"]
        raise DrillFailedError(f"drill {rec['drill']} on {rec['stack']} failed: {', '.join(failed)}",
                               f"see {result.reports['html']}")


def _run(kind: str, stack: str, outputs_file: str | None, as_json: bool, report_dir: str, **params: Any) -> None:
    from recovery.drills.run import run_drill, specs_for

    specs_for(kind, stack)  # refuse before touching anything (drill full on a real stack)
    check_writable_dir(report_dir, "--report-dir")  # not after the drill has run for minutes
    outputs = outputs_for(stack, outputs_file, "backup")
    result = run_drill(kind, outputs, report_dir=report_dir, say=_say, **params)
    _finish(result, as_json)


@drill.command("db")
@stack_options
@_REPORT_DIR
@click.option("--backup", default="latest", show_default=True, help="Backup key or file name, or 'latest'.")
@click.option("--fresh", is_flag=True, help="Take a new database backup first and test that one.")
@click.option("--dsn", help="PostgreSQL connection string overriding the stack's (PG* env vars also override).")
def drill_db_cmd(stack: str, outputs_file: str | None, as_json: bool, report_dir: str, backup: str, fresh: bool,
                 dsn: str | None) -> None:
    """Monthly restore test: a backup into a scratch database xai_drill_<ts>, checked, then dropped."""
    _run("db", stack, outputs_file, as_json, report_dir, backup=backup, fresh=fresh, dsn=dsn)


@drill.command("chain")
@stack_options
@_REPORT_DIR
@click.option("--backup", default="latest", show_default=True, help="Backup key or file name, or 'latest'.")
@click.option("--fresh", is_flag=True, help="Take a new chain backup of --data-dir first and test that one.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="The node's data dir (only with --fresh).")
def drill_chain_cmd(stack: str, outputs_file: str | None, as_json: bool, report_dir: str, backup: str, fresh: bool,
                    data_dir: str | None) -> None:
    """Restore test: a chain backup into a temp dir, chain.db and hash chain checked, then removed."""
    _run("chain", stack, outputs_file, as_json, report_dir, backup=backup, fresh=fresh, data_dir=data_dir)


@drill.command("full")
@stack_options
@_REPORT_DIR
@click.option("--scenario", "only", multiple=True, help="Run only this scenario (repeatable).")
def drill_full_cmd(stack: str, outputs_file: str | None, as_json: bool, report_dir: str, only: tuple[str, ...]) -> None:
    """The annual exercise on the local environment: inject each disaster, recover, measure RTO/RPO."""
    _run("full", stack, outputs_file, as_json, report_dir, only=list(only) or None)


@drill.command("failover")
@stack_options
@_REPORT_DIR
def drill_failover_cmd(stack: str, outputs_file: str | None, as_json: bool, report_dir: str) -> None:
    """The quarterly exercise on the local environment: failover, verification, failback, RTO/RPO record."""
    _run("failover", stack, outputs_file, as_json, report_dir)
