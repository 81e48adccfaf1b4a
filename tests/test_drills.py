"""`recovery drill db|chain|full` as an operator runs them: real processes, real damage, real CLI.

The local environment is started once for the module (`local up`), the full drill runs against it
while an observer thread independently watches the node and the database, a drill is SIGKILLed
mid-restore, and `local down` must leave nothing behind. `drill db` and `drill chain` also run
against the conftest fixtures (moto + the session PostgreSQL) as a non-local stack.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote, urlsplit

import psycopg
import pytest

from recovery.local.deploy import admin_client
from cli_env import isolated_env

from recovery.local.moto_server import MotoServer
from recovery.local.postgres_cluster import PostgresCluster

from _restore_fixtures import RSite, drop_test_databases, make_rsite
from conftest import DB_PASSWORD, ROOT

RECOVERY = str(Path(sys.executable).parent / "recovery")


def run(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RECOVERY, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------- local env


class Local:
    def __init__(self, env: dict[str, str], st: dict[str, Any], tmp: Path) -> None:
        self.env, self.st, self.tmp = env, st, tmp
        self.dsn: str = st["postgres"]["dsn"]
        self.passwords = {unquote(str(urlsplit(self.dsn).password))}
        self.dir = Path(st["dir"])

    def s3(self) -> Any:
        return admin_client("s3", "us-east-1", self.st["aws"]["endpoint"], self.st["aws"]["ca_bundle"])

    def refresh(self) -> str:
        """The current DSN (a drill scenario may rotate the password); every password seen is remembered."""
        # pgpass follows a rotation of the master password (state.json / `local status` may not).
        current = (self.dir / "pgpass").read_text().strip().split(":", 4)[4]
        old = unquote(str(urlsplit(self.dsn).password))
        self.passwords.update({old, current})
        self.dsn = self.dsn.replace(f":{quote(old, safe='')}@", f":{quote(current, safe='')}@")
        return self.dsn

    def databases(self) -> list[str]:
        with psycopg.connect(self.refresh().rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
            return sorted(r[0] for r in c.execute("SELECT datname FROM pg_database WHERE NOT datistemplate"))

    def no_secret(self, *texts: str) -> None:
        self.refresh()
        for t in texts:
            for pw in self.passwords:
                assert pw not in t, "the sandbox DB password leaked"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    tmp = tmp_path_factory.mktemp("drills")
    d = tmp / "env"
    env = isolated_env()
    env.update(RECOVERY_LOCAL_DIR=str(d), RECOVERY_JOURNAL_DIR=str(tmp / "journal"),
               RECOVERY_REPORT_DIR=str(tmp / "reports"), RECOVERY_DRILL_BLOCKS_AFTER_BACKUP="4")
    drills_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "xai-drill-*")))
    up = run(env, "local", "up", "--mine-interval", "0.25", "--json")
    assert up.returncode == 0, up.stderr
    lo = Local(env, json.loads(up.stdout), tmp)
    yield lo
    state = json.loads((d / "state.json").read_text())
    pg_dirs = [v["base"] for v in state.values() if isinstance(v, dict) and v.get("base")]
    down = run(env, "local", "down")
    assert down.returncode == 0, down.stderr
    # Nothing a drill created outlives `local down`: no dir, no cluster, no temp dirs.
    assert not d.exists()
    assert pg_dirs and not [p for p in pg_dirs if Path(p).exists()]
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "xai-drill-*"))) <= drills_before


class Observer(threading.Thread):
    """Samples the node's height/state and the table's count/max(height) every few ms, on its own
    connections, so the test can count what the drill lost without trusting the drill."""

    def __init__(self, lo: Local) -> None:
        super().__init__(daemon=True)
        self.lo, self.samples, self.stop = lo, [], threading.Event()
        import requests

        self.http = requests.Session()

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            s: dict[str, Any] = {"t": time.time()}
            try:
                info = self.http.get(self.lo.st["node"]["url"] + "/api/v1/blockchain/info", timeout=1).json()
                s.update(height=info["block_height"], state=info["consensus_state"])
            except Exception:  # noqa: BLE001 - node stopped by the restore
                pass
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.lo.dsn, autocommit=True, connect_timeout=2)
                rows, top = conn.execute("SELECT count(*), max(height) FROM blockchain").fetchone()
                s.update(rows=rows, top=top)
            except Exception:  # noqa: BLE001 - connection terminated by the swap
                conn = None
            self.samples.append(s)
            time.sleep(0.01)


def backup_heights(lo: Local, key: str) -> int:
    """max(height) inside a backup object, read by the test itself (SQL dump or chain tarball)."""
    body = lo.s3().get_object(Bucket="xai-backups-local", Key=key)["Body"].read()
    if key.endswith(".sql.gz"):
        lines = gzip.decompress(body).decode().splitlines()
        start = next(i for i, line in enumerate(lines) if line.replace('"', "").startswith("COPY public.blockchain "))
        heights = [int(line.split("\t", 1)[0]) for line in lines[start + 1:lines.index("\\.", start)]]
        return max(heights)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/chain.db"))
        path = lo.tmp / "chain-from-backup.db"
        path.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT max(height) FROM blocks").fetchone()[0])


def test_full_drill_measures_rpo_that_matches_an_independent_count(local: Local) -> None:
    obs = Observer(local)
    obs.start()
    try:
        r = run(local.env, "drill", "full", "--stack", "local", "--json")
    finally:
        obs.stop.set()
        obs.join(5)
    assert r.returncode == 0, r.stderr[-3000:]
    local.no_secret(r.stdout, r.stderr)
    rec = json.loads(r.stdout)
    assert rec["passed"] is True and rec["drill"] == "full" and rec["stack"] == "local"
    by = {s["name"]: s for s in rec["scenarios"]}
    assert {"database-corruption", "chain-data-loss"} <= set(by)

    # database-corruption: last max(height) the observer saw before rows went missing
    db = by["database-corruption"]
    assert db["passed"] and db["rto_met"] and db["rpo_met"] and "rows missing" in db["detection"]
    damaged = next(i for i, s in enumerate(obs.samples) if s.get("top") is not None and s["rows"] < s["top"] + 1)
    seen_top = next(s["top"] for s in reversed(obs.samples[:damaged]) if s.get("top") is not None)
    restored = backup_heights(local, db["extra"]["backup"])
    assert restored == db["extra"]["restored"]["max_height"]
    # The observer polls every ~10 ms and may miss the very last block indexed before the lock.
    assert db["rpo_blocks"] >= 4 and abs(db["rpo_blocks"] - (seen_top - restored)) <= 1, (db, seen_top, restored)
    assert db["rpo_seconds"] > 0

    # chain-data-loss: last height the node reported before it said no-chain-data
    ch = by["chain-data-loss"]
    assert ch["passed"] and "no-chain-data" in ch["detection"]
    lost_at = next(i for i, s in enumerate(obs.samples) if s.get("state") == "no-chain-data")
    seen_height = next(s["height"] for s in reversed(obs.samples[:lost_at]) if s.get("height") is not None)
    restored = backup_heights(local, ch["extra"]["backup"])
    assert restored == ch["extra"]["restored"]["max_height"]
    assert ch["rpo_blocks"] >= 4 and abs(ch["rpo_blocks"] - (seen_height - restored)) <= 1, (ch, seen_height, restored)
    # Step timings come from real work: the restores ran their runbooks' steps.
    names = [s["name"] for s in ch["steps"]]
    assert "restore-chain: swap-in" in names and "restore-db: swap" in [s["name"] for s in db["steps"]]

    # The record is in the bucket under drills/, the same document as printed.
    stored = json.loads(local.s3().get_object(Bucket="xai-backups-local", Key=rec["record_key"])["Body"].read())
    assert rec["record_key"].startswith("drills/") and stored["scenarios"] == rec["scenarios"]
    # The reports: an HTML page with the RTO/RPO table and the SVG timeline, and the Markdown.
    page = Path(rec["reports"]["html"]).read_text()
    assert "<svg" in page and "<table>" in page and "database-corruption" in page and "chain-data-loss" in page
    assert "15 min" in page and "Post-drill review" in page
    md = Path(rec["reports"]["markdown"]).read_text()
    assert "| database-corruption | postgresql |" in md
    local.no_secret(page, md, json.dumps(stored))
    # Nothing the drill created is left: no scratch/quarantine databases, no work dirs.
    assert [n for n in local.databases() if n != "xai_blockchain" and n.startswith("xai")] == []
    assert list((local.dir / "drills").glob("*")) == []
    _partition_and_breach(local, by, md)


def _partition_and_breach(local: Local, by: dict[str, Any], md: str) -> None:
    """Scenarios 4 and 5 and the plan's REINDEX, from the same full drill."""
    assert "restore-db: reindex" in [s["name"] for s in by["database-corruption"]["steps"]]
    part = by["network-partition"]
    assert part["passed"] and part["component"] == "node" and "did not heal" in part["detection"]
    assert "partition-rejoin: wait-healed" in [s["name"] for s in part["steps"]]
    sent = next(s for s in part["steps"] if s["name"] == "rejoin")["detail"]["peers_sent"]
    assert sent >= 1 and part["rpo_blocks"] == 0
    br = by["security-breach"]
    planted = next(s for s in br["steps"] if s["name"] == "plant")["detail"]
    assert br["passed"] and planted["user"] in br["detection"] and planted["access_key_id"] in br["detection"]
    assert [s["name"] for s in br["steps"] if ":" not in s["name"]] == [
        "plant", "detect", "contain", "rotate", "investigate", "verify"]
    # the rogue user is gone, its incident's evidence and report stay
    iam = admin_client("iam", "us-east-1", local.st["aws"]["endpoint"], local.st["aws"]["ca_bundle"])
    assert not [u for u in iam.list_users()["Users"] if u["UserName"] == planted["user"]]
    incident = next(s for s in br["steps"] if s["name"] == "investigate")["detail"]["incident_id"]
    keys = [o["Key"] for o in local.s3().list_objects_v2(Bucket="xai-backups-local",
                                                        Prefix=f"incidents/{incident}/").get("Contents", [])]
    assert {f"incidents/{incident}/record.json", f"incidents/{incident}/report.md"} <= set(keys)
    # the explorer and the monitoring: lost process and state, back from a config backup
    for name, comp in (("explorer-loss", "explorer"), ("monitoring-loss", "monitoring")):
        sc = by[name]
        assert sc["passed"] and sc["component"] == comp and "health check" in sc["detection"]
        assert "restore-config: swap-in" in [s["name"] for s in sc["steps"]]
    assert by["explorer-loss"]["rpo_met"] is True and by["monitoring-loss"]["rpo_target_minutes"] is None
    # one row per component of the objectives table, every one drilled
    for comp in ("node", "postgresql", "redis", "explorer", "monitoring"):
        assert f"| {comp} |" in md
    if shutil.which("redis-server") or Path("/usr/bin/redis-server").exists():  # else the redis drills skip
        assert "not drilled" not in md


