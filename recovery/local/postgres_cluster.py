"""A throwaway PostgreSQL 15 cluster in a temp directory, on a free port, with password auth.

Used by tests, benchmarks and the local mode. When run as root the server runs as the
`postgres` OS user (initdb refuses root). The superuser is created with a password so that
the backup path really reads it from Secrets Manager; unix sockets are not used by clients.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")

BLOCKCHAIN_DDL = """
CREATE TABLE IF NOT EXISTS blockchain (
    height      bigint PRIMARY KEY,
    hash        text NOT NULL UNIQUE,
    prev_hash   text NOT NULL,
    merkle_root text NOT NULL,
    miner       text NOT NULL,
    ts          timestamptz NOT NULL,
    difficulty  bigint NOT NULL,
    nonce       bigint NOT NULL,
    tx_count    integer NOT NULL,
    size_bytes  integer NOT NULL,
    payload     jsonb NOT NULL
);
"""

# Deterministic, realistic-looking rows: hex hashes, a miner address, a small JSON payload.
SEED_SQL = """
INSERT INTO blockchain
SELECT h,
       md5('b' || h) || md5('c' || h),
       md5('b' || (h - 1)) || md5('c' || (h - 1)),
       md5('m' || h) || md5('r' || h),
       'XAI' || substr(md5('w' || (h %% 977)), 1, 37),
       timestamptz '2024-01-01 00:00:00+00' + (h * interval '2 minutes'),
       1000000 + (h * 7919) %% 100000,
       (h * 2654435761) %% 4294967296,
       (h %% 50) + 1,
       800 + (h * 31) %% 4000,
       jsonb_build_object('version', 2, 'txids',
           jsonb_build_array(md5('t1' || h), md5('t2' || h), md5('t3' || h)),
           'fee', ((h * 13) %% 1000) / 100.0)
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS h
"""

TABLE_CHECKSUM_SQL = (
    "SELECT count(*), max(height), md5(coalesce(string_agg(b::text, '|' ORDER BY height), '')) FROM blockchain b"
)


def pg_bin(name: str) -> str:
    for d in PG_BIN_CANDIDATES:
        p = Path(d) / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL binary {name} not found")
    return found


# Fast, but an acknowledged commit survives a killed server, as it does on Aurora: the local mode's
# crashes (`local outage`'s `pg_ctl stop -m immediate`, SIGKILL) kill processes, not the machine, so
# fsync can be off; synchronous_commit stays on (one write() per commit), or an outage right after a
# commit would lose it and a drill would count data loss that Aurora would not have.
FAST_OPTS = "-c fsync=off -c full_page_writes=off -c max_wal_size=2GB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(self, base_dir: str | os.PathLike[str] | None = None, *, user: str = "xaiadmin",
                 password: str = "local-secret", dbname: str = "xai_blockchain", extra_opts: str = "") -> None:
        self._own_dir = base_dir is None
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="xai-pg-"))
        self.datadir = self.base / "data"
        self.sockdir = self.base / "sock"
        self.user = user
        self.password = password
        self.dbname = dbname
        self.host = "127.0.0.1"
        self.port = 0
        self.extra_opts = extra_opts  # more server options (the local primary's WAL archiving)
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None

    # -- process control
    def _run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), check=True, capture_output=True, text=True, user=self._run_as, **kw)

    def start(self) -> "PostgresCluster":
        self.sockdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            for p in (self.base, self.sockdir, pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(pg_bin("initdb"), "-D", str(self.datadir), "-U", self.user, "--pwfile", str(pwfile),
                  "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        pwfile.unlink()
        self.port = free_port()
        opts = f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 {FAST_OPTS} {self.extra_opts}"
        self._run(pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l", str(self.base / "log"),
                  "-w", "-t", "60", "start")
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        return self

    def stop(self) -> None:
        if self.datadir.exists():
            subprocess.run([pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
                           capture_output=True, user=self._run_as)
        if self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients
    def conninfo(self, dbname: str | None = None) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname or self.dbname}"

    def connect(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(dbname), password=self.password, autocommit=True)

    def env(self) -> dict[str, str]:
        """PG* variables for psql/pg_dump subprocesses (the password only in PGPASSWORD)."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password}

    def create_database(self, name: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')

    def seed_blockchain(self, rows: int, dbname: str | None = None, batch: int = 200_000) -> None:
        with self.connect(dbname) as conn:
            conn.execute(BLOCKCHAIN_DDL)
            start = int(conn.execute("SELECT coalesce(max(height), 0) + 1 FROM blockchain").fetchone()[0])  # type: ignore[index]
            stop = start + rows - 1
            while start <= stop:
                end = min(stop, start + batch - 1)
                conn.execute(SEED_SQL, {"start": start, "stop": end})
                start = end + 1
            conn.execute("ANALYZE blockchain")

    def table_summary(self, dbname: str | None = None) -> tuple[int, int | None, str]:
        """(row count, max(height), md5 of the whole table's contents in height order)."""
        with self.connect(dbname) as conn:
            row = conn.execute(TABLE_CHECKSUM_SQL).fetchone()
            assert row is not None
            return int(row[0]), row[1], str(row[2])
