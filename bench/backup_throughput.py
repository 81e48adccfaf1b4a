#!/usr/bin/env python3
"""Quick throughput check of `recovery backup db` per format, and of restoring what it wrote.

Not a test and not the full harness of issue 8: one machine, a throwaway PostgreSQL 15 and an
in-process moto server, N runs each, median reported. Compares with the plan's pipeline
(`pg_dump | gzip -6 > f; aws s3 cp`) and with the limit (`pg_dump > /dev/null`).

    .venv/bin/python bench/backup_throughput.py [--rows 560000] [--runs 2] [--json out.json]

Peak RSS is that of the `recovery` process (GNU time's "Maximum resident set size").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recovery.local.moto_server import MotoServer, provision_site  # noqa: E402
from recovery.local.postgres_cluster import PostgresCluster  # noqa: E402


def timed(cmd: str | list[str], env: dict[str, str], shell: bool = False) -> tuple[float, str, str, int]:
    """(wall seconds, stdout, stderr, peak RSS KB of the measured command via GNU time)."""
    argv = ["/usr/bin/time", "-v"] + (["sh", "-c", cmd] if shell else list(cmd))  # type: ignore[arg-type]
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{p.stderr[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return wall, p.stdout, p.stderr, int(m.group(1)) if m else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=560_000, help="blockchain rows (560k ~ 250 MB plain SQL)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xai-bench-"))
    results: dict[str, list[dict[str, float]]] = {}
    with PostgresCluster(password="bench-pw") as pg, MotoServer() as moto:
        t = time.perf_counter()
        pg.seed_blockchain(args.rows)
        print(f"seeded {args.rows} rows in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        outputs = provision_site(moto, db_port=pg.port, db_password=pg.password)
        (work / "outputs.json").write_text(json.dumps(outputs))
        env = {**os.environ, **moto.env()}
        pgenv = {**env, **pg.env(), "PGDATABASE": pg.dbname}
        s3 = moto.client("s3")

        wall, _, _, _ = timed("pg_dump > /dev/null", pgenv, shell=True)
        dump_bytes = int(subprocess.run("pg_dump | wc -c", shell=True, env=pgenv, capture_output=True, text=True).stdout)
        mb = dump_bytes / 1e6
        print(f"plain dump: {mb:.0f} MB; pg_dump > /dev/null {wall:.2f}s", file=sys.stderr)

        def record(name: str, **v: float) -> None:
            results.setdefault(name, []).append(v)
            print(f"{name}: " + ", ".join(f"{k}={x:.2f}" for k, x in v.items()), file=sys.stderr)

        for run in range(args.runs):
            w, *_ = timed("pg_dump > /dev/null", pgenv, shell=True)
            record("limit: pg_dump > /dev/null", wall=w)
            f = work / "plan.sql.gz"
            w1, *_ = timed(f"pg_dump | gzip -6 > {f}", pgenv, shell=True)
            w2, *_ = timed(["aws", "s3", "cp", "--quiet", str(f), f"s3://{outputs['backup_bucket_name']}/plan/{run}.sql.gz",
                            "--sse", "aws:kms"], env) if shutil.which("aws") else (0.0, "", "", 0)
            record("plan: pg_dump|gzip -6 > f; aws s3 cp", wall=w1 + w2, dump=w1, upload=w2, stored_mb=f.stat().st_size / 1e6)
            f.unlink()
            for fmt in ("gzip", "zstd"):
                w, out, _, rss = timed([sys.executable, "-m", "recovery.cli", "backup", "db", "--stack", "production",
                                        "--outputs", str(work / "outputs.json"), "--format", fmt, "--json"], env)
                m = json.loads(out)
                # verify: `recovery verify` of this backup vs the plan's `aws s3 cp - | gunzip -t`
                wv, *_ = timed([sys.executable, "-m", "recovery.cli", "verify", "--stack", "production", "--outputs",
                                str(work / "outputs.json"), "--kind", "db", "--no-record"], env)
                tester = "gunzip -t" if fmt == "gzip" else "zstd -tq"
                wp, *_ = timed(f"aws s3 cp --quiet s3://{m['bucket']}/{m['key']} - | {tester}", env, shell=True) \
                    if shutil.which("aws") else (0.0, "", "", 0)
                # restore side: single-stream download, then decompress | psql into a fresh database
                local = work / m["key"].rsplit("/", 1)[-1]
                t = time.perf_counter()
                with open(local, "wb") as fh:  # one GET stream: moto re-reads the whole object per range
                    for chunk in s3.get_object(Bucket=m["bucket"], Key=m["key"])["Body"].iter_chunks(1 << 20):
                        fh.write(chunk)
                dl = time.perf_counter() - t
                dec = "gunzip -c" if fmt == "gzip" else "zstd -dcq"
                wd, *_ = timed(f"{dec} {local} > /dev/null", env, shell=True)
                pg.create_database("bench_restore")
                wr, *_ = timed(f"{dec} {local} | psql -q -v ON_ERROR_STOP=1 -d bench_restore > /dev/null",
                               {**pgenv, "PGDATABASE": "bench_restore"}, shell=True)
                local.unlink()
                record(f"recovery backup db --format {fmt}", wall=w, backup_mb_s=mb / w, rss_mb=rss / 1024,
                       verify=wv, plan_verify=wp,
                       stored_mb=m["stored_bytes"] / 1e6, download=dl, decompress=wd, decompress_psql=wr,
                       restore_mb_s=mb / (dl + wr))

    shutil.rmtree(work, ignore_errors=True)
    print(f"\nplain dump {mb:.0f} MB, {os.cpu_count()} cores, median of {args.runs} run(s)\n")
    print("| pipeline | wall s | MB/s of plain dump | peak RSS MB | stored MB | restore: download s | decompress s | "
          "decompress\\|psql s | restore MB/s | recovery verify s | aws s3 cp - \\| gunzip/zstd -t s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {name} | {med['wall']:.2f} | {mb / med['wall']:.0f} | {med.get('rss_mb', 0):.0f} | "
              f"{med.get('stored_mb', 0):.0f} | {med.get('download', 0):.2f} | {med.get('decompress', 0):.2f} | "
              f"{med.get('decompress_psql', 0):.2f} | {med.get('restore_mb_s', 0):.0f} | {med.get('verify', 0):.2f} | "
              f"{med.get('plan_verify', 0):.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"plain_dump_mb": mb, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
