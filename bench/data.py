"""Benchmark data, generated once (deterministically) and cached under bench/.data/.

- Database: the `blockchain` table of recovery.local.postgres_cluster (`seed_blockchain`), whose
  rows are a pure function of the height (md5 of it, no RNG), so every machine gets the same
  bytes. 560,000 rows make ~251 MB of plain SQL; 2,240,000 rows ~1 GB. Each size is its own
  database in one cached PostgreSQL 15 cluster (bench/.data/pg), stopped cleanly between runs.
  The plain dump is kept beside it (`plain.sql`) for the `psql < plain.sql` limit, and a
  custom-format dump (`custom.dump`, `pg_dump -Fc`) for the parallel format's limit, `pg_restore -j2`.
- Chain data: a node data directory as recovery/local/node_sim.py keeps it: `chain.db` (SQLite,
  WAL mode, the node's `blocks` schema, hash-linked from the shared genesis, so
  `verify_chain_file` accepts it), `node.json` and `peers.json`. Transactions come from
  random.Random(SEED). `chain.tar` (uncompressed) is kept for the restore limit.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recovery.local.chain import GENESIS, GENESIS_TIMESTAMP, SCHEMA, Block
from recovery.local.postgres_cluster import PostgresCluster, free_port, pg_bin

SEED = 20261125
PG_PASSWORD = "bench-local-pw"
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Size:
    name: str
    rows: int  # blockchain rows in PostgreSQL
    chain_mb: int  # target size of chain.db


SIZES = {
    "250M": Size("250M", 560_000, 250),
    "1G": Size("1G", 2_240_000, 1000),
    "smoke": Size("smoke", 4_000, 2),
}


class CachedCluster(PostgresCluster):
    """The throwaway cluster, kept on disk: a second start reuses the data directory."""

    def __init__(self, base: Path) -> None:
        super().__init__(base, password=PG_PASSWORD, dbname="bench")

    def start(self) -> "CachedCluster":
        if not (self.datadir / "PG_VERSION").exists():
            if self.base.exists():
                subprocess.run(["rm", "-rf", str(self.base)], check=True)
            self.base.mkdir(parents=True)
            super().start()
            return self
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(self.sockdir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        # the same settings as PostgresCluster.start
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=2GB")
        self._run(pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l", str(self.base / "log"),
                  "-w", "-t", "120", "start")
        return self

    def stop(self) -> None:  # a clean (fast) shutdown: the next start needs no crash recovery
        subprocess.run([pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                       capture_output=True, user=self._run_as)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def databases(self) -> list[str]:
        with self.connect("postgres") as c:
            return [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]

    def drop(self, name: str) -> None:
        with self.connect("postgres") as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Dataset:
    size: Size
    dir: Path
    db: str
    plain_sql: Path
    plain_bytes: int
    custom_dump: Path  # pg_dump -Fc of the same database
    chain_dir: Path  # .../chain/blockchain
    chain_tar: Path
    chain_bytes: int
    info: dict[str, Any]


def _log(msg: str) -> None:
    print(f"[bench data] {msg}", flush=True)


def _marker(path: Path, want: dict[str, Any]) -> dict[str, Any] | None:
    try:
        info = dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
    return info if {k: info.get(k) for k in want} == want else None


def ensure_dataset(root: Path, size: Size, pg: CachedCluster) -> Dataset:
    """The size's database and chain dir, generated only when missing or generated differently."""
    d = root / size.name
    d.mkdir(parents=True, exist_ok=True)
    db = f"bench_{size.name.lower()}"
    want_db = {"version": GENERATOR_VERSION, "rows": size.rows}
    db_info = _marker(d / "db.json", want_db)
    reseeded = db_info is None or db not in pg.databases()
    if reseeded:
        t = time.perf_counter()
        pg.drop(db)
        pg.create_database(db)
        pg.seed_blockchain(size.rows, dbname=db)
        with pg.connect(db) as c:
            c.execute("VACUUM (FREEZE, ANALYZE) blockchain")  # hint bits set now, not in a timed pg_dump
        env = {**os.environ, **pg.env(), "PGDATABASE": db}
        subprocess.run([pg_bin("pg_dump"), "-f", str(d / "plain.sql")], env=env, check=True)
        db_info = {**want_db, "plain_bytes": (d / "plain.sql").stat().st_size,
                   "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (d / "db.json").write_text(json.dumps(db_info, indent=2))
        _log(f"{size.name}: {size.rows} rows seeded and dumped in {time.perf_counter() - t:.0f}s")
    # Made apart from the plain dump (its own marker), so a cache from before it keeps its database.
    want_custom = {"version": GENERATOR_VERSION, "rows": size.rows, "format": "custom"}
    if reseeded or _marker(d / "custom.json", want_custom) is None or not (d / "custom.dump").exists():
        t = time.perf_counter()
        env = {**os.environ, **pg.env(), "PGDATABASE": db}
        subprocess.run([pg_bin("pg_dump"), "-Fc", "-f", str(d / "custom.dump")], env=env, check=True)
        (d / "custom.json").write_text(json.dumps({**want_custom, "bytes": (d / "custom.dump").stat().st_size}, indent=2))
        _log(f"{size.name}: custom-format dump made in {time.perf_counter() - t:.0f}s")
    want_chain = {"version": GENERATOR_VERSION, "chain_mb": size.chain_mb, "seed": SEED}
    chain = d / "chain"
    chain_info = _marker(d / "chain.json", want_chain)
    if chain_info is None:
        t = time.perf_counter()
        subprocess.run(["rm", "-rf", str(chain), str(d / "chain.tar")], check=True)
        make_chain_dir(chain / "blockchain", size.chain_mb * 1_000_000)
        subprocess.run(["tar", "-cf", str(d / "chain.tar"), "-C", str(chain), "blockchain"], check=True)
        chain_info = {**want_chain, "chain_bytes": sum(p.stat().st_size for p in (chain / "blockchain").rglob("*") if p.is_file()),
                      "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (d / "chain.json").write_text(json.dumps(chain_info, indent=2))
        _log(f"{size.name}: chain data dir generated in {time.perf_counter() - t:.0f}s")
    return Dataset(size, d, db, d / "plain.sql", int(db_info["plain_bytes"]), d / "custom.dump", chain / "blockchain",
                   d / "chain.tar", int(chain_info["chain_bytes"]), {"db": db_info, "chain": chain_info})


def _transactions(rng: random.Random, height: int) -> list[dict[str, Any]]:
    txs: list[dict[str, Any]] = [{"txid": rng.randbytes(32).hex(), "from": "coinbase",
                                  "to": "XAI" + rng.randbytes(20).hex(), "amount": 12.5, "fee": 0}]
    for _ in range(rng.randint(2, 12)):
        txs.append({"txid": rng.randbytes(32).hex(), "from": "XAI" + rng.randbytes(20).hex(),
                    "to": "XAI" + rng.randbytes(20).hex(), "amount": rng.randint(1, 10**9) / 10**4,
                    "fee": rng.randint(1, 2000) / 10**4, "nonce": rng.randint(0, 10**6)})
    return txs


def make_chain_dir(d: Path, target_bytes: int) -> None:
    """chain.db of about target_bytes (the node's schema, valid hash chain) + node.json, peers.json."""
    d.mkdir(parents=True)
    rng = random.Random(SEED)
    conn = sqlite3.connect(d / "chain.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(SCHEMA)
    prev = GENESIS
    batch: list[Block] = [GENESIS]
    height = 0
    while True:
        height += 1
        blk = Block.make(height, prev.hash, GENESIS_TIMESTAMP + 120.0 * height, _transactions(rng, height))
        batch.append(blk)
        prev = blk
        if len(batch) >= 2000:
            _flush(conn, batch)
            batch = []
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            if (d / "chain.db").stat().st_size >= target_bytes:
                break
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    (d / "node.json").write_text(json.dumps({
        "node_id": "bench-node-1", "network": "mainnet", "genesis_hash": GENESIS.hash,
        "miner_address": "XAI" + random.Random(SEED + 1).randbytes(20).hex()}, indent=2) + "\n")
    peers = [f"10.0.{i // 250}.{i % 250 + 1}:8333" for i in range(8)]
    (d / "peers.json").write_text(json.dumps({"peers": peers}, indent=2) + "\n")


def _flush(conn: sqlite3.Connection, blocks: list[Block]) -> None:
    with conn:
        conn.executemany("INSERT INTO blocks(height, hash, prev_hash, timestamp, transactions) VALUES (?, ?, ?, ?, ?)",
                         [(b.height, b.hash, b.prev_hash, b.timestamp, b.transactions_json) for b in blocks])
