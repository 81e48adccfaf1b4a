"""`recovery backup|list|verify|offsite`: the DR plan's backup jobs and their daily verification."""

from __future__ import annotations

from typing import Any

import click

from recovery.commands.common import (emit_json, human_bytes, human_seconds, interactive, mb, node_data_dir, out,
                                      outputs_for, progress, stack_options)
from recovery.commands.common import table as columns
from recovery.commands.params import check_writable_dir
from recovery.errors import InputError, IntegrityError, VerificationFailed

@click.group()
def backup() -> None:
    """Stream a backup into the stack's bucket (database, chain data or configuration)."""


def _render_manifest(m: Any, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        doc = m.to_json()
        if extra.get("took_over"):
            doc["took_over_stale_lock"] = extra["took_over"]
        if extra.get("aborted_uploads"):
            doc["aborted_open_uploads"] = extra["aborted_uploads"]
        emit_json(doc)
        return
    rate = m.raw_bytes / m.duration_seconds if m.duration_seconds else 0
    detail = ""
    if m.kind == "db":
        detail = f", {m.db_rows} rows, max height {m.db_max_height}, PostgreSQL {m.pg_server_version}"
        if m.db_globals:
            g = m.db_globals
            detail += f", {len(g['roles'])} role and {len(g['properties'])} database statements"
    elif m.file_count is not None:
        detail = f", {m.file_count} files ({mb(m.file_bytes or 0)})"
    out(f"✓ {m.kind} backup s3://{m.bucket}/{m.key}")
    out(f"  {mb(m.raw_bytes)} -> {mb(m.stored_bytes)} {m.format} in {m.duration_seconds:.1f} s "
         f"({human_bytes(rate)}/s){detail}")
    out(f"  sha256 {m.sha256}  SSE-KMS {m.kms_key_id}")


_FORMAT = click.Choice(["gzip", "zstd"])


def _take_over_option(f: Any) -> Any:
    return click.option("--take-over-stale", is_flag=True,
                        help="Take the backup lock from any other holder (logged with its identity); a holder "
                             "that died on this host is taken over without it.")(f)


@backup.command("db")
@stack_options
@click.option("--format", "fmt", type=click.Choice(["gzip", "zstd", "parallel"]), default="gzip", show_default=True,
              help="gzip: plain SQL .sql.gz (the plan's gunzip|psql works); zstd: .sql.zst, faster; parallel: "
                   "per-table zstd COPY parts that `restore db --jobs N` loads at once (README: which to choose).")
@click.option("--level", type=int, help="Compression level: gzip 1..9 (default 1), zstd and parallel 1..19 (default 1).")
@click.option("--workers", type=int, help="Compression threads, 1..64 (default: CPU count).")
@click.option("--jobs", type=int, help="--format parallel: parts dumped at once, 1..16 (default 2).")
@click.option("--dsn", help="PostgreSQL connection string overriding the stack's (PG* env vars also override).")
@click.option("--endpoint", type=click.Choice(["reader", "writer"]), default="reader", show_default=True,
              help="Dump from the cluster's reader endpoint (the dump's long snapshot stays off the writer) or the writer's.")
@_take_over_option
def backup_db_cmd(stack: str, outputs_file: str | None, as_json: bool, fmt: str, level: int | None,
                  workers: int | None, jobs: int | None, dsn: str | None, endpoint: str, take_over_stale: bool) -> None:
    """pg_dump of the chain database -> compression -> S3 multipart (SSE-KMS)."""
    from recovery import notify
    from recovery.backups.take import BackupOptions, backup_db

    # checked here, before the outputs are read, the lock taken or the snapshot exported
    opts = BackupOptions(fmt=fmt, level=level, workers=workers, jobs=jobs, take_over_stale=take_over_stale)
    outputs = outputs_for(stack, outputs_file, "backup")
    with progress(interactive(as_json), "pg_dump") as cb, notify.on_failure(outputs, "backup-failed", "postgresql"):
        opts.on_bytes = cb
        opts.on_total = cb.total if cb is not None else None
        m = backup_db(outputs, opts, dsn=dsn, endpoint=endpoint)
    _render_manifest(m, as_json, opts.extra)


@backup.command("chain")
@stack_options
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="The node's data directory, e.g. /var/lib/xai/blockchain (default for local stacks: the local node's).")
@click.option("--member-prefix", help="Path inside the archive (default: the data dir's absolute path without '/').")
@click.option("--format", "fmt", type=_FORMAT, default="gzip", show_default=True)
@click.option("--level", type=int, help="Compression level: gzip 1..9 (default 1), zstd 1..19 (default 1).")
@_take_over_option
def backup_chain_cmd(stack: str, outputs_file: str | None, as_json: bool, data_dir: str | None,
                     member_prefix: str | None, fmt: str, level: int | None, take_over_stale: bool) -> None:
    """tar.gz of the node's data directory (chain.db copied consistently)."""
    from recovery import notify
    from recovery.backups.take import BackupOptions, backup_chain

    opts = BackupOptions(fmt=fmt, level=level, take_over_stale=take_over_stale)  # checked before anything happens
    outputs = outputs_for(stack, outputs_file, "backup")
    data_dir = node_data_dir(outputs, data_dir)
    with progress(interactive(as_json), "tar") as cb, notify.on_failure(outputs, "backup-failed", "node"):
        opts.on_bytes = cb
        opts.on_total = cb.total if cb is not None else None
        m = backup_chain(outputs, data_dir, opts, member_prefix=member_prefix)
    _render_manifest(m, as_json, opts.extra)


