"""The SQL the failover runs against a site's PostgreSQL: reachability, max(height), replay
position (the local environment's replication lag), a block's hash, the write probe.

Connection failures are the DatabaseError (a RecoveryError) ``recovery.postgres`` raises; nothing
here prints.
"""

from __future__ import annotations

import socket
from typing import Any

from recovery import postgres
from recovery.errors import RecoveryError, VerificationFailed
from recovery.stack import StackOutputs

def db_query(outputs: StackOutputs, sql: str, args: Any = None, *, timeout: int = 5) -> list[tuple[Any, ...]]:
    cp = postgres.resolve(outputs)
    cp.params["connect_timeout"] = str(timeout)
    with postgres.connect(cp, autocommit=True) as conn:
        return list(conn.execute(sql, args).fetchall())


def db_reachable(outputs: StackOutputs | None) -> bool:
    if outputs is None:
        return False
    try:
        db_query(outputs, "SELECT 1", timeout=3)
        return True
    except RecoveryError:
        return False


def db_answers(outputs: StackOutputs | None, timeout_s: float = 3.0) -> bool:
    """Whether the site's database endpoint accepts a TCP connection: its data plane, asked without
    its credential (reading that secret would ask the site's region, which may be the one lost)."""
    if outputs is None:
        return False
    try:
        with socket.create_connection((outputs.db_endpoint, int(outputs.db_port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def max_height(outputs: StackOutputs | None) -> int | None:
    if outputs is None:
        return None
    try:
        row = db_query(outputs, "SELECT max(height) FROM blockchain")[0]
    except RecoveryError:
        return None
    except Exception:  # noqa: BLE001 - no blockchain table yet
        return None
    return None if row[0] is None else int(row[0])


def tip_block(outputs: StackOutputs | None) -> tuple[int | None, float | None]:
    """(max(height), that block's timestamp as epoch seconds) of a site's index, (None, None) when unknown."""
    if outputs is None:
        return None, None
    try:
        rows = db_query(outputs, 'SELECT height, extract(epoch FROM "timestamp") FROM blockchain'
                                 " ORDER BY height DESC LIMIT 1")
    except Exception:  # noqa: BLE001 - unreachable, or no table yet
        return None, None
    return (int(rows[0][0]), float(rows[0][1])) if rows else (None, None)


def divergence(old: StackOutputs, writer: StackOutputs, *, batch: int = 500) -> dict[str, Any]:
    """What ``old`` (a former writer) holds that ``writer`` does not: its blocks above the last block
    both have with the same hash. Returns the common height, the blocks after it, their heights and
    the seconds they span (from the common block to ``old``'s newest)."""
    top, _ = tip_block(old)
    if top is None:
        return {"common_height": None, "blocks": 0, "seconds": 0.0, "heights": None}
    high = top
    while high >= 0:
        low = max(0, high - batch + 1)
        q = "SELECT height, hash FROM blockchain WHERE height BETWEEN %s AND %s"
        mine = dict(db_query(old, q, (low, high)))
        theirs = dict(db_query(writer, q, (low, high)))
        same = [h for h in sorted(mine, reverse=True) if theirs.get(h) == mine[h]]
        if same:
            common = int(same[0])
            break
        high = low - 1
    else:
        common = -1
    rows = db_query(old, 'SELECT count(*), min(height), max(height), extract(epoch FROM max("timestamp"))'
                         " FROM blockchain WHERE height > %s", (common,))[0]
    base = db_query(old, 'SELECT extract(epoch FROM "timestamp") FROM blockchain WHERE height = %s', (common,))
    count, lo, hi, newest = int(rows[0]), rows[1], rows[2], rows[3]
    seconds = round(float(newest) - float(base[0][0]), 3) if count and base else 0.0
    return {"common_height": common, "blocks": count, "seconds": seconds,
            "heights": [int(lo), int(hi)] if count else None}


def in_recovery_or_read_only(outputs: StackOutputs) -> bool | None:
    """Whether a site's database refuses writes (a standby, or read-only by default); None when it does not answer."""
    try:
        row = db_query(outputs, "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'",
                       timeout=3)[0]
    except RecoveryError:
        return None
    return bool(row[0])


def block_hash_matches(outputs: StackOutputs, height: int, tip_hash: str | None) -> bool | None:
    """Whether the database's row at ``height`` has ``tip_hash``; None when that block is not indexed (yet)."""
    try:
        row = db_query(outputs, "SELECT hash FROM blockchain WHERE height = %s", (height,))
    except Exception:  # noqa: BLE001 - no such table/row: nothing to compare
        return None
    return (row[0][0] == tip_hash) if row else None


def replay_lag(target: StackOutputs, writer: StackOutputs | None) -> dict[str, Any]:
    """PostgreSQL's lag of ``target`` behind ``writer``: with the writer reachable, the WAL the target
    has not replayed (``pg_current_wal_lsn()`` there minus ``pg_last_wal_replay_lsn()`` here) and, when
    that is not zero, the age of the last replayed commit; without the writer, only what the target
    received but has not replayed yet (that is replayed at promotion; anything never received is the loss)."""
    try:
        row = db_query(target, "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
                               " extract(epoch FROM now() - pg_last_xact_replay_timestamp()),"
                               " pg_last_xact_replay_timestamp()::text")[0]
    except RecoveryError as exc:
        return {"lag_s": None, "lag_bytes": None, "source": f"target database unreachable: {exc.problem}"}
    in_rec, received, replayed, age, last_ts = row
    if not in_rec:
        return {"lag_s": 0.0, "lag_bytes": 0, "source": "target is already a writer"}
    writer_lsn = _wal_position(writer) if db_reachable(writer) else None
    ref = writer_lsn or received
    behind = 0
    if ref and replayed:
        behind = int(db_query(target, "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (ref, replayed))[0][0])
    lag_s = float(age or 0.0) if behind > 0 else 0.0
    return {"lag_s": round(max(lag_s, 0.0), 3), "lag_bytes": max(behind, 0), "last_replayed_commit": last_ts,
            "source": "postgresql replay position vs " + ("the writer's WAL" if writer_lsn else "WAL received (writer unreachable)")}


def _wal_position(outputs: StackOutputs | None) -> str | None:
    """The WAL position a site has: written (a writer) or replayed (a standby)."""
    if outputs is None:
        return None
    try:
        return str(db_query(outputs, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                                     " ELSE pg_current_wal_lsn() END::text")[0][0])
    except RecoveryError:
        return None


def write_probe(outputs: StackOutputs, run_id: str, token: str) -> int | None:
    """Out of recovery, a real write and read-back of ``token`` in the probe table; returns max(height)
    after it. VerificationFailed when the database is still read-only or the row does not read back."""
    with postgres.connect(postgres.resolve(outputs), autocommit=True) as conn:
        in_rec = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if in_rec and in_rec[0]:
            raise VerificationFailed(f"{outputs.db_cluster_id} is still read-only (in recovery)",
                                     "check the promotion, then rerun")
        conn.execute("CREATE TABLE IF NOT EXISTS recovery_failover_probe (run_id text, token text PRIMARY KEY,"
                     " written_at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO recovery_failover_probe (run_id, token) VALUES (%s, %s)", (run_id, token))
        back = conn.execute("SELECT token FROM recovery_failover_probe WHERE token = %s", (token,)).fetchone()
        height = conn.execute("SELECT max(height) FROM blockchain").fetchone()
    if not back or back[0] != token:
        raise VerificationFailed("the write probe did not read back", "check the database")
    return height[0] if height else None


__all__ = ["db_query", "db_reachable", "db_answers", "max_height", "tip_block", "divergence", "in_recovery_or_read_only",
           "block_hash_matches", "replay_lag", "write_probe"]
