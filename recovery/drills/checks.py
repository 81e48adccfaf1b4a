"""Restore tests (`drill db`, `drill chain`) and the real checks the drill scenarios detect and verify with.

These are not registered scenarios (they inject nothing); `recovery.drills.run` runs them through
the same `DrillRun` machinery so their records and reports have the same shape. Their "RTO" is the
time to restore and verify the backup (no disaster was detected: the clock starts when the restore
starts); the backup's age is recorded in ``extra`` but not held to the RPO objective (a monthly
restore test checks restorability; `drill full` measures RPO).

The chain check (`verify_chain_file`) is the simulated node's chain format (recovery/local/chain.py),
the one format of chain.db this project defines; the drill imports it from there on purpose.
"""

from __future__ import annotations

import shutil
import sqlite3
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from recovery import postgres
from recovery.aws import acting_as, client
from recovery.backups.read import BackupStream, resolve_backup, verify_backup
from recovery.backups.take import backup_chain, backup_db
from recovery.catalog import Catalog, parse_iso
from recovery.drills.base import DrillRun, ScenarioSpec
from recovery.errors import DeadlineError, InputError, IntegrityError
from recovery.local.chain import verify_chain_file
from recovery.runbooks.restore_chain import extract_tar, sqlite_check
from recovery.backups.parallel_format import DEFAULT_JOBS
from recovery.runbooks.parallel_load import load_parallel
from recovery.runbooks.restore_db import Server, psql_into

T = TypeVar("T")


class NotYet(Exception):
    """Raised by a ``wait_for`` probe to say why the condition does not hold yet (shown on timeout)."""


