"""A simulated XAI node: a real process with a real chain, for the local DR environment and drills.

    python -m recovery.local.node_sim --data-dir DIR [--init] --port N [--pg-dsn DSN]
        [--mine-interval S] [--peers HOST:PORT,...] [--peer-count 8] [--reference-url URL] [--name NAME]

What it keeps in DIR (what a real node keeps, so backups and restores have real files to move):
- ``chain.db``   SQLite (WAL): ``blocks(height, hash, prev_hash, timestamp, transactions)``, hash-linked
                 (see ``recovery.local.chain``);
- ``node.json``  identity and config (node id, network, genesis hash, miner address);
- ``peers.json`` the peer addresses it was told to use (``--peers`` or a rejoin).
Run files (pid, port) go beside DIR, in ``--run-dir`` (default: DIR's parent), so a tar of DIR
never carries a stale pid.

Chain-data loss is never hidden. chain.db is created (with the genesis every node shares) only
with ``--init``. Started without it on a missing or empty DIR, or when chain.db is deleted while
it runs, the node keeps serving the API and reports the loss: ``block_height`` -1,
``is_synced`` false, ``consensus_state`` "no-chain-data", verify ``is_valid`` false with the
reason; it neither mines nor syncs until a chain.db is put back (a restore), which it then picks
up by itself.

Sync: with ``--reference-url`` (another node's API) it follows that node, fetching missing blocks
through ``GET /api/v1/blocks`` and rolling back a fork to the common ancestor. ``is_synced`` is
true when it has peers and its height is within 1 block of the reference; an unreachable
reference means not synced. Without a reference it is synced when it has peers. It mines only
while synced (never on a stale tip).

Writer gate and catch-up (recovery/local/node_index.py): with ``--pg-dsn`` the node mines only while
its index database accepts writes (else ``consensus_state`` "fenced"), so the database's role decides
which site writes; and a node behind its index catches up from it first (a fork is rolled back and
kept aside). Blocks carry microsecond timestamps, what the index keeps, so a row rebuilds its block.
Without ``--pg-dsn`` nothing gates it: run one miner per local network (followers ``--mine-interval 0``).

Peers are simulated: ``--peer-count`` connections (default 8). ``POST /admin/partition`` drops
them all; ``/admin/heal`` or ``POST /api/v1/network/rejoin`` brings them back one at a time
(``--peer-heal-interval``, default 0.5 s), so waiting for healing is real. The ``/admin/...``
endpoints exist only to simulate the network; drills inject data damage for real (files, rows).

PostgreSQL indexing (``--pg-dsn``, password from PGPASSWORD/PGPASSFILE, never the command line):
see ``recovery.local.chain_index``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any


from recovery.local.chain import (
    GENESIS, Block, ChainMissing, ChainStore, init_chain, verify_chain_file,
)
from recovery.local.chain_index import Indexer
from recovery.local.node_index import FENCED_REASON, IndexDatabase
from recovery.local.node_api import BadRequest, NodeApiServer, Request, Response, Routes, Unavailable, one_line, route
from recovery.local.node_peers import PeerTable, parse_peer_address, parse_rejoin
# The launcher lives in node_process; re-exported for convenience.
from recovery.local.node_process import NodeProcess, start_node
from recovery.processes import pid_alive

log = logging.getLogger("xai.node")

VERSION = "xai-node-sim/1"
NETWORK = "xai-local"
MAX_BLOCKS_PER_REQUEST = 500
MEMPOOL_MAX = 5000
TX_PER_BLOCK = 5
TX_PER_PEER_PER_S = 0.5  # transactions relayed by each connected peer

# -- the node -----------------------------------------------------------------------------------


class Node:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name: str = args.name
        self.data_dir = Path(args.data_dir).absolute()
        self.chain_path = self.data_dir / "chain.db"
        self.store = ChainStore(self.chain_path)
        self.started_at = time.time()
        self.stop_event = threading.Event()
        self.mining_enabled = args.mine_interval > 0
        self.mine_interval_s: float = args.mine_interval if args.mine_interval > 0 else 1.0
        self.blocks_mined = 0
        self.mempool = 0
        self._tx_credit = 0.0
        self.tx_seq = 0
        self.reference_url: str | None = args.reference_url.rstrip("/") if args.reference_url else None
        self.reference_height: int | None = None
        self.reference_error: str | None = None
        self.sync_error: str | None = None
        self.blocks_synced = 0
        self.forks_resolved = 0
        self.identity = self._load_identity()
        peers_given = [parse_peer_address(p, "--peers") for p in args.peers.split(",") if p.strip()] if args.peers else []
        self.peers = PeerTable(peers_given or self._load_peer_file(), args.peer_count, args.peer_heal_interval)
        if peers_given or not (self.data_dir / "peers.json").exists():
            self._save_peers(peers_given)
        self.indexer = None
        # the writer gate: None = not asked yet (or never answered), True/False = last answer
        # the writer gate and the catch-up from the index database (recovery/local/node_index.py)
        self.index = IndexDatabase(self.args.pg_dsn) if self.args.pg_dsn else None
        if args.pg_dsn:
            self.indexer = Indexer(args.pg_dsn, self.store, miner=self.identity["miner_address"])
        self._threads: list[threading.Thread] = []

    # -- files a node keeps
    def _load_identity(self) -> dict[str, Any]:
        path = self.data_dir / "node.json"
        try:
            ident = json.loads(path.read_text())
            if isinstance(ident, dict) and "node_id" in ident:
                return ident
        except (OSError, ValueError):
            pass
        node_id = uuid.uuid4().hex
        ident = {
            "name": self.name,
            "node_id": node_id,
            "network": NETWORK,
            "genesis_hash": GENESIS.hash,
            "miner_address": "XAI" + hashlib.sha256(node_id.encode()).hexdigest()[:37],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "version": VERSION,
        }
        if self.data_dir.is_dir():  # never create a missing data dir (that would hide its loss)
            _atomic_write(path, json.dumps(ident, indent=2) + "\n")
        return ident

    def _load_peer_file(self) -> list[str]:
        try:
            data = json.loads((self.data_dir / "peers.json").read_text())
            return [parse_peer_address(p, "peers.json") for p in data.get("peers", [])]
        except (OSError, ValueError, BadRequest, AttributeError):
            return []

    def _save_peers(self, peers: list[str]) -> None:
        if self.data_dir.is_dir():
            _atomic_write(self.data_dir / "peers.json", json.dumps({"peers": peers}, indent=2) + "\n")

    # -- state
    def chain_height(self) -> tuple[int, str | None, str | None]:
        """(height, tip hash, error) read from chain.db on disk; height -1 when there is no chain."""
        try:
            tip = self.store.tip()
        except ChainMissing as exc:
            return -1, None, str(exc)
        if tip is None:
            return -1, None, f"{self.chain_path} holds no blocks"
        return tip.height, tip.hash, None

    def sync_view(self, height: int, chain_error: str | None) -> tuple[bool, str, str | None]:
        """(is_synced, consensus_state, why not synced)."""
        peers = self.peers.snapshot()["peer_count"]
        if chain_error is not None:
            return False, "no-chain-data", chain_error
        if peers == 0:
            return False, "partitioned", "no peers connected"
        if self.sync_error:
            return False, "forked", self.sync_error
        if self.reference_url:
            if self.reference_error or self.reference_height is None:
                return False, "syncing", f"reference unreachable: {self.reference_error or 'not polled yet'}"
            if height < self.reference_height - 1:
                return False, "syncing", f"{self.reference_height - height} blocks behind the reference"
        if self.db_writable is False:
            return True, "fenced", None
        return True, "synced", None

    def mining_blocked(self, height: int, chain_error: str | None, synced: bool) -> str | None:
        if not self.mining_enabled:
            return "mining disabled"
        if chain_error is not None:
            return "no chain data"
        if self.index_height is not None and height < self.index_height:
            return f"behind its index database ({self.index_height - height} blocks): catching up"
        if not synced:
            return "not synced"
        if self.reference_url and self.reference_height is not None and height < self.reference_height:
            return "behind the reference"
        if self.db_writable is False:
            return FENCED_REASON
        return None

    def check_writer(self) -> bool | None:
        """The writer gate (recovery/local/node_index.py); None without --pg-dsn."""
        return self.index.check_writer() if self.index is not None else None

    @property
    def db_writable(self) -> bool | None:
        return self.index.db_writable if self.index is not None else None

    @property
    def index_height(self) -> int | None:
        return self.index.index_height if self.index is not None else None

    def catch_up_from_index(self) -> int:
        return self.index.catch_up(self.store) if self.index is not None else 0

    # -- the node API (recovery/local/node_api.py serves it)
    def handle(self, request: Request) -> Response:
        return route(self._routes(), request)

    def _routes(self) -> Routes:
        return {
            ("GET", "/api/v1/blockchain/info"): lambda _r: self.info(),
            ("GET", "/api/v1/blockchain/verify"): lambda _r: self.verify(),
            ("GET", "/api/v1/network/info"): lambda _r: self.network_info(),
            ("GET", "/api/v1/mempool/info"): lambda _r: self.mempool_info(),
            ("GET", "/api/v1/node/status"): lambda _r: self.node_status(),
            ("GET", "/api/v1/blocks"): lambda r: self.blocks(r.query),
            ("POST", "/api/v1/network/rejoin"): lambda r: self.rejoin(r.body),
            ("POST", "/admin/partition"): lambda r: self.admin_partition(r.body),
            ("POST", "/admin/heal"): lambda r: self.admin_heal(r.body),
            ("POST", "/admin/mining"): lambda r: self.admin_mining(r.body),
        }

    # -- API bodies
    def info(self) -> dict[str, Any]:
        height, tip_hash, err = self.chain_height()
        synced, state, why = self.sync_view(height, err)
        out: dict[str, Any] = {
            "block_height": height,
            "is_synced": synced,
            "consensus_state": state,
            "tip_hash": tip_hash,
            "chain_present": err is None,
            "network": NETWORK,
            "node_id": self.identity["node_id"],
            "name": self.name,
            "peer_count": self.peers.snapshot()["peer_count"],
            "reference_url": self.reference_url,
            "reference_height": self.reference_height,
        }
        if why:
            out["not_synced_reason"] = why
        if self.indexer is not None:
            out["indexer_state"] = self.indexer.state
        return out

    def verify(self) -> dict[str, Any]:
        t0 = time.monotonic()
        with self.store.lock:  # a consistent snapshot: no block is appended while we read
            result = verify_chain_file(self.chain_path)
        out = result.to_api()
        out["chain_file"] = str(self.chain_path)
        out["duration_ms"] = round((time.monotonic() - t0) * 1000, 1)
        return out

    def network_info(self) -> dict[str, Any]:
        return self.peers.snapshot()

    def mempool_info(self) -> dict[str, Any]:
        return {"transaction_count": self.mempool, "max_transactions": MEMPOOL_MAX}

    def node_status(self) -> dict[str, Any]:
        height, _, err = self.chain_height()
        synced, state, _ = self.sync_view(height, err)
        blocked = self.mining_blocked(height, err, synced)
        return {
            "is_mining": blocked is None,
            "mining_enabled": self.mining_enabled,
            "mining_interval_s": self.mine_interval_s,
            "mining_blocked_reason": blocked,
            "blocks_mined": self.blocks_mined,
            "blocks_synced": self.blocks_synced,
            "forks_resolved": self.forks_resolved,
            "block_height": height,
            "consensus_state": state,
            "chain_present": err is None,
            "chain_error": err,
            "data_dir": str(self.data_dir),
            "name": self.name,
            "node_id": self.identity["node_id"],
            "pid": os.getpid(),
            "version": VERSION,
            "uptime_s": round(time.time() - self.started_at, 1),
            "reference": None if not self.reference_url else {
                "url": self.reference_url, "height": self.reference_height, "error": self.reference_error,
            },
            "sync_error": self.sync_error,
            "indexer": self.indexer.status() if self.indexer is not None else {"enabled": False, "state": "disabled"},
        }

    def blocks(self, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            start = int(query.get("from", ["0"])[0])
            limit = int(query.get("limit", ["100"])[0])
        except ValueError:
            raise BadRequest("from and limit must be integers") from None
        if start < 0 or limit < 1:
            raise BadRequest("from must be >= 0 and limit >= 1")
        limit = min(limit, MAX_BLOCKS_PER_REQUEST)
        try:
            got = self.store.blocks(start, limit)
            height = self.store.height()
        except ChainMissing as exc:
            raise Unavailable(str(exc)) from None
        return {"blocks": [b.to_api() for b in got], "block_height": height}

    def rejoin(self, body: bytes) -> dict[str, Any]:
        peers = parse_rejoin(body)
        self.peers.rejoin(peers)
        self._save_peers(peers)
        log.info("rejoin requested with %d peers", len(peers))
        snap = self.peers.snapshot()
        return {"status": "rejoining", "peer_addresses": peers, "peer_count": snap["peer_count"],
                "target_peer_count": snap["target_peer_count"]}

    # -- admin (network simulation only)
    def admin_partition(self, body: bytes) -> dict[str, Any]:
        data = _json_object(body)
        heal_after = data.get("heal_after_s")
        if heal_after is not None and (not isinstance(heal_after, (int, float)) or isinstance(heal_after, bool) or heal_after < 0):
            raise BadRequest("heal_after_s must be a number of seconds >= 0")
        self.peers.partition(None if heal_after is None else float(heal_after))
        log.warning("partitioned: all peers dropped%s", "" if heal_after is None else f", healing in {heal_after}s")
        return {"status": "partitioned", **self.peers.snapshot()}

    def admin_heal(self, body: bytes) -> dict[str, Any]:
        self.peers.heal()
        log.info("partition healing")
        return {"status": "healing", **self.peers.snapshot()}

    def admin_mining(self, body: bytes) -> dict[str, Any]:
        data = _json_object(body)
        enabled = data.get("enabled")
        if not isinstance(enabled, bool):
            raise BadRequest('expected {"enabled": true|false[, "interval_s": seconds]}')
        interval = data.get("interval_s")
        if interval is not None:
            if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
                raise BadRequest("interval_s must be a number of seconds > 0")
            self.mine_interval_s = float(interval)
        self.mining_enabled = enabled
        return {"mining_enabled": self.mining_enabled, "mining_interval_s": self.mine_interval_s}

    # -- background work
    def start_background(self) -> None:
        for target, name in ((self._mine_loop, "miner"), (self._tick_loop, "ticker")):
            self._threads.append(threading.Thread(target=target, name=name, daemon=True))
        if self.reference_url:
            self._threads.append(threading.Thread(target=self._sync_loop, name="sync", daemon=True))
        for t in self._threads:
            t.start()
        if self.indexer is not None:
            self.indexer.start()

    def stop_background(self) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout=5)
        if self.indexer is not None:
            self.indexer.stop()
        self.store.close()

    def _tick_loop(self) -> None:
        while not self.stop_event.wait(0.1):
            self.peers.tick(time.monotonic())
            # transactions arrive from peers; none while partitioned
            peers = self.peers.snapshot()["peer_count"]
            self._tx_credit += peers * TX_PER_PEER_PER_S * 0.1
            arrived, self._tx_credit = int(self._tx_credit), self._tx_credit % 1
            self.mempool = min(MEMPOOL_MAX, self.mempool + arrived)

    def _next_transactions(self, height: int) -> list[dict[str, Any]]:
        take = min(self.mempool, TX_PER_BLOCK)
        self.mempool -= take
        txs = [{"txid": hashlib.sha256(f"coinbase:{self.identity['node_id']}:{height}".encode()).hexdigest(),
                "from": "coinbase", "to": self.identity["miner_address"], "amount": 50, "fee": 0}]
        for _ in range(take):
            self.tx_seq += 1
            seed = hashlib.sha256(f"{self.identity['node_id']}:{self.tx_seq}".encode()).hexdigest()
            txs.append({"txid": seed, "from": "XAI" + seed[:37], "to": "XAI" + seed[27:64],
                        "amount": int(seed[:6], 16) % 10_000 + 1, "fee": int(seed[6:8], 16) % 50 + 1})
        return txs

    def _mine_loop(self) -> None:
        while not self.stop_event.wait(self.mine_interval_s if self.mining_enabled else 0.2):
            if not self.mining_enabled:
                continue
            self.check_writer()
            self.catch_up_from_index()
            height, _, err = self.chain_height()
            synced, _, _ = self.sync_view(height, err)
            if self.mining_blocked(height, err, synced) is not None:
                continue
            try:
                with self.store.lock:
                    # Asked again right before the append: a heal or a promotion between the two
                    # checks must not let a fenced site write one more block.
                    if self.check_writer() is False:
                        continue
                    tip = self.store.tip()
                    if tip is None:
                        continue
                    # microseconds: what the index's timestamptz keeps, so its row rebuilds this block
                    blk = Block.make(tip.height + 1, tip.hash, round(time.time(), 6),
                                     self._next_transactions(tip.height + 1))
                    self.store.append([blk])
                self.blocks_mined += 1
                if self.indexer is not None:
                    self.indexer.poke()
            except (ChainMissing, ValueError) as exc:
                log.warning("mining skipped: %s", exc)

    def _ref_get(self, path: str) -> dict[str, Any]:
        assert self.reference_url
        with urllib.request.urlopen(self.reference_url + path, timeout=3) as resp:  # noqa: S310 - operator-given URL
            data = json.loads(resp.read())
        if not isinstance(data, dict):
            raise ValueError("reference answered a non-object")
        return data

    def _sync_loop(self) -> None:
        while not self.stop_event.wait(self.args.sync_interval):
            try:
                info = self._ref_get("/api/v1/blockchain/info")
                ref_h = info.get("block_height")
                if not isinstance(ref_h, int) or isinstance(ref_h, bool):
                    raise ValueError(f"reference block_height is {ref_h!r}")
                self.reference_height, self.reference_error = ref_h, None
            except (OSError, ValueError, urllib.error.URLError) as exc:
                msg = one_line(exc)
                if msg != self.reference_error:
                    log.warning("reference %s unreachable: %s", self.reference_url, msg)
                self.reference_error = msg
                continue
            try:
                self._sync_once(ref_h)
            except ChainMissing:
                continue  # no chain: reported through the API; a restore puts one back
            except (OSError, ValueError, urllib.error.URLError) as exc:
                self.sync_error = f"sync from reference failed: {one_line(exc)}"
                log.warning("%s", self.sync_error)

    def _sync_once(self, ref_h: int) -> None:
        while not self.stop_event.is_set():
            height = self.store.height()
            if height < 0:
                raise ChainMissing("empty chain")
            if height >= ref_h:
                self.sync_error = None
                return
            data = self._ref_get(f"/api/v1/blocks?from={height + 1}&limit={MAX_BLOCKS_PER_REQUEST}")
            got = [Block.from_api(b) for b in data.get("blocks", [])]
            if not got:
                return
            ref_h = max(ref_h, int(data.get("block_height", ref_h)))
            tip = self.store.tip()
            assert tip is not None
            if got[0].prev_hash != tip.hash:
                self._resolve_fork(tip.height)
                continue
            self.store.append(got)
            self.blocks_synced += len(got)
            self.sync_error = None
            if self.indexer is not None:
                self.indexer.poke()

    def _resolve_fork(self, local_tip: int) -> None:
        """Roll back to the highest block both chains share (the reference is longer, so it wins)."""
        h = local_tip
        while h >= 0:
            start = max(0, h - 99)
            ref = {b["height"]: b["hash"] for b in self._ref_get(f"/api/v1/blocks?from={start}&limit={h - start + 1}")["blocks"]}
            for local in reversed(self.store.blocks(start, h - start + 1)):
                if ref.get(local.height) == local.hash:
                    dropped = self.store.truncate_above(local.height)
                    self.forks_resolved += 1
                    log.warning("fork: rolled back %d blocks to common ancestor %d", dropped, local.height)
                    if self.indexer is not None:
                        self.indexer.rewind(local.height)
                    return
            h = start - 1
        raise ValueError("the reference has a different genesis block; refusing to replace the whole chain")


# -- helpers ------------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recovery.local.node_sim", description="Simulated XAI node")
    p.add_argument("--data-dir", required=True, help="node data directory (holds chain.db, node.json, peers.json)")
    p.add_argument("--init", action="store_true",
                   help="create chain.db with the shared genesis block if it does not exist (never overwrites)")
    p.add_argument("--port", type=int, default=8080, help="API port on 127.0.0.1; 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="xai-node")
    p.add_argument("--run-dir", help="where the pid and port files go (default: the data dir's parent)")
    p.add_argument("--pid-file")
    p.add_argument("--port-file")
    p.add_argument("--pg-dsn", help="index blocks into this database's blockchain table (password via PGPASSWORD)")
    p.add_argument("--mine-interval", type=float, default=1.0, help="seconds per block; 0 disables mining")
    p.add_argument("--peers", default="", help="comma-separated HOST:PORT peer addresses")
    p.add_argument("--peer-count", type=int, default=8, help="simulated peer connections when healthy")
    p.add_argument("--peer-heal-interval", type=float, default=0.5, help="seconds per peer reconnected while healing")
    p.add_argument("--reference-url", help="another node's API to sync from")
    p.add_argument("--sync-interval", type=float, default=0.5)
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {args.name} %(levelname)s %(message)s")
    data_dir = Path(args.data_dir).absolute()
    run_dir = Path(args.run_dir).absolute() if args.run_dir else data_dir.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = Path(args.pid_file) if args.pid_file else run_dir / f"{args.name}.pid"
    port_file = Path(args.port_file) if args.port_file else run_dir / f"{args.name}.port"
    try:
        other = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        other = 0
    if other and other != os.getpid() and pid_alive(other):
        print(f"node {args.name} already runs as pid {other} ({pid_file}); stop it first", file=sys.stderr)
        return 2

    if args.init and init_chain(data_dir / "chain.db"):
        log.info("initialised %s with genesis %s", data_dir / "chain.db", GENESIS.hash[:16])
    elif not (data_dir / "chain.db").exists():
        log.error("no chain data at %s (start with --init to create a new chain); serving the API "
                  "and reporting the loss", data_dir / "chain.db")

    try:
        node = Node(args)
    except BadRequest as exc:
        print(f"bad option: {exc}", file=sys.stderr)
        return 2
    try:
        server = NodeApiServer((args.host, args.port), node)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 3
    port = int(server.server_address[1])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    _atomic_write(pid_file, f"{os.getpid()}\n")
    node.start_background()
    server.start(name="http", poll_interval=0.1)
    _atomic_write(port_file, f"{port}\n")  # written last: the node answers once this exists
    log.info("node %s listening on http://%s:%d (data %s, pid %d)", args.name, args.host, port, data_dir, os.getpid())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log.info("stopping")
        server.stop()
        node.stop_background()
        for f in (port_file, pid_file):
            try:
                if f.read_text().strip() == (str(port) if f == port_file else str(os.getpid())):
                    f.unlink()
            except OSError:
                pass
        log.info("stopped cleanly")
    return 0

__all__ = ["BadRequest", "Node", "NodeProcess", "PeerTable", "Unavailable", "main", "parse_peer_address",
           "parse_rejoin", "start_node"]

if __name__ == "__main__":
    sys.exit(main())
