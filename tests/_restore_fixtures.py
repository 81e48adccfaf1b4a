"""Fixtures shared by the restore tests: a site whose database is a small per-test database on the
session's PostgreSQL, services that are real commands acting on marker files, and the CLI run as a
real `recovery` process (the console script, as an operator runs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery import aws
from recovery.local.deploy_bound import site_for_tests
from recovery.local.moto_server import MotoServer
from recovery.local.node_api_stub import NodeApiStub
from recovery.local.postgres_cluster import PostgresCluster
from recovery.stack import StackOutputs, parse_outputs

from conftest import DB_PASSWORD, ROOT, STACK, Result

RECOVERY = str(Path(sys.executable).parent / "recovery")


@dataclass
class Services:
    """xai-node and xai-explorer as marker files; every command is logged to `log`."""

    dir: Path
    config: Path
    log: Path

    def running(self) -> dict[str, bool]:
        return {n: (self.dir / f"{n}.running").exists() for n in ("xai-node", "xai-explorer")}

    def actions(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []


def make_services(d: Path, fail_stop: str | None = None) -> Services:
    d.mkdir(parents=True, exist_ok=True)
    log = d / "actions.log"
    services = []
    for n in ("xai-node", "xai-explorer"):
        f = d / f"{n}.running"
        f.touch()
        stop = f"echo stop:{n} >> {log}; rm -f {f}" if n != fail_stop else f"echo {n}: unit is masked >&2; exit 5"
        services.append({"name": n, "stop": ["sh", "-c", stop], "start": ["sh", "-c", f"echo start:{n} >> {log}; touch {f}"],
                         "status": ["sh", "-c", f"test -e {f} || exit 3"], "timeout_seconds": 10})
    cfg = d / "services.json"
    cfg.write_text(json.dumps({"services": services, "start_order": ["xai-node", "xai-explorer"]}))
    return Services(d, cfg, log)


@dataclass
class RSite:
    stack: str
    outputs: dict[str, Any]
    outputs_file: Path
    env: dict[str, str]
    server: MotoServer
    pg: PostgresCluster
    db: str
    services: Services
    journal_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return str(self.outputs["backup_bucket_name"])

    def typed(self) -> StackOutputs:
        return parse_outputs(self.stack, self.outputs)

    def act_as(self, job: str) -> StackOutputs:
        """The parsed outputs, with this process running as `job`'s role (for runbooks called in-process)."""
        outputs = self.typed()
        aws.act_as(outputs, job)
        return outputs

    def s3(self) -> Any:
        """The account's root, whose writes into the vault carry its key (the bucket policy demands it)."""
        aws.vault_key(self.bucket, self.outputs["backup_kms_key_arn"])
        return aws.encrypt_into_vaults(self.server.client("s3", self.outputs["region"]))

    def keys(self, prefix: str = "") -> list[str]:
        r = self.s3().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in r.get("Contents", []))

    def databases(self) -> list[str]:
        with self.pg.connect("postgres") as c:
            return sorted(r[0] for r in c.execute("SELECT datname FROM pg_database WHERE NOT datistemplate"))

    def summary(self, db: str | None = None) -> tuple[int, int | None, str]:
        return self.pg.table_summary(db or self.db)

    def full_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "RECOVERY_"))}
        env.update(self.env)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        """`recovery restore <cmd> --stack S --outputs F ARGS`."""
        return [RECOVERY, "restore", args[0], "--stack", self.stack, "--outputs", str(self.outputs_file), *args[1:]]

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.full_env(**(env or {})),
                              timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)
        assert DB_PASSWORD not in proc.stdout and DB_PASSWORD not in proc.stderr, "the DB password leaked"
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def crash(self, *args: str, at: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        """Run with RECOVERY_TEST_CRASH_AT=at; the process must die by SIGKILL."""
        r = self.cli(*args, env={**(env or {}), "RECOVERY_TEST_CRASH_AT": at}, timeout=timeout)
        assert r.code == -signal.SIGKILL, f"expected SIGKILL at {at}, got {r.code}: {r.err[-2000:]}"
        return r


def new_db(pg: PostgresCluster, rows: int) -> str:
    # One name per worker, reused by each test (dropped first in case a test's teardown did not run): the
    # name is part of the deployment, which then restores from the worker's captured state (reset_to).
    # The "_x" ends it so no other worker's name (rt_<pid>...) starts with it (teardown drops by prefix).
    name = f"rt_{os.getpid()}_x"
    drop_test_databases(pg, name)
    pg.create_database(name)
    if rows:
        pg.seed_blockchain(rows, dbname=name)
    return name


def make_rsite(moto_server: MotoServer, pg: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               rows: int = 3000, fail_stop: str | None = None) -> RSite:
    db = new_db(pg, rows)
    outputs, oncall = site_for_tests(moto_server, db_port=pg.port, db_name=db,
                                     db_password=DB_PASSWORD)
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps(outputs))
    services = make_services(tmp_path / "services", fail_stop)
    journal_dir = tmp_path / "journal"
    env = {**moto_server.env(), **oncall.env(), "RECOVERY_AWS_MAX_ATTEMPTS": "2", "RECOVERY_SERVICES_CONFIG": str(services.config),
           "RECOVERY_JOURNAL_DIR": str(journal_dir)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PULUMI_BACKEND_URL"):
        monkeypatch.delenv(k, raising=False)
    aws.forget_sessions()  # this test's on-call identity, not the last one's
    return RSite(STACK, outputs, f, env, moto_server, pg, db, services, journal_dir)


@pytest.fixture()
def node() -> Iterator[NodeApiStub]:
    """A synced node API at height 500, for the chain restores' wait-sync and verify-node steps."""
    with NodeApiStub(block_height=500, is_synced=True) as n:
        yield n


def drop_test_databases(pg: PostgresCluster, prefix: str) -> None:
    with pg.connect("postgres") as c:
        for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchall():
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def make_chain_dir(root: Path, blocks: int = 500) -> Path:
    """A node data dir: chain.db (SQLite, WAL) with hash-linked blocks, node.json, peers/peers.json."""
    import hashlib
    import sqlite3

    d = root / "blockchain"
    (d / "peers").mkdir(parents=True)
    db = sqlite3.connect(d / "chain.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE blocks (height INTEGER PRIMARY KEY, hash TEXT, prev_hash TEXT, body BLOB)")
    prev = "0" * 64
    rows = []
    for h in range(blocks):
        cur = hashlib.sha256(f"{h}|{prev}".encode()).hexdigest()
        rows.append((h, cur, prev, os.urandom(100)))
        prev = cur
    db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    (d / "peers" / "peers.json").write_text(json.dumps(["10.0.1.11:8333", "10.0.2.11:8333"]))
    (d / "node.json").write_text(json.dumps({"node_id": "n-1", "network": "mainnet"}))
    return d


def tree(d: Path) -> dict[str, str]:
    """relative path -> sha256 (files) or 'dir' - what 'byte-identical' is checked against."""
    import hashlib

    out: dict[str, str] = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def listing(d: Path) -> list[tuple[str, int, int]]:
    """Every path under d with its inode and mtime (ns): proves a dry run touched nothing."""
    return sorted((str(p), p.lstat().st_ino, p.lstat().st_mtime_ns) for p in [d, *d.rglob("*")])