@backup.command("config")
@stack_options
@click.argument("paths", nargs=-1, type=click.Path())
@_take_over_option
def backup_config_cmd(stack: str, outputs_file: str | None, as_json: bool, paths: tuple[str, ...],
                      take_over_stale: bool) -> None:
    """tar.gz of deployment configuration (run on every deployment, and on the config schedule).

    Without PATHS: the `config` paths of the services in the stack's services config (the
    explorer's state, the monitoring's configuration)."""
    from recovery import notify
    from recovery.backups.take import BackupOptions, backup_config
    from recovery.services import ServicesConfig

    outputs = outputs_for(stack, outputs_file, "backup")
    if not paths:
        cfg = ServicesConfig.for_stack(outputs)
        paths = tuple(p for svc in cfg.services for p in svc.config)
        if not paths:
            raise InputError(f"no configuration paths given and no service in {cfg.source} names `config` paths",
                             "pass the files or directories to archive, e.g. `recovery backup config /etc/xai`")
    opts = BackupOptions(take_over_stale=take_over_stale)
    with notify.on_failure(outputs, "backup-failed", "site", backup="config"):
        m = backup_config(outputs, list(paths), opts)
    _render_manifest(m, as_json, opts.extra)


@backup.command("describe")
@stack_options
@click.argument("key")
def backup_describe_cmd(stack: str, outputs_file: str | None, as_json: bool, key: str) -> None:
    """One catalogued backup's manifest, and whether a verification is recorded for it.

    KEY: a key (backups/db/database-....sql.gz), a file name, latest-db, latest-chain, latest-config, or
    latest (the newest of any kind)."""
    from recovery.aws import client
    from recovery.backups.read import resolve_any
    from recovery.catalog import Catalog

    outputs = outputs_for(stack, outputs_file, "restore")  # the role that reads backups to restore them
    e = resolve_any(Catalog(client("s3", outputs.region), outputs.backup_bucket_name), key)
    m, ver = e.manifest, e.verification
    if as_json:
        emit_json({**m.to_json(), "verification": ver})
        return
    level = f", level {m.compression_level}" if m.compression_level is not None else ""
    rows = [("backup", f"s3://{m.bucket}/{m.key}"), ("kind", m.kind),
            ("when", f"{m.started_at} -> {m.ended_at} ({human_seconds(m.duration_seconds)})"),
            ("size", f"{human_bytes(m.raw_bytes)} raw, {human_bytes(m.stored_bytes)} stored"),
            ("format", f"{m.format}{level}" + (f" ({m.compressor})" if m.compressor else "") + f", {m.content}"),
            ("sha256", m.sha256)]
    if m.kind == "db":
        rows.append(("rows", f"{m.db_rows}, max height {m.db_max_height}, PostgreSQL {m.pg_server_version}"))
    elif m.file_count is not None:
        rows.append(("files", f"{m.file_count} ({human_bytes(m.file_bytes)})"))
    if m.parts:  # the parallel format (recovery/backups/parallel_format.py); --json lists each part
        data = [p for p in m.parts if p["section"] == "data"]
        rows.append(("parts", f"{len(m.parts)} parts under {m.key}/: pre-data, {len(data)} data "
                              f"({sum(1 for p in data if p.get('table'))} COPY), post-data"))
    rows += [("source", m.source), ("kms key", m.kms_key_id), ("version", m.version_id or "-")]
    if m.source_bucket:
        rows.append(("written to", f"s3://{m.source_bucket} (this is its replica)"))
    verdict = {True: "✓ yes", False: "✗ FAILED", None: "- never"}[e.verified]
    rows.append(("verified", verdict + (f" at {ver.get('at')}" if ver and ver.get("at") else "")))
    for name, value in rows:
        out(f"{name:<10}  {value}")


