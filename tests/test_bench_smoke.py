"""The benchmark harness (bench/, `make bench`) cannot rot: one tiny run of every competitor.

It runs `python -m bench --smoke` as a real process, exactly as `make bench` does but on a few
thousand rows, and checks that every competitor ran (or, for the plan's awscli pipeline, was
skipped only because awscli is not installed), that the figures are there, and that the report
renders. No timing is asserted: performance claims live in docs/benchmarks.md (DESIGN.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import ROOT

GROUPS = {"backup-db": {"plan", "gzip", "zstd", "parallel", "limit"},
          "restore-db": {"plan", "gzip", "zstd", "parallel", "limit-plain", "limit-gz", "limit-zst", "limit-pgr"},
          "verify": {"plan", "recovery"},
          "backup-chain": {"plan", "recovery", "limit"},
          "restore-chain": {"plan", "recovery", "limit"}}


def test_every_competitor_runs_once_and_the_report_renders(tmp_path: Path) -> None:
    out = tmp_path / "out" / "benchmarks.md"
    # the cluster runs as `postgres` when we are root: its directory must not be under pytest's 0700 tmp
    data = Path(tempfile.mkdtemp(prefix="xai-bench-smoke-"))
    data.chmod(0o755)
    try:
        _run_smoke(data, out)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _run_smoke(data: Path, out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "RECOVERY_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--data-dir", str(data),
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["machine"]["cores"] and doc["machine"]["memory_gb"] > 0
    assert doc["datasets"]["smoke"]["plain_dump_bytes"] > 1_000_000
    have_aws = shutil.which("aws", path=env["PATH"]) is not None
    # the parallel format's competitors run only where `recovery backup db --help` offers it
    have_parallel = "parallel" in subprocess.run([sys.executable, "-m", "recovery", "backup", "db", "--help"], cwd=ROOT,
                                                 env=env, capture_output=True, text=True).stdout
    seen: dict[str, set[str]] = {}
    for r in doc["runs"]:
        seen.setdefault(r["group"], set()).add(r["id"])
        if "skipped" in r:
            assert (not have_aws and r["id"] == "plan") or (not have_parallel and r["id"] == "parallel"), r
            continue
        for key in ("wall_s", "cpu_s", "rss_tree_mb", "rss_max_proc_mb"):
            assert r[key] >= 0, (key, r)
        if r["group"] in ("backup-db", "backup-chain") and r["id"] not in ("limit",):
            assert r["s3_bytes"] > 0, r
    assert seen == GROUPS
    assert [r["run"] for r in doc["runs"]] == [0] * len(doc["runs"])  # one run each

    # what the recovery restores reported: the restore step split, and a chain that verifies
    gz = next(r for r in doc["runs"] if r["group"] == "restore-db" and r["id"] == "gzip")
    assert {"check-backup", "restore-scratch", "swap"} <= set(gz["stages"])
    assert set(gz["restore_scratch"]) == {"download_s", "decompress_s", "sql_s"}

    md = out.read_text()
    assert "## Targets" in md and "Database backup" in md and "Chain data restore" in md
    assert "benchmarks.json" in md
    assert "pg_restore -j2" in md and "single-stream psql < plain.sql" in md
    # the projection for every restore path, beside the RTO of the stack file (Pulumi.production.yaml)
    for path in ("restore db (gzip)", "restore db (zstd)", "restore chain"):
        line = next(x for x in md.splitlines() if x.startswith(f"- {path}:"))
        assert "h/TB" in line and "RTO of" in line, line
    parallel_line = next(x for x in md.splitlines() if x.startswith("- restore db --jobs 2 (parallel):"))
    assert ("h/TB" in parallel_line) == have_parallel, parallel_line
    if not have_parallel:
        assert "Skipped:" in md and "does not list it" in md


def test_generated_chain_dir_is_a_valid_node_chain(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.data import make_chain_dir
    from recovery.local.chain import verify_chain_file

    d1, d2 = tmp_path / "a", tmp_path / "b"
    make_chain_dir(d1, 300_000)
    make_chain_dir(d2, 300_000)
    assert sorted(p.name for p in d1.iterdir()) == ["chain.db", "node.json", "peers.json"]
    result = verify_chain_file(d1 / "chain.db")
    assert result.is_valid and result.checked_blocks > 50, result
    # deterministic: same seed, same blocks
    assert verify_chain_file(d2 / "chain.db").tip_hash == result.tip_hash
