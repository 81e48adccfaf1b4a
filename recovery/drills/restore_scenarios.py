"""`drill full` scenarios for the DR plan's scenarios 1 and 2, on the local environment.

database-corruption (component postgresql)
    backup         a real `backup db` of the live database (the last good backup)
    keep-mining    the node mines on, so the disaster loses real blocks
    inject         one transaction: count what the table holds (the state at the disaster), then
                   delete a run of rows and alter one row's hash
    detect         the integrity check (``checks.db_health``: heights 0..max all present, every
                   prev_hash equal to the hash below) fails
    restore        the restore-db runbook with that backup (stop node, scratch restore, verify vs
                   manifest, swap by rename, REINDEX as the plan does on corruption, start node)
    verify         the integrity check passes again and the node is synced
    RPO            blocks: max(height) at the disaster - max(height) restored (verified in the
                   scratch copy); seconds: the time between those two blocks' timestamps

chain-data-loss (component node)
    backup         a real `backup chain` of the node's data dir
    keep-mining    as above
    inject         the data dir disappears from its path (moved aside into the drill's work dir,
                   so what was lost can be counted; deleted at the end)
    detect         the node API: verify is_valid false / consensus_state no-chain-data
    restore        the restore-chain runbook (extract to staging, check chain.db, stop node, swap
                   in, start, wait for sync, node verify)
    reindex        the PostgreSQL index still holds the lost blocks above the restored tip; they
                   are deleted and the node's indexer reconnects and re-indexes from the chain
                   (restore-chain does not do this; see docs/drills.md)
    verify         verify_chain_file on the data dir, node verify, node synced and mining again,
                   the index consistent with the chain
    RPO            blocks: the lost chain's tip - the restored chain's tip; seconds between their
                   timestamps

Both restore with a journal in the drill's work directory (copied into the record's ``extra``).

The chain check (`verify_chain_file`) comes from recovery/local/chain.py on purpose: it is the
simulated node's chain format, and only the local environment's node can be damaged this way.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from recovery import knobs
from recovery.aws import acting_as
from recovery.backups.take import backup_chain, backup_db
from recovery.drills.base import DrillRun, Step, scenario
from recovery.drills.checks import (NotYet, block_time_db, chain_block, chain_tip, db_health, db_server, wait_for)
from recovery.engine.console import ConsoleReporter
from recovery.engine.journal import LocalJournalStore
from recovery.errors import IntegrityError
from recovery.local.chain import verify_chain_file
from recovery.node import NodeClient
from recovery.runbooks.restore_chain import ChainRestoreOptions, restore_chain
from recovery.runbooks.restore_db import DbRestoreOptions, quarantine_name, restore_db

# Read at import, but `recovery` validates both before a command starts (recovery/knobs.py).
BLOCKS_AFTER_BACKUP = knobs.int_value("RECOVERY_DRILL_BLOCKS_AFTER_BACKUP")
TIMEOUT_S = knobs.value("RECOVERY_DRILL_TIMEOUT_SECONDS")


def _store(d: DrillRun) -> Any:
    return LocalJournalStore(d.work_dir / "journal")


def _reporter(d: DrillRun) -> Any:
    """Runbook progress as drill progress lines (stderr), never a prompt."""
    class _Say:
        def write(self, text: str) -> int:
            for line in text.rstrip("\n").splitlines():
                if line.strip():
                    d.say(f"    {line}")
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    class _Reporter(ConsoleReporter):
        def plan(self, plan: Any) -> None:  # the drill's own steps say what happens
            pass

        def summary(self, journal: Any) -> None:
            self.message(f"{journal.runbook} on {journal.target}: {journal.status} (run {journal.run_id})")

    return _Reporter(stream=_Say(), interactive=False, color=False)  # type: ignore[arg-type]


def _node(d: DrillRun) -> Any:
    return NodeClient(d.outputs.node_api_url, timeout_s=5, retries=1)


def _journal_summary(journal: Any) -> dict[str, Any]:
    doc = journal.to_dict()
    return {"run_id": doc.get("run_id"), "runbook": doc.get("runbook"),
            "steps": [{k: s.get(k) for k in ("name", "status", "started_at", "ended_at", "duration_s", "detail")}
                      for s in doc.get("steps", [])]}


def _add_runbook_steps(d: DrillRun, journal: Any, prefix: str) -> None:
    """The runbook's own steps (from its journal's real timings) as sub-steps of the drill's timeline,
    so the report shows where the recovery time went."""
    for rec in journal.steps:
        if not rec.started_at or not rec.ended_at:
            continue
        st = Step(f"{prefix}: {rec.name}", datetime.fromisoformat(rec.started_at).timestamp(),
                  datetime.fromisoformat(rec.ended_at).timestamp(), "ok" if rec.status == "ok" else str(rec.status),
                  {k: v for k, v in rec.detail.items() if k in ("stopped", "started", "rows", "max_height", "files")})
        d.steps.append(st)


def _keep_mining(d: DrillRun, height_now: Any, start: int, what: str) -> int:
    want = start + BLOCKS_AFTER_BACKUP
    with d.step("keep-mining") as st:
        got = wait_for(f"the node mining {BLOCKS_AFTER_BACKUP} blocks after the backup",
                       lambda: (h if (h := height_now()) is not None and h >= want else None), TIMEOUT_S)
        st.detail.update(after_backup=start, now=got, of=what)
    return int(got)


# ------------------------------------------------------------------------------------- scenario 1


def _damage_rows(server: Any, db: str, backup_max: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Delete ten rows below the backup's max(height) and alter the hash at it, in one transaction
    holding the table (the indexer waits; readers do not). Returns the state at the disaster and
    what was damaged."""
    with server.connect(db) as c:
        with c.transaction():
            c.execute("LOCK TABLE blockchain IN EXCLUSIVE MODE")
            top, rows = c.execute("SELECT max(height), count(*) FROM blockchain").fetchone()
            top_time = c.execute('SELECT extract(epoch FROM "timestamp") FROM blockchain WHERE height = %s',
                                 (top,)).fetchone()[0]
            lo = max(1, backup_max // 3)
            hi = min(lo + 9, backup_max - 1)
            deleted = c.execute("DELETE FROM blockchain WHERE height BETWEEN %s AND %s", (lo, hi)).rowcount
            c.execute("UPDATE blockchain SET hash = md5(hash) WHERE height = %s", (backup_max,))
    return ({"max_height": int(top), "rows": int(rows), "tip_time": float(top_time)},
            {"deleted_heights": f"{lo}..{hi}", "deleted_rows": deleted, "altered_height": backup_max})


@scenario("database-corruption", component="postgresql", order=10,
          description="rows deleted from and altered in the blockchain table; restored from the last good "
                      "backup with the restore-db runbook")
def database_corruption(d: DrillRun) -> None:
    o = d.outputs
    server = db_server(o)
    db = server.cp.params.get("dbname") or o.db_name

    with d.step("preflight") as st:  # measure from a healthy start (a killed drill may have left damage)
        h = db_health(server, db)
        st.detail.update(h)
        if h["problems"]:
            raise IntegrityError(f"{db}.blockchain is already damaged before the drill: {'; '.join(h['problems'])}",
                                 "recover it (`recovery restore db --stack local --force`) or restart the local "
                                 "environment (`recovery local down && recovery local up`)")

    with d.step("backup") as st, acting_as(o, "backup"):
        m = backup_db(o)
        st.detail.update(key=m.key, rows=m.db_rows, max_height=m.db_max_height)
    assert m.db_max_height is not None
    d.extra.update(backup=m.key, last_good_backup={"max_height": m.db_max_height, "rows": m.db_rows,
                                                   "snapshot_at": m.started_at})
    _keep_mining(d, lambda: db_health(server, db)["max_height"], m.db_max_height, "max(height) in PostgreSQL")

    with d.step("inject") as st:
        at_disaster, damage = _damage_rows(server, db, int(m.db_max_height))
        d.injected()
        st.detail.update(**damage, **at_disaster)
    d.extra["at_disaster"] = at_disaster

    with d.step("detect") as st:
        h = db_health(server, db)
        st.detail.update(h)
        if not h["problems"]:
            raise IntegrityError("the integrity check did not see the injected damage", "the detection check is broken")
        with _node(d) as node:
            node_height = node.block_height()
        st.detail["node_height"] = node_height
    d.detected(f"integrity check of {db}.blockchain: {'; '.join(h['problems'])} (node height {node_height})")

    with d.step("restore") as st:
        opts = DbRestoreOptions(backup=m.key, force=True, reindex=True)  # the plan: REINDEX on corruption
        with acting_as(o, "restore"):
            journal, _ = restore_db(o, opts, _store(d), yes=True, reporter=_reporter(d))
        assert journal is not None
        q = quarantine_name(opts.target_db or db, journal.run_id)
        d.cleanup(lambda: server.drop(q))  # the damaged copy, kept by the runbook for forensics
        restored = journal.step("verify-scratch").detail
        st.detail.update(run_id=journal.run_id, quarantined_as=q, restored_rows=restored.get("rows"),
                         restored_max_height=restored.get("max_height"))
        d.extra["restore_journal"] = _journal_summary(journal)
    _add_runbook_steps(d, journal, "restore-db")
    restored_h = int(restored["max_height"])

    with d.step("verify") as st:
        def healthy() -> dict[str, Any] | None:
            h = db_health(server, db)
            if h["problems"] or h["max_height"] is None or h["max_height"] < restored_h:
                raise NotYet(f"integrity check: {'; '.join(h['problems']) or 'max(height) below the restored height'}")
            with _node(d) as node:
                info = node.blockchain_info()
            if not info.is_synced:
                raise NotYet(f"node not synced ({info.consensus_state})")
            return {**h, "node_height": info.block_height}

        good = wait_for("the restored database passing the integrity check with the node synced", healthy, TIMEOUT_S)
        st.detail.update(good)
    d.recovered()

    restored_time = block_time_db(server, db, restored_h)
    lost_blocks = int(at_disaster["max_height"]) - restored_h
    lost_seconds = max(0.0, at_disaster["tip_time"] - (restored_time or at_disaster["tip_time"]))
    d.lost(blocks=lost_blocks, seconds=lost_seconds)
    d.extra["restored"] = {"max_height": restored_h, "block_time": restored_time,
                           "back_filled_by_node_after_restart": good["max_height"] - restored_h}


# ------------------------------------------------------------------------------------- scenario 2


def _reindex_above(server: Any, db: str, height: int) -> int:
    """Delete index rows above ``height`` and make the node's indexer reconnect (it then back-fills
    from chain.db above max(height)). One transaction holding an ACCESS EXCLUSIVE lock, so the
    reconnecting indexer reads max(height) only after the delete."""
    with server.connect(db) as c:
        with c.transaction():
            c.execute(sql.SQL("LOCK TABLE blockchain IN ACCESS EXCLUSIVE MODE"))
            n = c.execute("DELETE FROM blockchain WHERE height > %s", (height,)).rowcount
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND application_name = 'xai-node-sim' "
                      "AND pid <> pg_backend_pid()")
    return int(n)


