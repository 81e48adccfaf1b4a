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
while synced (never on a stale tip). Run one miner per local network; followers use
``--mine-interval 0``.

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
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from recovery.processes import pid_alive
from recovery.local.chain import (
    GENESIS, Block, ChainMissing, ChainStore, init_chain, verify_chain_file,
)

log = logging.getLogger("xai.node")

VERSION = "xai-node-sim/1"
NETWORK = "xai-local"
MAX_BLOCKS_PER_REQUEST = 500
MAX_REJOIN_PEERS = 64
MEMPOOL_MAX = 5000
TX_PER_BLOCK = 5
TX_PER_PEER_PER_S = 0.5  # transactions relayed by each connected peer

_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class BadRequest(Exception):
    """A request the node refuses; the message is what the client sees (HTTP 400)."""


# -- peers --------------------------------------------------------------------------------------


def parse_peer_address(value: Any, where: str) -> str:
    """'host:port' (IPv4, [IPv6] or a hostname) -> normalized string; BadRequest otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where} must be a non-empty string like 10.0.1.11:8333, got {value!r}")
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise BadRequest(f"{where} {text!r}: expected [IPv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadRequest(f"{where} {text!r}: {host!r} is not an IPv6 address") from None
        host = f"[{host.lower()}]"
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise BadRequest(f"{where} {text!r}: expected HOST:PORT, e.g. 10.0.1.11:8333")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise BadRequest(f"{where} {text!r}: {host!r} is not a valid IPv4 address") from None
        elif not _HOSTNAME_RE.match(host):
            raise BadRequest(f"{where} {text!r}: {host!r} is not a valid host name")
        host = host.lower()
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BadRequest(f"{where} {text!r}: port must be a number from 1 to 65535")
    return f"{host}:{int(port)}"


def parse_rejoin(body: bytes) -> list[str]:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise BadRequest('body is not JSON; expected {"peer_addresses": ["HOST:PORT", ...]}') from None
    if not isinstance(data, dict) or "peer_addresses" not in data:
        raise BadRequest('expected a JSON object {"peer_addresses": ["HOST:PORT", ...]}')
    peers = data["peer_addresses"]
    if not isinstance(peers, list) or not peers:
        raise BadRequest("peer_addresses must be a non-empty list of HOST:PORT strings")
    if len(peers) > MAX_REJOIN_PEERS:
        raise BadRequest(f"peer_addresses has {len(peers)} entries; at most {MAX_REJOIN_PEERS} are accepted")
    out: list[str] = []
    for i, p in enumerate(peers):
        addr = parse_peer_address(p, f"peer_addresses[{i}]")
        if addr in out:
            raise BadRequest(f"peer_addresses[{i}] {p!r} is a duplicate of peer_addresses[{out.index(addr)}]")
        out.append(addr)
    return out


class PeerTable:
    """Simulated peer connections: partition drops them, healing reconnects one per interval."""

    def __init__(self, addresses: list[str], target: int, heal_interval_s: float) -> None:
        self.lock = threading.Lock()
        self.addresses = list(addresses)
        self.target = max(target, len(addresses))
        self.heal_interval_s = heal_interval_s
        self.connected = self.target  # a node starts connected to its network
        self.partitioned = False
        self.heal_at: float | None = None
        self._next_connect = 0.0

    def _all_addresses(self) -> list[str]:
        # The given addresses first, then peers "discovered" through them.
        sim = [f"10.{i // 250}.{i % 250 + 1}.11:8333" for i in range(self.target)]
        return (self.addresses + [a for a in sim if a not in self.addresses])[: self.target]

    def tick(self, now: float) -> None:
        with self.lock:
            if self.partitioned and self.heal_at is not None and now >= self.heal_at:
                self.partitioned, self.heal_at = False, None
                self._next_connect = now + self.heal_interval_s
            if not self.partitioned and self.connected < self.target and now >= self._next_connect:
                self.connected += 1
                self._next_connect = now + self.heal_interval_s

    def partition(self, heal_after_s: float | None) -> None:
        with self.lock:
            self.partitioned, self.connected = True, 0
            self.heal_at = None if heal_after_s is None else time.monotonic() + heal_after_s

    def heal(self) -> None:
        with self.lock:
            if self.partitioned or self.connected < self.target:
                self._next_connect = time.monotonic() + self.heal_interval_s
            self.partitioned, self.heal_at = False, None

    def rejoin(self, addresses: list[str]) -> None:
        with self.lock:
            self.addresses = list(addresses)
            self.target = max(self.target, len(addresses))
            self.connected = min(self.connected, self.target)
            self.partitioned, self.heal_at = False, None
            self._next_connect = time.monotonic() + self.heal_interval_s

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            peers = self._all_addresses()[: self.connected]
            return {
                "peer_count": self.connected,
                "peers": [{"address": a, "connected": True} for a in peers],
                "target_peer_count": self.target,
                "configured_peers": list(self.addresses),
                "partitioned": self.partitioned,
                "healing": (not self.partitioned) and self.connected < self.target,
                "heal_at_in_s": None if self.heal_at is None else round(max(0.0, self.heal_at - time.monotonic()), 2),
            }


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
        if args.pg_dsn:
            from recovery.local.chain_index import Indexer

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
        return True, "synced", None

    def mining_blocked(self, height: int, chain_error: str | None, synced: bool) -> str | None:
        if not self.mining_enabled:
            return "mining disabled"
        if chain_error is not None:
            return "no chain data"
        if not synced:
            return "not synced"
        if self.reference_url and self.reference_height is not None and height < self.reference_height:
            return "behind the reference"
        return None

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
            height, _, err = self.chain_height()
            synced, _, _ = self.sync_view(height, err)
            if self.mining_blocked(height, err, synced) is not None:
                continue
            try:
                with self.store.lock:
                    tip = self.store.tip()
                    if tip is None:
                        continue
                    blk = Block.make(tip.height + 1, tip.hash, time.time(), self._next_transactions(tip.height + 1))
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
                msg = _one_line(exc)
                if msg != self.reference_error:
                    log.warning("reference %s unreachable: %s", self.reference_url, msg)
                self.reference_error = msg
                continue
            try:
                self._sync_once(ref_h)
            except ChainMissing:
                continue  # no chain: reported through the API; a restore puts one back
            except (OSError, ValueError, urllib.error.URLError) as exc:
                self.sync_error = f"sync from reference failed: {_one_line(exc)}"
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


class Unavailable(Exception):
    """The node cannot serve this now (HTTP 503)."""


# -- HTTP ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        node = self.server.node
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        gets: dict[str, Callable[[], dict[str, Any]]] = {
            "/api/v1/blockchain/info": node.info,
            "/api/v1/blockchain/verify": node.verify,
            "/api/v1/network/info": node.network_info,
            "/api/v1/mempool/info": node.mempool_info,
            "/api/v1/node/status": node.node_status,
            "/api/v1/blocks": lambda: node.blocks(urllib.parse.parse_qs(url.query)),
        }
        posts: dict[str, Callable[[bytes], dict[str, Any]]] = {
            "/api/v1/network/rejoin": node.rejoin,
            "/admin/partition": node.admin_partition,
            "/admin/heal": node.admin_heal,
            "/admin/mining": node.admin_mining,
        }
        try:
            if method == "GET" and url.path in gets:
                self._send(200, gets[url.path]())
            elif method == "POST" and url.path in posts:
                self._send(200, posts[url.path](body))
            elif url.path in gets or url.path in posts:
                self._send(405, {"error": f"{method} not allowed on {url.path}"})
            else:
                self._send(404, {"error": f"no route {method} {url.path}"})
        except BadRequest as exc:
            self._send(400, {"error": str(exc)})
        except Unavailable as exc:
            self._send(503, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001
            log.exception("error serving %s %s", method, url.path)
            self._send(500, {"error": _one_line(exc)})

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    node: Node


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


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
        server = _Server((args.host, args.port), _Handler)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 3
    server.node = node
    port = int(server.server_address[1])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    _atomic_write(pid_file, f"{os.getpid()}\n")
    node.start_background()
    srv = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True)
    srv.start()
    _atomic_write(port_file, f"{port}\n")  # written last: the node answers once this exists
    log.info("node %s listening on http://%s:%d (data %s, pid %d)", args.name, args.host, port, data_dir, os.getpid())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log.info("stopping")
        server.shutdown()
        server.server_close()
        node.stop_background()
        for f in (port_file, pid_file):
            try:
                if f.read_text().strip() == (str(port) if f == port_file else str(os.getpid())):
                    f.unlink()
            except OSError:
                pass
        log.info("stopped cleanly")
    return 0


# The launcher lives in node_process; re-exported for convenience.
from recovery.local.node_process import NodeProcess, start_node  # noqa: E402

__all__ = ["Node", "NodeProcess", "PeerTable", "main", "parse_peer_address", "parse_rejoin", "start_node"]

if __name__ == "__main__":
    sys.exit(main())
