"""The simulated XAI node as a real process: real HTTP, real SQLite chain, real PostgreSQL indexing,
real signals. Damage is injected the way a drill does it: by editing rows and deleting files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest

from recovery.errors import NodeApiError
from recovery.local.chain import GENESIS, verify_chain_file
from recovery.local.node_process import NodeProcess, start_node
from recovery.local.postgres_cluster import PostgresCluster
from recovery.node import NodeClient

pytestmark = pytest.mark.timeout(60)


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_pg() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start nodes under tmp_path; every one is stopped at the end, even when a test fails."""
    started: list[NodeProcess] = []

    def start(name: str = "xai-node", **kw: Any) -> NodeProcess:
        kw.setdefault("peer_heal_interval", 0.1)
        node = start_node(tmp_path / name / "blockchain", name=name, **kw)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop(5)


def wait_until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except psycopg.Error as exc:  # e.g. the node has not created the table yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def post_raw(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chain_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT height, hash, prev_hash, timestamp, transactions FROM blocks ORDER BY height").fetchall()


def chain_summary(path: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        n, top = conn.execute("SELECT count(*), max(height) FROM blocks").fetchone()
    return int(n), int(top)


def snapshot_chain(src: Path, dest_dir: Path) -> Path:
    """A consistent copy of a live chain.db (SQLite's online backup), as a backup would take."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "chain.db"
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as s, sqlite3.connect(dest) as d:
        s.backup(d)
    return dest


def pg_summary(cluster: PostgresCluster, dbname: str | None = None) -> tuple[int, int | None]:
    with cluster.connect(dbname) as conn:
        n, top = conn.execute("SELECT count(*), max(height) FROM blockchain").fetchone()  # type: ignore[misc]
    return int(n), top


def swap_database(cluster: PostgresCluster, statement: str, busy_db: str) -> None:
    """Run a rename/copy that needs ``busy_db`` free, as a restore does: terminate its sessions and
    retry while the node reconnects in between (it backs off, so this settles quickly)."""
    deadline = time.monotonic() + 10
    with cluster.connect("postgres") as admin:
        while True:
            admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (busy_db,))
            try:
                admin.execute(statement)
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise


def chain_file(node: NodeProcess) -> Path:
    return node.data_dir / "chain.db"


# -- mining and indexing -----------------------------------------------------------------------


def test_mining_advances_and_indexes_rows_into_postgres(node_pg: PostgresCluster, nodes: Callable[..., NodeProcess]) -> None:
    node_pg.create_database("xai_index")
    node = nodes(init=True, mine_interval=0.05, pg_dsn=node_pg.conninfo("xai_index"), pg_password=node_pg.password)
    assert {"chain.db", "node.json", "peers.json"} <= set(os.listdir(node.data_dir))
    assert json.loads((node.data_dir / "node.json").read_text())["genesis_hash"] == GENESIS.hash
    # The password went through the environment, not the command line.
    assert node_pg.password not in Path(f"/proc/{node.pid}/cmdline").read_text()

    client = NodeClient(node.url)
    first = client.block_height()
    wait_until(lambda: client.block_height() >= first + 10, what="ten mined blocks")
    assert client.is_mining() is True
    node.post("/admin/mining", {"enabled": False})
    assert client.is_mining() is False

    n, top = chain_summary(chain_file(node))
    assert top == client.block_height() and n == top + 1
    wait_until(lambda: pg_summary(node_pg, "xai_index") == (n, top), what="indexer to catch up")
    with node_pg.connect("xai_index") as conn:
        row = conn.execute("SELECT hash, prev_hash, tx_count, jsonb_array_length(transactions), "
                           "extract(epoch FROM timestamp) FROM blockchain WHERE height = %s", (top,)).fetchone()
    sq = chain_rows(chain_file(node))[-1]
    assert row is not None and row[0] == sq[1] and row[1] == sq[2]
    assert row[2] == row[3] == len(json.loads(sq[4]))
    assert abs(float(row[4]) - sq[3]) < 1e-3
    status = node.get("/api/v1/node/status")["indexer"]
    assert status["state"] == "ok" and status["indexed_height"] == top
    assert node_pg.password not in json.dumps(status)


def test_indexer_survives_database_swapped_underneath(node_pg: PostgresCluster, nodes: Callable[..., NodeProcess]) -> None:
    node_pg.create_database("xai_swap")
    node = nodes(init=True, mine_interval=0.05, pg_dsn=node_pg.conninfo("xai_swap"), pg_password=node_pg.password)
    client = NodeClient(node.url)
    wait_until(lambda: (pg_summary(node_pg, "xai_swap")[1] or 0) >= 10, what="first rows indexed")

    # A restore swaps databases by rename: the live one goes away under the node.
    swap_database(node_pg, 'ALTER DATABASE "xai_swap" RENAME TO "xai_swap_quarantine"', "xai_swap")
    status = wait_until(lambda: (s := node.get("/api/v1/node/status")["indexer"])["state"] == "degraded"
                        and "does not exist" in (s["last_error"] or "") and s, what="degraded indexer")
    assert 'database "xai_swap" does not exist' in status["last_error"] and status["indexed_height"] >= 10
    assert node.get("/api/v1/blockchain/info")["indexer_state"] == "degraded"
    h_during = client.block_height()
    time.sleep(0.3)
    assert client.block_height() > h_during, "the node keeps mining while its database is away"

    # The restored database comes back under the live name, older than the chain (rows above 5 lost).
    # It is finished before the rename, as a restore's scratch database is: a node that reconnected
    # to a half-made copy would read its max(height) too early and never back-fill the gap.
    swap_database(node_pg, 'CREATE DATABASE "xai_swap_restored" TEMPLATE "xai_swap_quarantine"', "xai_swap_quarantine")
    with node_pg.connect("xai_swap_restored") as conn:
        conn.execute("DELETE FROM blockchain WHERE height > 5")
    swap_database(node_pg, 'ALTER DATABASE "xai_swap_restored" RENAME TO "xai_swap"', "xai_swap_restored")
    wait_until(lambda: node.get("/api/v1/node/status")["indexer"]["state"] == "ok", what="indexer to recover")
    node.post("/admin/mining", {"enabled": False})
    n, top = chain_summary(chain_file(node))
    wait_until(lambda: pg_summary(node_pg, "xai_swap") == (n, top), what="back-fill after reconnect")
    assert node.get("/api/v1/node/status")["indexer"]["connects"] >= 2


def test_indexer_does_not_repair_damage_while_connected(node_pg: PostgresCluster, nodes: Callable[..., NodeProcess]) -> None:
    """Rows a drill deletes stay deleted (so row counts detect it); new blocks keep coming."""
    node_pg.create_database("xai_damage")
    node = nodes(init=True, mine_interval=0.05, pg_dsn=node_pg.conninfo("xai_damage"), pg_password=node_pg.password)
    wait_until(lambda: (pg_summary(node_pg, "xai_damage")[1] or 0) >= 10, what="rows indexed")
    with node_pg.connect("xai_damage") as conn:
        conn.execute("DELETE FROM blockchain WHERE height BETWEEN 3 AND 6")
    time.sleep(0.5)
    n_pg, top_pg = pg_summary(node_pg, "xai_damage")
    assert top_pg is not None and n_pg == top_pg + 1 - 4
    with node_pg.connect("xai_damage") as conn:
        conn.execute("DROP TABLE blockchain")
    wait_until(lambda: node.get("/api/v1/node/status")["indexer"]["state"] == "degraded", what="degraded on dropped table")
    assert "blockchain" in node.get("/api/v1/node/status")["indexer"]["last_error"]
    with node_pg.connect("xai_damage") as conn:
        assert conn.execute("SELECT to_regclass('blockchain')").fetchone() == (None,)


# -- verify ------------------------------------------------------------------------------------


def test_verify_detects_tampered_block_and_deleted_range(nodes: Callable[..., NodeProcess]) -> None:
    node = nodes(init=True, mine_interval=0.03)
    client = NodeClient(node.url)
    wait_until(lambda: client.block_height() >= 20, what="20 blocks")
    report = client.verify_report()
    assert report["is_valid"] is True and report["checked_blocks"] >= 21

    path = chain_file(node)
    with sqlite3.connect(path) as conn:  # tamper: change one transaction, keep the stored hash
        (txj,) = conn.execute("SELECT transactions FROM blocks WHERE height = 7").fetchone()
        txs = json.loads(txj)
        txs[0]["amount"] = 999_999
        conn.execute("UPDATE blocks SET transactions = ? WHERE height = 7", (json.dumps(txs),))
    report = client.verify_report()
    assert report["is_valid"] is False and report["first_bad_height"] == 7
    assert "hash" in report["reason"] and report["checked_blocks"] == 7
    assert client.verify() is False
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE blocks SET transactions = ? WHERE height = 7", (txj,))
    assert client.verify() is True

    with sqlite3.connect(path) as conn:  # a re-linked forgery is caught at the link
        conn.execute("UPDATE blocks SET prev_hash = ? WHERE height = 9", ("f" * 64,))
    report = client.verify_report()
    assert report["is_valid"] is False and report["first_bad_height"] == 9

    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM blocks WHERE height BETWEEN 4 AND 6")
    report = client.verify_report()
    assert report["is_valid"] is False and report["first_bad_height"] == 4
    assert "missing" in report["reason"]
    assert verify_chain_file(path).first_bad_height == 4  # the same check, without a node


def test_deleted_chain_db_is_detected_and_a_restored_copy_is_picked_up(nodes: Callable[..., NodeProcess], tmp_path: Path) -> None:
    node = nodes(init=True, mine_interval=0.05)
    client = NodeClient(node.url)
    wait_until(lambda: client.block_height() >= 5, what="5 blocks")
    backup = snapshot_chain(chain_file(node), tmp_path / "backup")
    backup_height = chain_summary(backup)[1]

    shutil.rmtree(node.data_dir)  # chain data loss, for real
    info = client.blockchain_info()
    assert (info.block_height, info.is_synced, info.consensus_state) == (-1, False, "no-chain-data")
    report = client.verify_report()
    assert report["is_valid"] is False and "missing" in report["reason"] and report["checked_blocks"] == 0
    assert client.is_mining() is False
    time.sleep(0.3)
    assert not node.data_dir.exists(), "the node must not recreate a chain that hides the loss"

    # A restore puts the data directory back (rename into place); the node picks it up.
    staging = node.data_dir.with_name("blockchain.staging")
    shutil.copytree(backup.parent, staging)
    os.rename(staging, node.data_dir)
    wait_until(lambda: client.block_height() >= backup_height, what="restored chain seen")
    assert client.verify() is True
    assert client.blockchain_info().consensus_state == "synced"


def test_node_started_on_missing_data_dir_reports_loss(nodes: Callable[..., NodeProcess]) -> None:
    node = nodes(mine_interval=0.05)  # no --init
    info = node.get("/api/v1/blockchain/info")
    assert info["block_height"] == -1 and info["is_synced"] is False and info["chain_present"] is False
    assert node.get("/api/v1/blockchain/verify")["is_valid"] is False
    status = node.get("/api/v1/node/status")
    assert status["is_mining"] is False and status["mining_blocked_reason"] == "no chain data"
    assert not node.data_dir.exists()
    # GET /api/v1/blocks cannot serve what is not there
    with pytest.raises(urllib.error.HTTPError) as err:
        node.get("/api/v1/blocks?from=0")
    assert err.value.code == 503


# -- sync --------------------------------------------------------------------------------------


def test_node_restored_from_older_chain_syncs_to_reference(nodes: Callable[..., NodeProcess], tmp_path: Path) -> None:
    ref = nodes("primary", init=True, mine_interval=0.05)
    ref_client = NodeClient(ref.url, name="primary")
    wait_until(lambda: ref_client.block_height() >= 5, what="reference blocks")
    old = snapshot_chain(chain_file(ref), tmp_path / "restored" / "blockchain")
    old_height = chain_summary(old)[1]
    wait_until(lambda: ref_client.block_height() >= old_height + 30, what="reference to move on")

    node = start_node(old.parent, name="restored", reference_url=ref.url, mine_interval=0, sync_interval=1.0,
                      peer_heal_interval=0.1)
    try:
        client = NodeClient(node.url, name="restored")
        info = client.blockchain_info()
        assert info.is_synced is False and info.block_height == old_height  # before its first sync poll
        done = client.wait_for_sync(20, reference=ref_client, interval_s=0.1, tolerance=1)
        assert done.is_synced and done.consensus_state == "synced"
        assert ref_client.block_height() - client.block_height() <= 1 + 2  # the reference keeps mining
        assert client.verify() is True
        ours = chain_rows(chain_file(node))
        theirs = {r[0]: r[1] for r in chain_rows(chain_file(ref))}
        assert all(theirs[h] == hsh for h, hsh, *_ in ours), "the synced chain is the reference's chain"
        assert node.get("/api/v1/node/status")["blocks_synced"] >= 30
    finally:
        node.stop(5)


def test_forked_node_rolls_back_to_the_reference_chain(nodes: Callable[..., NodeProcess], tmp_path: Path) -> None:
    ref = nodes("primary", init=True, mine_interval=0.05)
    wait_until(lambda: ref.get("/api/v1/blockchain/info")["block_height"] >= 5, what="reference blocks")
    old = snapshot_chain(chain_file(ref), tmp_path / "fork" / "blockchain")
    common = chain_summary(old)[1]
    # The copy mines on its own for a while: a fork.
    alone = start_node(old.parent, name="fork", mine_interval=0.05)
    wait_until(lambda: alone.get("/api/v1/blockchain/info")["block_height"] >= common + 5, what="fork blocks")
    alone.stop(5)
    wait_until(lambda: ref.get("/api/v1/blockchain/info")["block_height"] >= common + 40, what="reference longer")

    node = start_node(old.parent, name="fork", reference_url=ref.url, mine_interval=0, sync_interval=0.2)
    try:
        client = NodeClient(node.url)
        client.wait_for_sync(20, reference=NodeClient(ref.url), interval_s=0.1, tolerance=1)
        assert node.get("/api/v1/node/status")["forks_resolved"] >= 1
        theirs = {r[0]: r[1] for r in chain_rows(chain_file(ref))}
        assert all(theirs[h] == hsh for h, hsh, *_ in chain_rows(chain_file(node)))
    finally:
        node.stop(5)


# -- network partition ---------------------------------------------------------------------------


def test_partition_drops_peers_and_heal_and_rejoin_restore_them(nodes: Callable[..., NodeProcess]) -> None:
    node = nodes(init=True, mine_interval=0.05)
    client = NodeClient(node.url)
    assert client.peer_count() == 8 and client.blockchain_info().consensus_state == "synced"

    node.post("/admin/partition")
    info = client.blockchain_info()
    assert client.peer_count() == 0 and info.consensus_state == "partitioned" and info.is_synced is False
    assert client.is_mining() is False  # no mining on a partitioned node
    time.sleep(0.3)
    assert client.peer_count() == 0, "a partition persists until healed"
    mempool = client.mempool_size()
    time.sleep(0.3)
    assert client.mempool_size() == mempool, "no transactions arrive without peers"

    node.post("/admin/heal")
    seen: list[int] = []

    def healed() -> bool:
        seen.append(client.peer_count())
        return seen[-1] == 8

    wait_until(healed, what="healed")
    assert any(0 < c < 8 for c in seen), f"peers come back gradually, saw {sorted(seen)}"
    assert client.blockchain_info().consensus_state == "synced" and client.is_mining() is True

    node.post("/admin/partition")
    answer = client.rejoin(["10.0.1.11:8333", "10.0.2.11:8333"])
    assert answer["status"] == "rejoining" and answer["peer_addresses"] == ["10.0.1.11:8333", "10.0.2.11:8333"]
    wait_until(lambda: client.peer_count() > 5 and client.blockchain_info().is_synced, what="rejoined")
    peers = [p["address"] for p in node.get("/api/v1/network/info")["peers"]]
    assert peers[:2] == ["10.0.1.11:8333", "10.0.2.11:8333"]
    assert json.loads((node.data_dir / "peers.json").read_text())["peers"] == peers[:2]

    node.post("/admin/partition", {"heal_after_s": 0.3})  # a partition that heals by itself
    assert client.peer_count() == 0
    wait_until(lambda: client.peer_count() == 8, what="self-healing partition")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"peers": ["10.0.1.11:8333"]}', "peer_addresses"),
        (b'{"peer_addresses": []}', "non-empty list"),
        (b'{"peer_addresses": "10.0.1.11:8333"}', "non-empty list"),
        (b'{"peer_addresses": ["10.0.1.11"]}', "HOST:PORT"),
        (b'{"peer_addresses": ["10.0.1.11:99999"]}', "port must be"),
        (b'{"peer_addresses": ["10.0.1.300:8333"]}', "not a valid IPv4"),
        (b'{"peer_addresses": ["bad_host!:8333"]}', "not a valid host name"),
        (b'{"peer_addresses": ["10.0.1.11:8333", "10.0.1.11:8333"]}', "duplicate of peer_addresses[0]"),
        (b'{"peer_addresses": [42]}', "peer_addresses[0]"),
    ],
)
def test_bad_rejoin_payload_is_a_400_with_a_clear_message(idle_node: NodeProcess, body: bytes, message: str) -> None:
    status, answer = post_raw(idle_node.url + "/api/v1/network/rejoin", body)
    assert status == 400 and message in answer["error"], answer
    assert idle_node.get("/api/v1/network/info")["peer_count"] == 8, "a refused rejoin changes nothing"


@pytest.fixture(scope="module")
def idle_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_node(tmp_path_factory.mktemp("idle") / "blockchain", init=True, mine_interval=0)
    yield node
    node.stop(5)


def test_client_surfaces_the_rejoin_error(nodes: Callable[..., NodeProcess]) -> None:
    node = nodes(init=True, mine_interval=0)
    with pytest.raises(NodeApiError) as err:
        NodeClient(node.url).rejoin(["10.0.1.11:0"])
    assert "HTTP 400" in str(err.value) and "port must be" in str(err.value)


# -- process lifecycle ---------------------------------------------------------------------------


def test_sigterm_stops_cleanly_and_a_second_instance_is_refused(nodes: Callable[..., NodeProcess]) -> None:
    node = nodes(init=True, mine_interval=0.02)
    wait_until(lambda: node.get("/api/v1/blockchain/info")["block_height"] >= 5, what="blocks")
    assert node.pid_file.read_text().strip() == str(node.pid)
    assert int(node.port_file.read_text()) == node.port
    attached = NodeProcess.attach(node.run_dir, node.name, node.data_dir)
    assert (attached.pid, attached.url) == (node.pid, node.url)

    with pytest.raises(RuntimeError, match="already runs as pid"):
        start_node(node.data_dir, name=node.name, mine_interval=0)

    t0 = time.monotonic()
    os.kill(node.pid, signal.SIGTERM)
    assert node.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert not node.pid_file.exists() and not node.port_file.exists()
    assert "stopped cleanly" in node.log_path.read_text()  # type: ignore[union-attr]
    assert verify_chain_file(chain_file(node)).is_valid
    with sqlite3.connect(chain_file(node)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pytest.raises(urllib.error.URLError):
        node.get("/api/v1/node/status", timeout=1)

    # Restarting (even with --init) keeps the chain it had: --init never overwrites.
    height = chain_summary(chain_file(node))[1]
    again = start_node(node.data_dir, name=node.name, init=True, mine_interval=0)
    try:
        info = again.get("/api/v1/blockchain/info")
        assert info["block_height"] == height and info["is_synced"] is True
        assert again.get("/api/v1/blockchain/verify")["genesis_hash"] == GENESIS.hash
    finally:
        assert again.stop(5) == 0


def test_plan_tar_of_a_live_node_restores_to_a_valid_chain(nodes: Callable[..., NodeProcess], tmp_path: Path) -> None:
    """The DR plan's layout: the data dir is /var/lib/xai/blockchain, and `tar -xzf backup -C DIR`
    must give DIR/var/lib/xai/blockchain/chain.db. Here the root is a temp dir, and the tar is
    taken while the node mines (chain.db plus its WAL)."""
    root = tmp_path / "root"
    node = start_node(root / "var/lib/xai/blockchain", init=True, mine_interval=0.02)
    try:
        wait_until(lambda: node.get("/api/v1/blockchain/info")["block_height"] >= 20, what="blocks")
        backup = tmp_path / "blockchain-20260101T000000Z.tar.gz"
        tar = subprocess.run(["tar", "-czf", str(backup), "-C", str(root), "var/lib/xai/blockchain"],
                             capture_output=True, text=True)
        # GNU tar exits 1 when a file grew while it read it (the WAL of a mining node): the archive
        # is still written, and SQLite ignores a WAL's incomplete trailing frames.
        assert tar.returncode == 0 or (tar.returncode == 1 and "changed as we read it" in tar.stderr), tar.stderr
    finally:
        node.stop(5)
    test_dir = tmp_path / "dr-test"
    test_dir.mkdir()
    subprocess.run(["tar", "-xzf", str(backup), "-C", str(test_dir)], check=True)
    restored = test_dir / "var/lib/xai/blockchain/chain.db"
    assert restored.is_file()
    result = verify_chain_file(restored)
    assert result.is_valid and result.block_height >= 20, result
    assert not (test_dir / "var/lib/xai/xai-node.pid").exists(), "run files stay out of the data dir"


def test_service_control_commands_start_and_stop_a_detached_node(tmp_path: Path) -> None:
    """`node_process start|status|stop`: what the local environment's service control runs."""
    run = tmp_path / "run"
    base = [sys.executable, "-m", "recovery.local.node_process"]
    started = subprocess.run([*base, "start", "--data-dir", str(tmp_path / "blockchain"), "--run-dir", str(run),
                              "--init", "--mine-interval", "0", "--peer-count", "6"],
                             capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    node = NodeProcess.attach(run, "xai-node")
    try:
        assert node.pid == info["pid"] and node.get("/api/v1/network/info")["peer_count"] == 6
        status = subprocess.run([*base, "status", "--run-dir", str(run)], capture_output=True, text=True, timeout=30)
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
        stopped = subprocess.run([*base, "stop", "--run-dir", str(run)], capture_output=True, text=True, timeout=30)
        assert stopped.returncode == 0 and json.loads(stopped.stdout)["running"] is False
        assert not node.is_running()
        status = subprocess.run([*base, "status", "--run-dir", str(run)], capture_output=True, text=True, timeout=30)
        assert status.returncode == 3
    finally:
        node.stop(5)


# -- the writer gate (issue 14) ------------------------------------------------------------------


def test_node_mines_only_while_its_index_database_accepts_writes(node_pg: PostgresCluster,
                                                                 nodes: Callable[..., NodeProcess]) -> None:
    node_pg.create_database("xai_gate")
    node = nodes(init=True, mine_interval=0.05, pg_dsn=node_pg.conninfo("xai_gate"), pg_password=node_pg.password)
    client = NodeClient(node.url)
    first = client.block_height()
    wait_until(lambda: client.block_height() >= first + 5, what="mining while the database is a writer")
    assert node.get("/api/v1/blockchain/info")["consensus_state"] == "synced"
    with node_pg.connect("postgres") as conn:
        # what a switchover's fence does to the old writer (reloaded into every live session)
        conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        conn.execute("SELECT pg_reload_conf()")
    try:
        st = wait_until(lambda: (s := node.get("/api/v1/node/status"))["consensus_state"] == "fenced" and s,
                        what="the node to see the read-only database")
        assert st["mining_blocked_reason"] == "fenced: the index database is read-only (this site is not the writer)"
        assert st["is_mining"] is False
        assert node.get("/api/v1/blockchain/info")["consensus_state"] == "fenced"
        held = client.block_height()
        time.sleep(0.5)  # ten mine intervals
        assert client.block_height() == held, "a fenced node mined"
    finally:
        with node_pg.connect("postgres") as conn:
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")
    wait_until(lambda: client.block_height() >= held + 3, what="mining again once the database is the writer")
    assert node.get("/api/v1/blockchain/info")["consensus_state"] == "synced"
