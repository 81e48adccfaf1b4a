"""A small threaded HTTP server that speaks the XAI node API (the DR plan's endpoints).

Tests and the local mode start one on a free port and steer its state. It is a stub, not a node:
the later simulated node can subclass ``NodeState`` / ``NodeApiStub`` and keep this wire format.

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        st = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        if st.delay_s:
            time.sleep(st.delay_s)
        with st.lock:
            st.requests.append((method, self.path))
            if st.failures:
                status = st.failures.pop(0)
                self._send(status, {"error": f"stub failure {status}"})
                return
            if st.garbage_next:
                st.garbage_next -= 1
                self._send(200, None, raw=b"<html>proxy error</html>")
                return
            routes: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {
                ("GET", "/api/v1/blockchain/info"): st.info,
                ("GET", "/api/v1/blockchain/verify"): lambda: {"is_valid": st.is_valid, "block_height": st.block_height},
                ("GET", "/api/v1/network/info"): lambda: {"peer_count": st.peer_count},
                ("GET", "/api/v1/mempool/info"): lambda: {"transaction_count": st.transaction_count},
                ("GET", "/api/v1/node/status"): lambda: {"is_mining": st.is_mining},
            }
            if method == "POST" and self.path == "/api/v1/network/rejoin":
                try:
                    peers = json.loads(payload)["peer_addresses"]
                    assert isinstance(peers, list)
                except (ValueError, KeyError, TypeError, AssertionError):
                    self._send(400, {"error": "expected {\"peer_addresses\": [...]}"})
                    return
                st.rejoined.append(peers)
                self._send(200, {"status": "rejoining", "peer_addresses": peers})
                return
            route = routes.get((method, self.path))
            if route is None:
                self._send(404, {"error": f"no route {method} {self.path}"})
                return
            self._send(200, route())

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: NodeState


class NodeApiStub:
    """Serve ``NodeState`` on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, state: NodeState | None = None, **fields: Any) -> None:
        self.state = state if state is not None else NodeState(**fields)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> NodeApiStub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="node-api-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> NodeApiStub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["NodeApiStub", "NodeState"]