def _node_broken(d: DrillRun) -> dict[str, Any] | None:
    """What the node says once it notices its data dir is gone, or None while it does not yet."""
    with _node(d) as node:
        report = node.verify_report()
        info = node.blockchain_info()
    if report.get("is_valid") is False or info.consensus_state == "no-chain-data":
        return {"is_valid": report.get("is_valid"), "reason": report.get("reason"),
                "consensus_state": info.consensus_state, "block_height": info.block_height}
    return None


def _serving(d: DrillRun, server: Any, db: str, data: Path, restored_h: int) -> dict[str, Any]:
    """The node serves a valid, synced chain past the restored height and the index agrees with it;
    NotYet otherwise."""
    with _node(d) as node:
        report = node.verify_report()
        info = node.blockchain_info()
    if not (report.get("is_valid") and info.is_synced and info.block_height > restored_h):
        raise NotYet(f"node verify is_valid={report.get('is_valid')}, synced={info.is_synced}, "
                     f"height {info.block_height} (restored {restored_h}; waiting for it to mine on)")
    h = db_health(server, db)
    if h["problems"] or h["max_height"] is None or h["max_height"] < restored_h:
        raise NotYet(f"index integrity: {'; '.join(h['problems']) or 'max(height) below the restored height'}")
    blk = chain_block(data / "chain.db", h["max_height"])
    with server.connect(db) as c:
        row = c.execute("SELECT hash FROM blockchain WHERE height = %s", (h["max_height"],)).fetchone()
    if blk is None or row is None or row[0] != blk[1]:
        raise NotYet(f"index tip {h['max_height']} is not on the restored chain")
    return {"node_height": info.block_height, "index_rows": h["rows"], "index_max_height": h["max_height"]}


