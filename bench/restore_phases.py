#!/usr/bin/env python3
"""Measure `recovery restore db` on a dump of at least 200 MB, split into download, decompression
and SQL time, for each backup format (gzip, zstd). Not a test: it prints figures.

    .venv/bin/python bench/restore_phases.py [--rows 500000] [--formats gzip,zstd] [--json]

Everything is local and real: a throwaway PostgreSQL 15 cluster seeded with generate_series rows
(recovery.local.postgres_cluster), moto in server mode as S3, the real backup (pg_dump -> compress
-> multipart upload) and the real restore runbook (verify pass, then S3 -> sha256 -> decompress ->
psql --single-transaction into a scratch database, verify, swap). Services are `true`.

The phase split is busy time in the restoring process: time blocked reading the S3 stream
(download), in the decompressor (decompression), and blocked writing into psql plus waiting for
psql to commit (SQL). They do not overlap in this process, but psql works concurrently while the
next chunk downloads, so the SQL share is what psql could not hide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recovery.local.moto_server import MotoServer, provision_site  # noqa: E402
from recovery.local.postgres_cluster import PostgresCluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000, help="blockchain rows (500k ~ 225 MB of plain SQL)")
    ap.add_argument("--formats", default="gzip,zstd")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    password = "bench-" + os.urandom(6).hex()
    results = []
    with MotoServer() as moto, PostgresCluster(password=password) as pg:
        t0 = time.monotonic()
        pg.seed_blockchain(args.rows)
        seed_s = time.monotonic() - t0
        with pg.connect() as c:
            db_size = int(c.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
        outputs = provision_site(moto, db_port=pg.port, db_password=password)
        svc = work / "services.json"
        svc.write_text(json.dumps({"services": [{"name": "xai-node", "stop": "true", "start": "true"}]}))
        os.environ.update(moto.env())
        os.environ.update({"RECOVERY_SERVICES_CONFIG": str(svc), "RECOVERY_JOURNAL_DIR": str(work / "journal")})
        for k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
            os.environ.pop(k, None)

        from recovery.runbook import ConsoleReporter, LocalJournalStore
        from recovery.runbooks.backup import BackupOptions, backup_db
        from recovery.runbooks.restore_db import DbRestoreOptions, restore_db
        from recovery.stack import parse_outputs

        so = parse_outputs("production", outputs)
        print(f"seeded {args.rows} rows in {seed_s:.1f}s; database size {db_size / 1e6:.0f} MB", file=sys.stderr)
        for fmt in args.formats.split(","):
            m = backup_db(so, BackupOptions(fmt=fmt))
            print(f"{fmt}: backup {m.raw_bytes / 1e6:.0f} MB SQL -> {m.stored_bytes / 1e6:.0f} MB in "
                  f"{m.duration_seconds:.1f}s", file=sys.stderr)
            journal, _ = restore_db(so, DbRestoreOptions(backup=m.key, force=True), LocalJournalStore(work / "journal"),
                                    yes=True, reporter=ConsoleReporter(interactive=False))
            assert journal is not None
            steps = {s.name: s for s in journal.steps}
            d = steps["restore-scratch"].detail
            results.append({
                "format": fmt, "rows": args.rows, "dump_mb": round(m.raw_bytes / 1e6, 1),
                "stored_mb": round(m.stored_bytes / 1e6, 1),
                "verify_pass_s": round(steps["verify-backup"].duration_s or 0, 2),
                "download_s": d["download_s"], "decompress_s": d["decompress_s"], "sql_s": d["sql_s"],
                "restore_scratch_s": round(steps["restore-scratch"].duration_s or 0, 2),
                "verify_scratch_s": round(steps["verify-scratch"].duration_s or 0, 2),
                "swap_s": round(steps["swap"].duration_s or 0, 3),
                "total_s": round(sum((s.duration_s or 0) for s in journal.steps), 2),
            })
            with pg.connect("postgres") as c:  # keep only the live database for the next round
                for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE '%%_quarantine_%%'").fetchall():
                    c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        cols = ["format", "dump_mb", "stored_mb", "verify_pass_s", "download_s", "decompress_s", "sql_s",
                "restore_scratch_s", "verify_scratch_s", "swap_s", "total_s"]
        print("  ".join(f"{c:>17}" for c in cols))
        for r in results:
            print("  ".join(f"{r[c]!s:>17}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
