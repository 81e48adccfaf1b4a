"""The simulated node's chain: blocks in SQLite (``chain.db``), each hash linked to the one before.

    blocks(height INTEGER PRIMARY KEY, hash TEXT, prev_hash TEXT, timestamp REAL, transactions TEXT)

``hash = sha256("<height>|<prev_hash>|<timestamp repr>|<transactions JSON>")`` where the
transactions JSON is canonical (sorted keys, no spaces). Genesis is height 0 with prev_hash
``"0" * 64`` and is the same on every node (fixed timestamp and content), so nodes created
independently share a lineage.

``verify_chain_file(path)`` is the check behind the node's verify endpoint, and is importable by
the drills (``recovery drill chain`` can verify an extracted ``chain.db`` without running a node).
It never creates a file: a missing ``chain.db`` is reported, not papered over.

The store never creates ``chain.db`` either, except through ``init_chain`` (the node's ``--init``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZERO_HASH = "0" * 64
GENESIS_TIMESTAMP = 1704067200.0  # 2024-01-01T00:00:00Z
GENESIS_TRANSACTIONS: list[dict[str, Any]] = [
    {"txid": hashlib.sha256(b"xai-genesis").hexdigest(), "from": "coinbase", "to": "XAI-genesis", "amount": 0, "fee": 0}
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height       INTEGER PRIMARY KEY,
    hash         TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    timestamp    REAL NOT NULL,
    transactions TEXT NOT NULL
);
"""