@scenario("chain-data-loss", component="node", order=20,
          description="the node's data directory deleted; restored from the last chain backup with the "
                      "restore-chain runbook")
def chain_data_loss(d: DrillRun) -> None:
    o = d.outputs
    data = Path(str(o.node_data_dir))
    server = db_server(o)
    db = server.cp.params.get("dbname") or o.db_name

    def node_height() -> int:
        with _node(d) as node:
            return node.block_height()

    with d.step("preflight") as st:
        v = verify_chain_file(data / "chain.db")
        st.detail.update(is_valid=v.is_valid, block_height=v.block_height, reason=v.reason)
        if not v.is_valid:
            raise IntegrityError(f"the node's chain is already broken before the drill: {v.reason}",
                                 "restore it (`recovery restore chain --stack local`) or restart the local "
                                 "environment (`recovery local down && recovery local up`)")
        h = db_health(server, db)  # the verify step holds the index to the chain too
        if h["problems"]:
            raise IntegrityError(f"{db}.blockchain is already damaged before the drill: {'; '.join(h['problems'])}",
                                 "recover it (`recovery restore db --stack local --force`) or restart the local "
                                 "environment (`recovery local down && recovery local up`)")

    with d.step("backup") as st:
        before = node_height()
        with acting_as(o, "backup"):
            m = backup_chain(o, data)
        st.detail.update(key=m.key, files=m.file_count, node_height_before=before)
    d.extra["backup"] = m.key
    _keep_mining(d, node_height, before + 1, "node height")

    lost_dir = d.work_dir / "lost-data-dir"
    d.cleanup(lambda: shutil.rmtree(lost_dir, ignore_errors=True))
    with d.step("inject") as st:
        os.rename(data, lost_dir)  # gone from its path at once, as `rm -rf` would make it
        d.injected()
        st.detail.update(removed=str(data))

    with d.step("detect") as st:
        seen = wait_for("the node noticing the lost data dir", lambda: _node_broken(d), 30, interval_s=0.1)
        st.detail.update(seen)
    d.detected(f"node API: verify is_valid={seen['is_valid']} ({seen['reason']}), "
               f"consensus_state {seen['consensus_state']}")

    with d.step("count-lost") as st:  # what existed at the moment of the disaster
        top, top_time, top_hash = chain_tip(lost_dir / "chain.db")
        st.detail.update(max_height=top, tip_hash=top_hash)
    at_disaster = {"max_height": top, "tip_time": top_time}
    d.extra["at_disaster"] = at_disaster

    with d.step("restore") as st:
        opts = ChainRestoreOptions(data_dir=str(data), backup=m.key, owner="", node_url=o.node_api_url,
                                   sync_timeout_s=TIMEOUT_S, sync_interval_s=0.5)
        with acting_as(o, "restore"):
            journal, _ = restore_chain(o, opts, _store(d), yes=True, reporter=_reporter(d))
        assert journal is not None
        restored_h = int(journal.step("check-chain-db").detail["max_height"])
        st.detail.update(run_id=journal.run_id, restored_max_height=restored_h)
        d.extra["restore_journal"] = _journal_summary(journal)
    _add_runbook_steps(d, journal, "restore-chain")

    with d.step("reindex") as st:
        st.detail.update(deleted_index_rows=_reindex_above(server, db, restored_h), above_height=restored_h)

    with d.step("verify") as st:
        v = verify_chain_file(data / "chain.db")
        if not v.is_valid:
            raise IntegrityError(f"the restored chain fails verification: {v.reason}", "see the drill report")
        st.detail.update(chain_valid=True, checked_blocks=v.checked_blocks)
        st.detail.update(wait_for("the node serving a valid, synced chain with a consistent index",
                                  lambda: _serving(d, server, db, data, restored_h), TIMEOUT_S))
    d.recovered()

    restored = chain_block(data / "chain.db", restored_h)
    lost_seconds = max(0.0, (top_time or 0.0) - (restored[0] if restored else top_time or 0.0))
    d.lost(blocks=top - restored_h, seconds=lost_seconds)
    d.extra["restored"] = {"max_height": restored_h, "block_time": restored[0] if restored else None}
    shutil.rmtree(lost_dir, ignore_errors=True)