# ------------------------------------------------------------------------------------- helpers


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.2) -> T:
    """Call ``probe`` until it returns something other than None/False; DeadlineError after timeout."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while True:
        try:
            got = probe()
            if got is not None and got is not False:
                return got
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last reason
            last_exc = exc
        if time.monotonic() >= deadline:
            why = f" (last seen: {last_exc})" if last_exc else ""
            raise DeadlineError(f"{what} did not happen within {timeout_s:g}s{why}", "see the drill report")
        time.sleep(interval_s)


def db_server(outputs: Any, dsn: str | None = None) -> Any:
    return Server(postgres.resolve(outputs, dsn))


def db_health(server: Any, dbname: str) -> dict[str, Any]:
    """The integrity of the ``blockchain`` table: rows, max(height), missing heights, broken hash links.

    A table indexed from a chain holds heights 0..max, each row's prev_hash equal to the hash of the
    row below. ``problems`` is empty when that holds.
    """
    with server.connect(dbname) as c:
        rows, top, low = c.execute("SELECT count(*), max(height), min(height) FROM blockchain").fetchone()
        broken = c.execute(
            "SELECT count(*), min(height) FROM (SELECT height, prev_hash, lag(hash) OVER w AS below, "
            "lag(height) OVER w AS below_h FROM blockchain WINDOW w AS (ORDER BY height)) t "
            "WHERE below_h = height - 1 AND prev_hash <> below").fetchone()
        tip_time = None
        if top is not None:
            r = c.execute('SELECT extract(epoch FROM "timestamp") FROM blockchain WHERE height = %s', (top,)).fetchone()
            tip_time = float(r[0]) if r else None
    rows = int(rows)
    top = None if top is None else int(top)
    expected = 0 if top is None else top - int(low) + 1
    problems = []
    if top is not None and int(low) != 0:
        problems.append(f"heights below {low} are missing")
    if rows != expected:
        problems.append(f"{expected - rows} of {expected} rows missing (count {rows}, max(height) {top})")
    if broken[0]:
        problems.append(f"{broken[0]} broken hash links (first at height {broken[1]})")
    return {"rows": rows, "max_height": top, "tip_time": tip_time, "broken_links": int(broken[0]),
            "problems": problems}


def block_time_db(server: Any, dbname: str, height: int) -> float | None:
    with server.connect(dbname) as c:
        r = c.execute('SELECT extract(epoch FROM "timestamp") FROM blockchain WHERE height = %s', (height,)).fetchone()
    return None if r is None else float(r[0])


def chain_tip(path: Path) -> tuple[int, float | None, str | None]:
    """(max height, its timestamp, its hash) of a chain.db, read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        r = conn.execute("SELECT height, timestamp, hash FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return (-1, None, None) if r is None else (int(r[0]), float(r[1]), str(r[2]))


def chain_block(path: Path, height: int) -> tuple[float, str] | None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        r = conn.execute("SELECT timestamp, hash FROM blocks WHERE height = ?", (height,)).fetchone()
    finally:
        conn.close()
    return None if r is None else (float(r[0]), str(r[1]))


def _iso_epoch(s: str) -> float:
    return parse_iso(s).timestamp()


# ------------------------------------------------------------------------------------- drill db


def drill_db(d: DrillRun) -> None:
    """Monthly database restore test into a scratch database on the target server."""
    o = d.outputs
    dsn = d.params.get("dsn")
    s3 = client("s3", o.region)
    cat = Catalog(s3, o.backup_bucket_name)
    if d.params.get("fresh"):
        with d.step("backup") as st, acting_as(o, "backup"):
            m = backup_db(o, dsn=dsn)
            st.detail.update(key=m.key, rows=m.db_rows, max_height=m.db_max_height)
        e = cat.get(m.key)
    else:
        with d.step("choose-backup") as st:
            e = resolve_backup(cat, "db", d.params.get("backup") or "latest")
            st.detail.update(key=e.manifest.key, rows=e.manifest.db_rows, max_height=e.manifest.db_max_height)
    m = e.manifest
    age = time.time() - _iso_epoch(m.started_at)
    d.extra.update(backup=m.key, backup_started_at=m.started_at, backup_age_seconds=round(age, 1),
                   manifest_rows=m.db_rows, manifest_max_height=m.db_max_height)
    server = db_server(o, dsn)
    scratch = f"xai_drill_{datetime.now(timezone.utc).strftime('%Y%m%dt%H%M%Sz')}_{int(time.time() * 1000) % 1000:03d}"
    d.extra["scratch_database"] = scratch
    d.detected(f"scheduled restore test of {m.name} (no disaster; the clock runs from here)")
    with d.step("verify-backup") as st:
        st.detail.update(verify_backup(s3, e))
    with d.step("restore-scratch") as st:
        d.record_created("database", scratch)  # before it exists: a SIGKILL leaves it to the sweep
        d.cleanup(lambda: server.drop(scratch))
        server.create(scratch)
        if m.format == "parallel":  # parts loaded on DEFAULT_JOBS connections, verified while they load
            loaded = load_parallel(server, scratch, s3, m, DEFAULT_JOBS, psql_into=psql_into)
        else:
            loaded = psql_into(server, scratch, BackupStream(s3, m, progress=d.say))
        st.detail.update(scratch=scratch, **loaded)
    with d.step("verify-scratch") as st:
        rows, height = server.blockchain_stats(scratch)
        st.detail.update(rows=rows, max_height=height)
        if (rows, height) != (m.db_rows, m.db_max_height):
            raise IntegrityError(f"the restored copy has {rows} rows, max(height) {height}; the manifest says "
                                 f"{m.db_rows} rows, max(height) {m.db_max_height}", "the backup is not restorable as is")
    d.recovered()
    with d.step("drop-scratch") as st:
        server.drop(scratch)
        st.detail.update(dropped=scratch)
    try:  # read-only: how far the live database is ahead of the backup
        live = server.blockchain_stats(server.cp.params.get("dbname") or o.db_name)
        d.extra.update(live_rows=live[0], live_max_height=live[1])
    except Exception:  # noqa: BLE001 - informative only
        pass


# ------------------------------------------------------------------------------------- drill chain


def drill_chain(d: DrillRun) -> None:
    """Restore a chain backup into a temp dir, check chain.db and the hash chain, clean up."""
    o = d.outputs
    s3 = client("s3", o.region)
    cat = Catalog(s3, o.backup_bucket_name)
    if d.params.get("fresh"):
        with d.step("backup") as st:
            data_dir = d.params.get("data_dir") or o.node_data_dir
            if not data_dir:
                raise InputError("no --data-dir to back up", "pass the node's data directory, or drop --fresh")
            with acting_as(o, "backup"):
                m = backup_chain(o, data_dir)
            st.detail.update(key=m.key, files=m.file_count)
        e = cat.get(m.key)
    else:
        with d.step("choose-backup") as st:
            e = resolve_backup(cat, "chain", d.params.get("backup") or "latest")
            st.detail.update(key=e.manifest.key, files=e.manifest.file_count)
    m = e.manifest
    d.extra.update(backup=m.key, backup_started_at=m.started_at,
                   backup_age_seconds=round(time.time() - _iso_epoch(m.started_at), 1))
    d.detected(f"scheduled restore test of {m.name} (no disaster; the clock runs from here)")
    with d.step("verify-backup") as st:
        st.detail.update(verify_backup(s3, e))
    dest = d.work_dir / "restored-chain"
    d.cleanup(lambda: shutil.rmtree(dest, ignore_errors=True))
    with d.step("extract") as st:
        try:
            st.detail.update(extract_tar(BackupStream(s3, m, progress=d.say), dest))
        except tarfile.TarError as exc:
            raise IntegrityError(f"{m.name} is unreadable: {exc}", "take a new chain backup") from None
        if m.file_count is not None and st.detail["files"] != m.file_count:
            raise IntegrityError(f"extracted {st.detail['files']} files, the manifest says {m.file_count}",
                                 "the backup is incomplete")
    with d.step("check-chain-db") as st:
        st.detail.update(sqlite_check(dest / "chain.db"))
    with d.step("verify-hash-chain") as st:
        v = verify_chain_file(dest / "chain.db")
        st.detail.update(is_valid=v.is_valid, checked_blocks=v.checked_blocks, block_height=v.block_height,
                         reason=v.reason)
        if not v.is_valid:
            raise IntegrityError(f"the restored chain fails verification: {v.reason}", "the backup is not usable")
    d.extra.update(restored_height=v.block_height)
    d.recovered()
    with d.step("clean-up") as st:
        shutil.rmtree(dest)
        st.detail.update(removed=str(dest))


DB_SPEC = ScenarioSpec("db-restore-test", "postgresql",
                       "monthly restore test: latest database backup into a scratch database, checked against "
                       "its manifest, then dropped (the stack's database is never written)", 0, drill_db,
                       local_only=False)
CHAIN_SPEC = ScenarioSpec("chain-restore-test", "node",
                          "restore test: latest chain backup into a temp directory, chain.db integrity and "
                          "hash chain checked, then removed", 0, drill_chain, local_only=False)
