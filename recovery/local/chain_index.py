"""The simulated node's indexer: copies blocks from chain.db into the PostgreSQL ``blockchain`` table.

It tails chain.db with a cursor (the highest height it has written) and survives the database
going away underneath it: any error marks it *degraded* (reported through the node API), it backs
off and retries, and it never crashes the node.

Catch-up rule (documented, and deliberate for drills):
- On each *new* connection (process start, or after the connection was lost: a server restart,
  ``pg_terminate_backend``, a database swapped in by rename) it creates the table if missing,
  re-reads ``max(height)`` and back-fills every block above it from chain.db. That is what a
  restarted indexer does after the plan's scenario 1 ("restore, then restart services").
- While a connection lives it only appends above its cursor. Rows deleted or altered by someone
  else are *not* repaired, and a dropped table is reported (degraded), not recreated, so damage a
  drill injects stays visible to row-count checks until the node is restarted.

Inserts adapt to the table they find: only columns that exist are written, so a ``blockchain``
table created by ``postgres_cluster.BLOCKCHAIN_DDL`` (ts, payload, merkle_root, ...) works too.
Rows are upserted on height. The password is never taken from the command line: libpq reads
PGPASSWORD / PGPASSFILE from the environment.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from recovery.local.chain import Block, ChainMissing, ChainStore

log = logging.getLogger("xai.node.indexer")

DDL = """
CREATE TABLE IF NOT EXISTS blockchain (
    height       bigint PRIMARY KEY,
    hash         text NOT NULL,
    prev_hash    text NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    tx_count     integer NOT NULL,
    transactions jsonb NOT NULL,
    miner        text,
    merkle_root  text,
    size_bytes   integer
)
"""


def redact_dsn(dsn: str) -> str:
    """host/port/dbname/user of a DSN, never its password."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable dsn>"
    keep = {k: parts[k] for k in ("host", "port", "dbname", "user") if k in parts}
    return " ".join(f"{k}={v}" for k, v in keep.items())


def row_for(block: Block, miner: str) -> dict[str, Any]:
    txs = block.transactions
    ts = datetime.fromtimestamp(block.timestamp, tz=timezone.utc)
    merkle = hashlib.sha256("".join(str(t.get("txid", "")) for t in txs).encode()).hexdigest()
    return {
        "height": block.height,
        "hash": block.hash,
        "prev_hash": block.prev_hash,
        "timestamp": ts,
        "ts": ts,
        "tx_count": len(txs),
        "transactions": Jsonb(txs),
        "payload": Jsonb({"transactions": txs}),
        "miner": miner,
        "merkle_root": merkle,
        "size_bytes": len(block.transactions_json),
        "difficulty": 1,
        "nonce": 0,
    }


class Indexer:
    def __init__(self, dsn: str, store: ChainStore, *, miner: str = "XAI-sim", batch: int = 500,
                 interval_s: float = 0.2, connect_timeout_s: int = 3) -> None:
        self.dsn = dsn
        self.store = store
        self.miner = miner
        self.batch = batch
        self.interval_s = interval_s
        self.connect_timeout_s = connect_timeout_s
        self.cursor = -1  # highest height written on the current connection
        self.state = "starting"
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_indexed_at: float | None = None
        self.connects = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._columns: list[str] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._disconnect()

    def poke(self) -> None:
        self._wake.set()

    def rewind(self, height: int) -> None:
        """Blocks above ``height`` were replaced (fork rollback): rewrite them."""
        with self._lock:
            self.cursor = min(self.cursor, height)
            self._generation += 1  # a batch in flight must not move the cursor past the rewind

    def status(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "state": self.state,
            "database": redact_dsn(self.dsn),
            "indexed_height": self.cursor,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_indexed_at": self.last_indexed_at,
            "connects": self.connects,
        }

    # -- work
    def _run(self) -> None:
        backoff = self.interval_s
        while not self._stop.is_set():
            failed = True
            try:
                self._step()
                backoff, failed = self.interval_s, False
            except ChainMissing as exc:
                self._degrade(f"nothing to index: {exc}", state="idle")
            except psycopg.OperationalError as exc:
                self._degrade(f"database unreachable: {_one_line(exc)}")
                self._disconnect()
                backoff = min(2.0, backoff * 2)
            except psycopg.Error as exc:
                # The connection still works, but the statement failed (table dropped, permissions...).
                self._degrade(f"indexing failed: {_one_line(exc)}")
                if self._conn is not None and self._conn.closed:
                    self._disconnect()
                backoff = min(2.0, backoff * 2)
            except Exception as exc:  # noqa: BLE001 - the indexer must never take the node down
                log.exception("indexer error")
                self._degrade(f"indexer error: {_one_line(exc)}")
                self._disconnect()
                backoff = min(2.0, backoff * 2)
            if failed:  # back off for real: new blocks must not hammer a database that is away
                self._stop.wait(backoff)
            else:
                self._wake.wait(backoff)
            self._wake.clear()

    def _degrade(self, message: str, state: str = "degraded") -> None:
        if message != self.last_error:
            log.warning("indexer %s: %s", state, message)
        self.state, self.last_error, self.last_error_at = state, message, time.time()

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._conn = None

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout_s,
                               application_name="xai-node-sim")
        try:
            conn.execute(DDL)
            self._columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'blockchain'"
            ).fetchall()]
            row = conn.execute("SELECT coalesce(max(height), -1) FROM blockchain").fetchone()
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self.cursor = int(row[0]) if row else -1
        self.connects += 1
        log.info("indexer connected to %s; table at height %s, back-filling from chain.db",
                 redact_dsn(self.dsn), self.cursor)
        return conn

    def _step(self) -> None:
        if self._conn is None or self._conn.closed:
            self._disconnect()
            self._conn = self._connect()
        conn = self._conn
        while not self._stop.is_set():
            with self._lock:
                start, generation = self.cursor + 1, self._generation
            blocks = self.store.blocks(start, self.batch)
            if not blocks:
                break
            cols = [c for c in row_for(blocks[0], self.miner) if c in self._columns]
            quoted = ", ".join(f'"{c}"' for c in cols)
            params = ", ".join(f"%({c})s" for c in cols)
            updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in cols if c != "height")
            sql = (f"INSERT INTO blockchain ({quoted}) VALUES ({params}) "
                   f"ON CONFLICT (height) DO UPDATE SET {updates}")
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.executemany(sql, [row_for(b, self.miner) for b in blocks])
            with self._lock:
                if generation == self._generation:
                    self.cursor = max(self.cursor, blocks[-1].height)
            self.last_indexed_at = time.time()
        self.state = "ok"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


__all__ = ["DDL", "Indexer", "redact_dsn"]
