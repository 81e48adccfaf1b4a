"""Redis (ElastiCache) adapter: does an auth token work, and a real round trip with it.

A minimal RESP client over one socket: AUTH, PING, SET, GET, DEL. Enough to prove a token is
accepted or rejected without adding a client library. ElastiCache with in-transit encryption
needs TLS (``tls=True``); the local environment's redis-server speaks plain TCP.

Tokens are never put in messages or exceptions: a refusal is reported as ``False`` and
errors name only host and port.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from recovery import redact
from recovery.errors import CacheError


@dataclass(frozen=True)
class CacheTarget:
    host: str
    port: int
    tls: bool = False

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def _cmd(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Conn:
    def __init__(self, target: CacheTarget, timeout: float = 5.0) -> None:
        try:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
            if target.tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        except OSError as exc:
            raise CacheError(f"cannot reach the cache at {target.where}: {exc.strerror or type(exc).__name__}",
                             "check the stack's cache_endpoint/cache_port and the network path") from None
        self.sock = sock
        self.buf = sock.makefile("rb")
        self.target = target

    def call(self, *parts: str) -> tuple[bool, bytes]:
        """(ok, payload): ok False for a Redis error reply (-ERR/-WRONGPASS...)."""
        try:
            self.sock.sendall(_cmd(*parts))
            line = self.buf.readline()
        except OSError as exc:
            raise CacheError(f"the cache at {self.target.where} dropped the connection ({type(exc).__name__})",
                             "retry; check the cache's health") from None
        if not line:
            raise CacheError(f"the cache at {self.target.where} closed the connection", "retry; check its health")
        kind, rest = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"$":
            try:
                n = int(rest)
            except ValueError:
                raise CacheError(f"the cache at {self.target.where} answered something that is not Redis",
                                 "check the stack's cache_endpoint/cache_port") from None
            if n < 0:
                return True, b""
            data = self.buf.read(n + 2)[:n]
            return True, data
        if kind == b"-":
            return False, rest
        return True, rest

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def answers(target: CacheTarget, timeout: float = 2.0) -> bool:
    """True if a Redis server answers PING at ``target`` (any reply counts, NOAUTH included).

    No token is sent: this only tells a real Redis from an endpoint nothing (or no Redis) listens on,
    as with a local stack whose cache group no redis-server backs."""
    try:
        conn = _Conn(target, timeout=timeout)
    except CacheError:
        return False
    try:
        conn.call("PING")
        return True
    except CacheError:
        return False
    finally:
        conn.close()


def token_works(target: CacheTarget, token: str) -> bool:
    """True if Redis accepts AUTH with ``token`` (the default user's password)."""
    redact.register(token)
    conn = _Conn(target)
    try:
        ok, reply = conn.call("AUTH", token)
        if ok:
            return True
        if reply.startswith((b"WRONGPASS", b"ERR invalid password", b"ERR AUTH", b"NOPERM")):
            return False
        raise CacheError(f"the cache at {target.where} answered AUTH with an unexpected error",
                         "check that it is Redis with AUTH enabled")
    finally:
        conn.close()


def round_trip(target: CacheTarget, token: str, key: str = "xai-dr:rotation-test") -> dict[str, object]:
    """AUTH, PING, SET, GET, DEL with ``token``: raises CacheError unless every call works."""
    conn = _Conn(target)
    try:
        ok, _ = conn.call("AUTH", token)
        if not ok:
            raise CacheError(f"the cache at {target.where} rejected the new token", "rerun to retry the rotation")
        steps = [("PING",), ("SET", key, "ok", "EX", "60"), ("GET", key), ("DEL", key)]
        for parts in steps:
            good, reply = conn.call(*parts)
            if not good:
                raise CacheError(f"the cache at {target.where} refused {parts[0]} with the new token",
                                 "check the default user's ACL")
            if parts[0] == "GET" and reply != b"ok":
                raise CacheError(f"the cache at {target.where} returned a wrong value", "check the cache's health")
        return {"ping": True, "set_get": True}
    finally:
        conn.close()


def key_count(target: CacheTarget, token: str) -> int:
    """DBSIZE with ``token``: how many keys the cache holds (a recreated group must hold none)."""
    redact.register(token)
    conn = _Conn(target)
    try:
        ok, _ = conn.call("AUTH", token)
        good, reply = conn.call("DBSIZE") if ok else (False, b"")
        if not good:
            raise CacheError(f"the cache at {target.where} refused DBSIZE with the current token",
                             "check the default user's ACL")
        return int(reply)
    finally:
        conn.close()