@click.command("list")
@stack_options
@click.option("--kind", type=click.Choice(["db", "chain", "config"]), help="Only this kind.")
def list_cmd(stack: str, outputs_file: str | None, as_json: bool, kind: str | None) -> None:
    """Catalogued backups: time, size, age, sha256 prefix, verified."""
    from recovery.reports.listing import list_backups

    rows = list_backups(outputs_for(stack, outputs_file, "restore"), kind)
    if as_json:
        emit_json([r.to_json() for r in rows])
        return
    if not rows:
        out("no backups in the catalogue" + (f" of kind {kind}" if kind else ""))
        return

    def age(minutes: float) -> str:
        return f"{minutes:.0f}m" if minutes < 120 else f"{minutes / 60:.1f}h" if minutes < 2880 else f"{minutes / 1440:.1f}d"

    table = [("KIND", "TIME", "SIZE", "AGE", "SHA256", "VERIFIED", "NAME")]
    for r in rows:
        ver = {True: "✓ yes", False: "✗ FAILED", None: "- never"}[r.verified]
        table.append((r.kind, r.time[:19].replace("T", " ") + "Z", mb(r.stored_bytes), age(r.age_minutes),
                      r.sha256[:12], ver, r.name))
    if interactive(as_json):
        from rich.console import Console
        from rich.table import Table

        t = Table(*table[0])
        for row in table[1:]:
            t.add_row(*row)
        Console().print(t)
        return
    columns(table)


@click.command("verify")
@stack_options
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["db", "chain", "config"]),
              help="Only these kinds (repeatable; default all).")
@click.option("--max-age-db", type=click.FloatRange(min=0, max=525600), help="Max age of the latest db backup in minutes (default: interval + half an interval, as status).")
@click.option("--max-age-chain", type=click.FloatRange(min=0, max=525600), help="Max age of the latest chain backup in minutes (default: interval + half an interval, as status).")
@click.option("--no-record", is_flag=True, help="Do not record this verification in the bucket.")
def verify_cmd(stack: str, outputs_file: str | None, as_json: bool, kinds: tuple[str, ...],
               max_age_db: float | None, max_age_chain: float | None, no_record: bool) -> None:
    """Check the latest backup of each kind and the bucket; exit 13 if any check fails."""
    from recovery.catalog import KINDS
    from recovery.backups.verify import verify
    from recovery.notify_findings import verification_findings

    outputs = outputs_for(stack, outputs_file, "backup")
    ages = {k: v for k, v in (("db", max_age_db), ("chain", max_age_chain)) if v is not None}

    def line(c: Any) -> None:
        if not as_json:
            out(f"{c.mark} {c.scope:<6} {c.name:<11} {c.detail}")

    report = verify(outputs, kinds=kinds or KINDS, max_age_minutes=ages, record=not no_record, on_check=line)
    verification_findings(outputs, report.checks)
    if as_json:
        emit_json(report.to_json())
    failed = [c for c in report.checks if c.ok is False]
    if failed:
        if not as_json:
            out(f"✗ verification FAILED: {len(failed)} of {len(report.checks)} checks")
        raise VerificationFailed(f"{len(failed)} verification check(s) failed on stack '{stack}' "
                                 f"(first: {failed[0].scope} {failed[0].name})",
                                 "read the ✗ lines above; take a new backup if the latest one is bad")
    if not as_json:
        out(f"✓ all {len(report.checks)} checks passed")


@click.group()
def offsite() -> None:
    """Off-site copies of the backups (the plan's on-premise location)."""


@offsite.command("sync")
@stack_options
@click.option("--dest", required=True, type=click.Path(file_okay=False), help="Local directory, e.g. /var/backups/off-site.")
@click.option("--retention-days", type=click.IntRange(1, 36500), help="Prune copies older than this (default: the stack's offsite_retention_days).")
def offsite_sync_cmd(stack: str, outputs_file: str | None, as_json: bool, dest: str, retention_days: int | None) -> None:
    """Copy new verified backups to DEST (sha256 rechecked, atomic), prune old ones."""
    from recovery.backups.offsite import offsite_sync

    check_writable_dir(dest, "--dest")
    outputs = outputs_for(stack, outputs_file, "backup")

    def line(i: Any) -> None:
        if not as_json and i.action != "present":
            mark = {"copied": "✓", "failed": "✗"}.get(i.action, "-")
            out(f"{mark} {i.action:<8} {i.name}" + (f"  {mb(i.bytes)}" if i.bytes else "") + (f"  {i.detail}" if i.detail else ""))

    report = offsite_sync(outputs, dest, retention_days=retention_days, on_item=line)
    if as_json:
        emit_json(report.to_json())
    else:
        for i in report.items:
            if i.action == "pruned":
                out(f"- pruned   {i.name}  {i.detail}")
        out(f"{'✓' if report.ok else '✗'} {dest}: {report.count('copied')} copied, {report.count('present')} already "
             f"present, {report.count('pruned')} pruned, {report.count('failed')} failed")
    if not report.ok:
        first = next(i for i in report.items if i.action == "failed")
        raise IntegrityError(f"offsite sync failed for {report.count('failed')} backup(s) (first: {first.name}: {first.detail})",
                             "run `recovery verify`; failed copies were not written")
