"""A stub of the XAI node API (the DR plan's endpoints) that tests steer, in-process.

Tests and benchmarks start one on a free port and steer its state. It is a stub, not a node (the
simulated node is node_sim.py); both are served by the same server, recovery/local/node_api.py,
so the stub's wire format is the node's.

    with NodeApiStub(block_height=100) as node:
        node.state.sync_towards(150, blocks_per_poll=10)   # height grows on each info request
        node.state.fail_next(2, status=503)                # the next 2 requests answer 503
        NodeClient(node.url).wait_for_sync(...)

Endpoints: GET /api/v1/blockchain/info, /blockchain/verify, /network/info, /mempool/info,
/node/status, POST /api/v1/network/rejoin. Every request is recorded in ``state.requests``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from recovery.local.node_api import BadRequest, NodeApiServer, Request, Response, Routes, route


@dataclass
class NodeState:
    block_height: int = 100
    is_synced: bool = True
    consensus_state: str = "healthy"
    is_valid: bool = True
    peer_count: int = 8
    transaction_count: int = 0
    is_mining: bool = False
    sync_target: int | None = None  # when set, height grows by blocks_per_poll per info request
    blocks_per_poll: int = 1
    delay_s: float = 0.0  # answer every request this late (timeouts)
    failures: list[int] = field(default_factory=list)  # statuses for the next requests
    garbage_next: int = 0  # answer the next N requests with a non-JSON body
    rejoined: list[list[str]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def sync_towards(self, target: int, blocks_per_poll: int = 1) -> None:
        with self.lock:
            self.sync_target = target
            self.blocks_per_poll = blocks_per_poll
            self.is_synced = self.block_height >= target

    def fail_next(self, count: int, status: int = 503) -> None:
        with self.lock:
            self.failures.extend([status] * count)

    def info(self) -> dict[str, Any]:
        if self.sync_target is not None and self.block_height < self.sync_target:
            self.block_height = min(self.sync_target, self.block_height + self.blocks_per_poll)
            self.is_synced = self.block_height >= self.sync_target
        return {
            "block_height": self.block_height,
            "is_synced": self.is_synced,
            "consensus_state": self.consensus_state,
        }

    # -- the node API (recovery/local/node_api.py serves it)
    def handle(self, request: Request) -> Response:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.lock:
            self.requests.append((request.method, request.target))
            if self.failures:
                status = self.failures.pop(0)
                return Response(status, {"error": f"stub failure {status}"})
            if self.garbage_next:
                self.garbage_next -= 1
                return Response(200, raw=b"<html>proxy error</html>")
            return route(self._routes(), request)

    def _routes(self) -> Routes:
        return {
            ("GET", "/api/v1/blockchain/info"): lambda _r: self.info(),
            ("GET", "/api/v1/blockchain/verify"): lambda _r: {"is_valid": self.is_valid, "block_height": self.block_height},
            ("GET", "/api/v1/network/info"): lambda _r: {"peer_count": self.peer_count},
            ("GET", "/api/v1/mempool/info"): lambda _r: {"transaction_count": self.transaction_count},
            ("GET", "/api/v1/node/status"): lambda _r: {"is_mining": self.is_mining},
            ("POST", "/api/v1/network/rejoin"): self._rejoin,
        }

    def _rejoin(self, request: Request) -> dict[str, Any]:
        try:
            peers = json.loads(request.body)["peer_addresses"]
        except (ValueError, KeyError, TypeError):
            peers = None
        if not isinstance(peers, list):
            raise BadRequest('expected {"peer_addresses": [...]}')
        self.rejoined.append(peers)
        return {"status": "rejoining", "peer_addresses": peers}


class NodeApiStub:
    """Serve ``NodeState`` on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, state: NodeState | None = None, **fields: Any) -> None:
        self.state = state if state is not None else NodeState(**fields)
        self._server = NodeApiServer(("127.0.0.1", 0), self.state)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> NodeApiStub:
        self._server.start(name="node-api-stub")
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> NodeApiStub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["NodeApiStub", "NodeState"]