def test_drill_db_and_chain_on_the_local_stack(local: Local) -> None:
    for kind in ("db", "chain"):
        r = run(local.env, "drill", kind, "--stack", "local", "--fresh")
        assert r.returncode == 0, r.stderr[-2000:]
        local.no_secret(r.stdout, r.stderr)
        assert "PASSED" in r.stdout and "report  " in r.stdout and "RTO" in r.stdout
    assert not [n for n in local.databases() if n.startswith("xai_drill_")]


def test_sigterm_mid_drill_cleans_up_and_keeps_a_partial_record(local: Local) -> None:
    proc = subprocess.Popen([RECOVERY, "drill", "full", "--stack", "local", "--scenario", "chain-data-loss"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=local.env, cwd=ROOT)
    assert proc.stderr is not None
    err = []
    for line in proc.stderr:
        err.append(line)
        if "keep-mining ..." in line:  # after the backup, before any damage
            proc.send_signal(signal.SIGTERM)
            break
    out, rest = proc.communicate(timeout=60)
    text = "".join(err) + rest
    assert proc.returncode == 130, text[-2000:]
    assert "error: interrupted" in text and "partial record drills/" in text
    key = text.split("partial record ", 1)[1].split(",", 1)[0]
    rec = json.loads(local.s3().get_object(Bucket="xai-backups-local", Key=key)["Body"].read())
    assert rec["passed"] is False and "interrupted" in rec["scenarios"][0]["error"]
    assert list((local.dir / "drills").glob("*")) == []
    local.no_secret(out, text)


def test_killed_drill_leaves_nothing_after_sweep_or_local_down(local: Local) -> None:
    # What an operator's own restores kept: the sweep used to drop every <db>_quarantine_* database
    # and remove every quarantine directory beside the data dir. They are not the drill's to remove.
    kept_dbs = ["xai_blockchain_quarantine_20261101t000000z", "xai_blockchain_restore_20261101t000000z_abc123"]
    with psycopg.connect(local.refresh().rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
        for n in kept_dbs:
            c.execute(f'CREATE DATABASE "{n}"')
    data = Path(local.st["node"]["data_dir"])
    kept_dir = data.parent / f"{data.name}.quarantine-20261101T000000Z"
    kept_dir.mkdir()
    (kept_dir / "chain.db").write_text("the operator's evidence")
    # SIGKILL mid-scenario: after the scratch copy is loaded, before it is verified and swapped in.
    r = run({**local.env, "RECOVERY_TEST_CRASH_AT": "restore-db:verify-scratch:before"},
            "drill", "full", "--stack", "local", "--scenario", "database-corruption")
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    left_dbs = [n for n in local.databases() if "_restore_" in n]
    left_dirs = list((local.dir / "drills").glob("xai-drill-*"))
    assert left_dbs and left_dirs, "the kill should have left a scratch database and a work dir"
    # The next drill sweeps them first (and restarts the node the killed restore had stopped).
    again = run(local.env, "drill", "db", "--stack", "local", "--fresh")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "swept leftovers" in again.stderr
    assert not [n for n in local.databases() if ("_restore_" in n and n not in kept_dbs) or n.startswith("xai_drill_")]
    assert not [p for p in left_dirs if p.exists()]
    assert set(kept_dbs) <= set(local.databases()) and (kept_dir / "chain.db").read_text() == "the operator's evidence"
    # The killed drill's damage is still in the table: the next full drill refuses to measure on it.
    refused = run(local.env, "drill", "full", "--stack", "local", "--scenario", "database-corruption")
    assert refused.returncode == 21 and "already damaged" in refused.stdout + refused.stderr
    with psycopg.connect(local.refresh().rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
        for n in kept_dbs:  # the operator's, so this test removes them itself
            c.execute(f'DROP DATABASE "{n}"')
    shutil.rmtree(kept_dir)


@pytest.mark.parametrize("kind", ["full", "failover"])
def test_drills_that_inject_damage_refuse_a_non_local_stack(tmp_path: Path, kind: str) -> None:
    env = isolated_env()
    r = run(env, "drill", kind, "--stack", "production", "--outputs", str(tmp_path / "none.json"))
    assert r.returncode == 20
    assert r.stderr.count("\n") == 1 and "runs only on local" in r.stderr


# ------------------------------------------------------------------------------------- fixtures (non-local)


@pytest.fixture()
def rs(moto_server: MotoServer, pg: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    site = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=2000)
    site.extra_env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    yield site
    drop_test_databases(pg, site.db)
    drop_test_databases(pg, "xai_drill_")


def drill(rs: RSite, *args: str) -> Any:
    from conftest import Result

    argv = [RECOVERY, "drill", args[0], "--stack", rs.stack, "--outputs", str(rs.outputs_file),
            "--report-dir", str(rs.journal_dir.parent / "reports"), *args[1:]]
    p = subprocess.run(argv, capture_output=True, text=True, env=rs.full_env(), timeout=120, cwd=ROOT,
                       stdin=subprocess.DEVNULL)
    assert DB_PASSWORD not in p.stdout + p.stderr, "the DB password leaked"
    return Result(p.returncode, p.stdout, p.stderr)


def test_drill_db_on_a_real_stack_never_touches_its_database(rs: RSite, pg: PostgresCluster) -> None:
    b = subprocess.run([RECOVERY, "backup", "db", "--stack", rs.stack, "--outputs", str(rs.outputs_file)],
                       capture_output=True, text=True, env=rs.full_env(), cwd=ROOT)
    assert b.returncode == 0, b.stderr
    before = rs.summary()
    r = drill(rs, "db", "--json")
    assert r.code == 0, r.err[-2000:]
    rec = r.json()
    sc = rec["scenarios"][0]
    assert rec["passed"] and sc["name"] == "db-restore-test" and sc["rto_met"] is True
    assert sc["extra"]["scratch_database"].startswith("xai_drill_")
    assert [s["name"] for s in sc["steps"]] == ["choose-backup", "verify-backup", "restore-scratch",
                                                "verify-scratch", "drop-scratch"]
    assert rs.summary() == before, "the stack's database was written"
    assert not [n for n in rs.databases() if n.startswith("xai_drill_")]
    assert rec["record_key"] in rs.keys("drills/")
    assert not list((Path(rs.extra_env["TMPDIR"])).glob("xai-drill-*"))
    for f in rec["reports"].values():
        assert DB_PASSWORD not in Path(f).read_text()


def _chain(root: Path, blocks: int, tamper: bool = False) -> Path:
    from recovery.local.chain import Block, ChainStore, init_chain

    d = root / "blockchain"
    d.mkdir()
    init_chain(d / "chain.db")
    store = ChainStore(d / "chain.db")
    prev = store.tip()
    assert prev is not None
    new = []
    for h in range(1, blocks):
        prev = Block.make(h, prev.hash, 1_700_000_000.0 + h, [{"txid": f"t{h}", "amount": h}])
        new.append(prev)
    store.append(new)
    store.close()
    if tamper:
        with sqlite3.connect(d / "chain.db") as db:
            db.execute("UPDATE blocks SET transactions = '[]' WHERE height = ?", (blocks // 2,))
    return d


@pytest.mark.parametrize("tamper", [False, True], ids=["valid", "tampered"])
def test_drill_chain_checks_the_hash_chain(rs: RSite, tmp_path: Path, tamper: bool) -> None:
    data = _chain(tmp_path, 120, tamper)
    b = subprocess.run([RECOVERY, "backup", "chain", "--stack", rs.stack, "--outputs", str(rs.outputs_file),
                        "--data-dir", str(data)], capture_output=True, text=True, env=rs.full_env(), cwd=ROOT)
    assert b.returncode == 0, b.stderr
    r = drill(rs, "chain")
    leftovers = list(Path(rs.extra_env["TMPDIR"]).glob("xai-drill-*"))
    assert not leftovers
    if not tamper:
        assert r.code == 0, r.err[-2000:]
        assert "chain-restore-test" in r.out and "PASSED" in r.out
    else:
        assert r.code == 21, r.err[-2000:]
        assert "block 60 content does not match its hash" in r.out
        assert r.err.strip().splitlines()[-1].startswith("error: drill chain on production failed")
    assert len(rs.keys("drills/")) == 1