class ChainMissing(Exception):
    """chain.db is not there (or not a chain): the node reports it instead of creating one."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def block_hash(height: int, prev_hash: str, timestamp: float, transactions_json: str) -> str:
    material = f"{int(height)}|{prev_hash}|{float(timestamp)!r}|{transactions_json}"
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Block:
    height: int
    hash: str
    prev_hash: str
    timestamp: float
    transactions_json: str

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return list(json.loads(self.transactions_json))

    def to_api(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "hash": self.hash,
            "prev_hash": self.prev_hash,
            "timestamp": self.timestamp,
            "transactions": self.transactions,
        }

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> "Block":
        """A block received from another node; raises ValueError when it does not hash right."""
        try:
            blk = cls(
                height=int(data["height"]),
                hash=str(data["hash"]),
                prev_hash=str(data["prev_hash"]),
                timestamp=float(data["timestamp"]),
                transactions_json=canonical_json(data["transactions"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed block: {exc}") from None
        if not blk.is_self_consistent():
            raise ValueError(f"block {blk.height} does not match its hash")
        return blk

    @classmethod
    def make(cls, height: int, prev_hash: str, timestamp: float, transactions: list[dict[str, Any]]) -> "Block":
        txj = canonical_json(transactions)
        return cls(height, block_hash(height, prev_hash, timestamp, txj), prev_hash, timestamp, txj)

    def is_self_consistent(self) -> bool:
        return self.hash == block_hash(self.height, self.prev_hash, self.timestamp, self.transactions_json)


GENESIS = Block.make(0, ZERO_HASH, GENESIS_TIMESTAMP, GENESIS_TRANSACTIONS)


@dataclass
class VerifyResult:
    is_valid: bool
    checked_blocks: int
    block_height: int
    first_bad_height: int | None = None
    reason: str | None = None
    genesis_hash: str | None = None
    tip_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "is_valid": self.is_valid,
            "checked_blocks": self.checked_blocks,
            "block_height": self.block_height,
            "genesis_hash": self.genesis_hash,
            "tip_hash": self.tip_hash,
        }
        if self.first_bad_height is not None:
            out["first_bad_height"] = self.first_bad_height
        if self.reason:
            out["reason"] = self.reason
        out.update(self.extra)
        return out


def _open_ro(path: Path) -> sqlite3.Connection:
    # mode=ro never creates the file: a deleted chain.db stays deleted.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def verify_chain_file(path: str | os.PathLike[str]) -> VerifyResult:
    """Recompute the whole hash chain of ``path`` from disk."""
    p = Path(path)
    if not p.is_file():
        return VerifyResult(False, 0, -1, reason=f"chain data missing: {p} does not exist")
    try:
        conn = _open_ro(p)
    except sqlite3.Error as exc:
        return VerifyResult(False, 0, -1, reason=f"cannot open {p}: {exc}")
    checked = 0
    prev: Block | None = None
    genesis_hash: str | None = None
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()
        if not ok or ok[0] != "ok":
            return VerifyResult(False, 0, -1, reason=f"sqlite quick_check failed: {ok[0] if ok else '?'}")
        rows = conn.execute(
            "SELECT height, hash, prev_hash, timestamp, transactions FROM blocks ORDER BY height"
        )
        for height, h, ph, ts, txj in rows:
            blk = Block(int(height), str(h), str(ph), float(ts), str(txj))
            expected = 0 if prev is None else prev.height + 1
            if blk.height != expected:
                return VerifyResult(False, checked, _tip(conn), first_bad_height=expected,
                                    reason=f"blocks {expected}..{blk.height - 1} are missing",
                                    genesis_hash=genesis_hash)
            if prev is None:
                genesis_hash = blk.hash
                if blk.prev_hash != ZERO_HASH:
                    return VerifyResult(False, checked, _tip(conn), first_bad_height=0,
                                        reason="genesis block does not start from the zero hash")
            elif blk.prev_hash != prev.hash:
                return VerifyResult(False, checked, _tip(conn), first_bad_height=blk.height,
                                    reason=f"block {blk.height} does not link to block {prev.height}",
                                    genesis_hash=genesis_hash)
            if not blk.is_self_consistent():
                return VerifyResult(False, checked, _tip(conn), first_bad_height=blk.height,
                                    reason=f"block {blk.height} content does not match its hash",
                                    genesis_hash=genesis_hash)
            checked += 1
            prev = blk
    except sqlite3.Error as exc:
        return VerifyResult(False, checked, -1, reason=f"cannot read {p}: {exc}", genesis_hash=genesis_hash)
    except (TypeError, ValueError) as exc:
        return VerifyResult(False, checked, -1, first_bad_height=checked, reason=f"malformed row: {exc}")
    finally:
        conn.close()
    if prev is None:
        return VerifyResult(False, 0, -1, reason="chain.db holds no blocks (no genesis)")
    return VerifyResult(True, checked, prev.height, genesis_hash=genesis_hash, tip_hash=prev.hash)


def _tip(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(height) FROM blocks").fetchone()
    return -1 if row is None or row[0] is None else int(row[0])


def init_chain(path: str | os.PathLike[str]) -> bool:
    """Create chain.db with the shared genesis block. Returns False (and changes nothing) when
    chain.db already exists: an existing chain is never overwritten."""
    p = Path(path)
    if p.exists():
        return False
    p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(p)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        _insert(conn, [GENESIS])
        conn.commit()
    finally:
        conn.close()
    return True


def _insert(conn: sqlite3.Connection, blocks: list[Block]) -> None:
    conn.executemany(
        "INSERT INTO blocks(height, hash, prev_hash, timestamp, transactions) VALUES (?, ?, ?, ?, ?)",
        [(b.height, b.hash, b.prev_hash, b.timestamp, b.transactions_json) for b in blocks],
    )


class ChainStore:
    """chain.db for a running node.

    One long-lived read-write connection (so WAL works as it would in a real node), guarded by a
    lock. Before each use it checks that the file on disk is still the one it has open: a deleted
    chain.db raises ChainMissing (never recreated), a replaced one (a restore renamed a directory
    into place) is reopened.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._ident: tuple[int, int] | None = None
        self.lock = threading.RLock()

    def _identity(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise ChainMissing(f"chain data missing: {self.path} does not exist") from None
        return (st.st_dev, st.st_ino)

    def _connection(self) -> sqlite3.Connection:
        try:
            ident = self._identity()
        except ChainMissing:
            # Let go of the vanished file now. (SQLite checks the file has not moved before it
            # checkpoints or deletes a WAL on close, so a restored WAL beside it is safe.)
            self.close()
            raise
        if self._conn is not None and ident == self._ident:
            return self._conn
        self.close()
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=10, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("SELECT 1 FROM blocks LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ChainMissing(f"{self.path} is not a usable chain: {exc}") from None
        self._conn, self._ident = conn, ident
        return conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
            self._conn, self._ident = None, None

    def tip(self) -> Block | None:
        """The highest block, or None for an empty table. Raises ChainMissing."""
        with self.lock:
            try:
                row = self._connection().execute(
                    "SELECT height, hash, prev_hash, timestamp, transactions FROM blocks ORDER BY height DESC LIMIT 1"
                ).fetchone()
            except sqlite3.Error as exc:
                self.close()
                raise ChainMissing(f"cannot read {self.path}: {exc}") from None
        return None if row is None else Block(int(row[0]), row[1], row[2], float(row[3]), row[4])

    def height(self) -> int:
        t = self.tip()
        return -1 if t is None else t.height

    def blocks(self, start: int, limit: int) -> list[Block]:
        with self.lock:
            try:
                rows = self._connection().execute(
                    "SELECT height, hash, prev_hash, timestamp, transactions FROM blocks "
                    "WHERE height >= ? ORDER BY height LIMIT ?",
                    (int(start), int(limit)),
                ).fetchall()
            except sqlite3.Error as exc:
                self.close()
                raise ChainMissing(f"cannot read {self.path}: {exc}") from None
        return [Block(int(r[0]), r[1], r[2], float(r[3]), r[4]) for r in rows]

    def block_at(self, height: int) -> Block | None:
        got = self.blocks(height, 1)
        return got[0] if got and got[0].height == height else None

    def append(self, blocks: list[Block]) -> None:
        """Append blocks that extend the current tip; ValueError when they do not link."""
        if not blocks:
            return
        with self.lock:
            tip = self.tip()
            prev_h, prev_hash = (-1, ZERO_HASH) if tip is None else (tip.height, tip.hash)
            for b in blocks:
                if b.height != prev_h + 1 or b.prev_hash != prev_hash or not b.is_self_consistent():
                    raise ValueError(f"block {b.height} does not extend the tip at {prev_h}")
                prev_h, prev_hash = b.height, b.hash
            conn = self._connection()
            try:
                with conn:
                    _insert(conn, blocks)
            except sqlite3.Error as exc:
                self.close()
                raise ChainMissing(f"cannot write {self.path}: {exc}") from None

    def truncate_above(self, height: int) -> int:
        """Drop blocks above ``height`` (a fork being rolled back); returns how many."""
        with self.lock:
            conn = self._connection()
            with conn:
                cur = conn.execute("DELETE FROM blocks WHERE height > ?", (int(height),))
            return int(cur.rowcount)


__all__ = [
    "GENESIS", "ZERO_HASH", "Block", "ChainMissing", "ChainStore", "VerifyResult",
    "block_hash", "canonical_json", "init_chain", "verify_chain_file",
]
