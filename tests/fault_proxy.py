"""A fault-injecting HTTP proxy in front of the moto server, for the chaos tests.

Clients talk plain HTTP to the proxy (``AWS_ENDPOINT_URL=proxy.endpoint``); the proxy forwards each
request over HTTPS to moto with its headers unchanged (the SigV4 signature covers the Host header,
which moto checks against what it receives), so IAM enforcement still applies. Faults:

- ``5xx``       answer 503 SlowDown without forwarding (S3's "try again").
- ``reset``     drop the connection without forwarding.
- ``lost``      forward (moto applies the request), then drop the connection without replying:
                the client cannot tell whether its request took effect.
- ``truncate``  forward, then send the headers with the full Content-Length and only part of
                the body before dropping the connection (a GET cut off mid-body).

Random faults are drawn from a seeded `random.Random` at the given rates; `rules` force a fault on
the first N requests matching a method and a path pattern (a deterministic lost reply). Every
request and fault is counted in `stats` and listed in `log`.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

FAULTS = ("5xx", "reset", "lost", "truncate")
_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}


@dataclass
class Rule:
    method: str
    path: str  # a regular expression searched in the request path (with its query)
    fault: str
    times: int = 1


@dataclass
class FaultProxy:
    upstream: str  # https://127.0.0.1:PORT
    ca_bundle: str
    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)  # fault -> probability per request
    truncate_paths: str = ""  # only GETs whose path matches are truncated ("" = any)
    rules: list[Rule] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # -- control
    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server:
            server.shutdown()
            server.server_close()

    def calm(self) -> None:
        """No more faults (random or ruled) from now on."""
        with self._lock:
            self.rates = {}
            self.rules = []

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- decisions
    def choose(self, method: str, path: str, operation: str = "") -> str | None:
        with self._lock:
            self.stats["requests"] = self.stats.get("requests", 0) + 1
            fault = None
            for rule in self.rules:
                if rule.times > 0 and rule.method == method and re.search(rule.path, path):
                    rule.times -= 1
                    fault = rule.fault
                    break
            else:
                draw = self._random.random()
                for name in FAULTS:
                    rate = self.rates.get(name, 0.0)
                    if name == "truncate" and (method != "GET" or not re.search(self.truncate_paths, path)):
                        continue
                    if draw < rate:
                        fault = name
                        break
                    draw -= rate
            if fault:
                self.stats[fault] = self.stats.get(fault, 0) + 1
                self.log.append(f"{fault} {method} {path} {operation}".rstrip())
            return fault

    def cut(self, size: int) -> int:
        """Where a truncated body of `size` bytes stops."""
        with self._lock:
            return self._random.randrange(1, size)

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> http.client.HTTPResponse:
        up = urlsplit(self.upstream)
        context = ssl.create_default_context(cafile=self.ca_bundle)
        conn = http.client.HTTPSConnection(up.hostname, up.port, context=context, timeout=120)
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn.getresponse()


def _operation(target: str | None, body: bytes) -> str:
    """The API operation of a POST to / (JSON protocols name it in X-Amz-Target, query ones in Action=)."""
    if target:
        return target
    m = re.search(rb"(?:^|&)Action=(\w+)", body[:200])
    return m.group(1).decode() if m else ""


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on us (timeouts after a lost reply): expected here, not news


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, and "100 Continue" for botocore's Expect header

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def _drop(self) -> None:
        """Close with a RST, as a dead middlebox or server would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self) -> None:
        body = self._body()
        fault = self.owner.choose(self.command, self.path, _operation(self.headers.get("X-Amz-Target"), body))
        if fault == "reset":
            return self._drop()
        if fault == "5xx":
            msg = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "content-length"]
        resp = self.owner.forward(self.command, self.path, headers, body)
        data = resp.read()
        if fault == "lost":
            return self._drop()
        head = self.command == "HEAD"  # its Content-Length is the object's, not this (empty) body's
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and (head or k.lower() != "content-length"):
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate" and len(data) > 1 and not head:
            self.wfile.write(data[: self.owner.cut(len(data))])
            self.wfile.flush()
            return self._drop()
        if not head:
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
