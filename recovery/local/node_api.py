"""The XAI node API over HTTP: the one server both the simulated node and the test stub use.

The simulated node (`node_sim.py`, a real process with a real chain) and the stub
(`node_api_stub.py`, in-process, steered by tests) answer the same endpoints of the DR plan. They
differ only in what answers, so the wire (reading the request, JSON bodies, status codes, the
threaded server) lives here once, and each of them is an *app*: an object with
``handle(request) -> Response``. ``route()`` is the usual ``handle``: look the request up in a
table of ``(method, path) -> handler``, 404/405 for the rest, and map the errors below.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Protocol

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request the node refuses; the message is what the client sees (HTTP 400)."""


class Unavailable(Exception):
    """The node cannot serve this now (HTTP 503)."""


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # as sent: path and query
    path: str
    query: dict[str, list[str]]
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None
    raw: bytes | None = None  # sent as is, as text/html (what a proxy's error page looks like)


Routes = Mapping[tuple[str, str], Callable[[Request], Any]]


class App(Protocol):
    def handle(self, request: Request) -> Response: ...


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def route(routes: Routes, request: Request) -> Response:
    """Answer ``request`` from ``routes``: 200 with the handler's body, 400/503 for BadRequest and
    Unavailable, 500 for anything else, 405 for a known path with another method, else 404."""
    handler = routes.get((request.method, request.path))
    try:
        if handler is not None:
            return Response(200, handler(request))
    except BadRequest as exc:
        return Response(400, {"error": str(exc)})
    except Unavailable as exc:
        return Response(503, {"error": str(exc)})
    except Exception as exc:  # noqa: BLE001
        log.exception("error serving %s %s", request.method, request.path)
        return Response(500, {"error": one_line(exc)})
    if any(path == request.path for _, path in routes):
        return Response(405, {"error": f"{request.method} not allowed on {request.path}"})
    return Response(404, {"error": f"no route {request.method} {request.path}"})


class _Handler(BaseHTTPRequestHandler):
    server: NodeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s - %s", self.address_string(), format % args)

    def _serve(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(method, self.path, url.path, urllib.parse.parse_qs(url.query), body)
        response = self.server.app.handle(request)
        data = response.raw if response.raw is not None else json.dumps(response.body).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json" if response.raw is None else "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")


class NodeApiServer(ThreadingHTTPServer):
    """Serve ``app`` on ``address`` ((host, 0) picks a free port), one thread per request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, name: str = "node-api", poll_interval: float = 0.05) -> NodeApiServer:
        """Serve in a background (daemon) thread."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": poll_interval},
                                        name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:  # shutdown() waits for serve_forever(), which never ran without start()
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
