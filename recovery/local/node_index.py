"""A simulated node's view of its index database: the writer gate and the catch-up from it.

- **Writer gate.** A node mines only while its own index database accepts writes
  (``pg_is_in_recovery()`` false, ``transaction_read_only`` and ``default_transaction_read_only``
  off): the database's role decides which site writes, so a promoted site's node mines and an old
  primary, back fenced, does not. A database that does not answer keeps the last answer; the
  connection is retried after ``GATE_RETRY_S`` (a restore that renames the database terminates
  its sessions and must find it free).
- **Catch-up.** A node whose tip is below the index's max(height) appends the rows above it, each
  rebuilt as a block and checked (it hashes right, links, no gap), standing in for syncing from
  the wider P2P network. When the index holds another block at the node's tip (a fork: an old
  primary after a failover) the node rolls back to the last block both hold, keeping the removed
  blocks in ``chain.db.diverged-<UTC stamp>.jsonl`` beside chain.db.

Used by recovery/local/node_sim.py; the password comes from PGPASSWORD/PGPASSFILE, never the DSN.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import psycopg

from recovery.local.chain import Block, ChainMissing, ChainStore, canonical_json
from recovery.local.node_api import one_line

log = logging.getLogger("xai.node")

GATE_RETRY_S = 2.0  # seconds before the writer gate reconnects to a database that went away
FENCED_REASON = "fenced: the index database is read-only (this site is not the writer)"


class IndexDatabase:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None
        self.retry_at = 0.0
        self.db_writable: bool | None = None  # None = not asked yet (or never answered)
        self.index_height: int | None = None  # max(height), as last read

    def check_writer(self) -> bool | None:
        """Ask the index database whether it accepts writes (the writer gate).

        A database that does not answer leaves the last answer in place: a writer whose database
        restarts keeps mining (its indexer back-fills), a fenced site stays fenced."""
        if self.conn is None and time.monotonic() < self.retry_at:
            return self.db_writable
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3,
                                                  application_name="xai-node-sim-gate")
            row = self.conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'),"
                " current_setting('default_transaction_read_only')").fetchone()
            writable = bool(row) and not row[0] and row[1] == "off" and row[2] == "off"
            if writable != self.db_writable:
                log.warning("index database %s", "accepts writes: mining" if writable else f"is read-only: {FENCED_REASON}")
            self.db_writable = writable
        except psycopg.Error:
            if self.conn is not None:
                try:
                    self.conn.close()
                except psycopg.Error:
                    pass
            # Back off like the indexer: a restore that renames the database terminates its
            # sessions and must find it free, not reconnected to at every block.
            self.conn, self.retry_at = None, time.monotonic() + GATE_RETRY_S
        return self.db_writable

    def _index_rows(self, above: int, limit: int = 500) -> list[Block]:
        rows = self.conn.execute(
            'SELECT height, hash, prev_hash, extract(epoch FROM "timestamp")::text, transactions::text'
            " FROM blockchain WHERE height > %s ORDER BY height LIMIT %s", (above, limit)).fetchall()
        return [Block(int(r[0]), str(r[1]), str(r[2]), float(r[3]), canonical_json(json.loads(r[4]))) for r in rows]

    def catch_up(self, store: ChainStore) -> int:
        """Append the index's blocks above the tip (after rolling a fork back); returns how many."""
        if self.conn is None or self.conn.closed:
            return 0
        added = 0
        try:
            row = self.conn.execute("SELECT max(height) FROM blockchain").fetchone()
            self.index_height = None if not row or row[0] is None else int(row[0])
            with store.lock:
                tip = store.tip()
                if tip is None or self.index_height is None:
                    return 0
                same = self.conn.execute("SELECT hash FROM blockchain WHERE height = %s", (tip.height,)).fetchone()
                if same is not None and same[0] != tip.hash:
                    tip = self._roll_back_fork(store, tip)  # the index holds another block at our tip
                if self.index_height <= tip.height:
                    return 0
                good: list[Block] = []
                prev_h, prev_hash = tip.height, tip.hash
                for b in self._index_rows(tip.height):
                    # only a gapless, linked, self-consistent run: a hole in the index (rows deleted
                    # by a drill) or a row that does not rebuild its block ends it
                    if b.height != prev_h + 1 or b.prev_hash != prev_hash or not b.is_self_consistent():
                        break
                    good.append(b)
                    prev_h, prev_hash = b.height, b.hash
                store.append(good)
                added = len(good)
        except (psycopg.Error, ChainMissing, ValueError) as exc:
            log.warning("catching up from the index failed: %s", one_line(exc))
            return 0
        if added:
            log.info("caught up %d block(s) from the index database", added)
        return added

    def _roll_back_fork(self, store: ChainStore, tip: Block) -> Block:
        """Roll back to the highest block the index holds with the same hash; the removed blocks
        are written to chain.db.diverged-<stamp>.jsonl first."""
        h = tip.height
        while h > 0:
            mine = store.block_at(h)
            theirs = self.conn.execute("SELECT hash FROM blockchain WHERE height = %s", (h,)).fetchone()
            if mine is not None and theirs is not None and theirs[0] == mine.hash:
                break
            h -= 1
        removed = store.blocks(h + 1, 1_000_000)
        if not removed:
            return tip
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = Path(store.path).with_name(f"chain.db.diverged-{stamp}.jsonl")
        with open(aside, "a", encoding="utf-8") as f:
            for b in removed:
                f.write(json.dumps(b.to_api()) + "\n")
        store.truncate_above(h)
        log.warning("fork: rolled back %d block(s) above %d that the index does not hold (kept in %s)",
                    len(removed), h, aside.name)
        new_tip = store.tip()
        assert new_tip is not None
        return new_tip



__all__ = ["IndexDatabase", "FENCED_REASON", "GATE_RETRY_S"]
