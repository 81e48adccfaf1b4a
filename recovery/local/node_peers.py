"""The simulated node's peers: parsing the addresses it is given, and the simulated connections.

A peer on loopback is real (the local environment's other node, given by a rejoin): it is
connected only while its port accepts connections, so a rejoin toward a node that is down does not
heal through it. Every other address is simulated.

Apart from node_sim.py because peers are their own concern: what a rejoin request may carry
(validated as strictly as a real node would), and how a partition drops connections and healing
brings them back one per interval, so waiting for healing is real.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from typing import Any

from recovery.local.node_api import BadRequest

MAX_REJOIN_PEERS = 64

_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


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


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def answers(address: str, timeout_s: float = 0.3) -> bool:
    """A real peer connects when its port accepts a TCP connection."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        return True
    except OSError:
        return False


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
        # Loopback peers are real (the local environment's other node): they connect only if they
        # answer. Any other address is simulated, since this machine reaches no network.
        self.unreachable: set[str] = set()

    def _all_addresses(self) -> list[str]:
        # The given addresses first, then peers "discovered" through them.
        sim = [f"10.{i // 250}.{i % 250 + 1}.11:8333" for i in range(self.target + len(self.unreachable))]
        given = [a for a in self.addresses if a not in self.unreachable]
        return (given + [a for a in sim if a not in given])[: self.target]

    def tick(self, now: float) -> None:
        with self.lock:
            if self.partitioned and self.heal_at is not None and now >= self.heal_at:
                self.partitioned, self.heal_at = False, None
                self._next_connect = now + self.heal_interval_s
            if self.partitioned or self.connected >= self.target or now < self._next_connect:
                return
            candidate = self._all_addresses()[self.connected]
        # The connect attempt runs outside the lock: the API keeps answering while it waits.
        if is_loopback(candidate) and not answers(candidate):
            with self.lock:
                self.unreachable.add(candidate)  # a discovered (simulated) peer takes its place
            return
        with self.lock:
            if not self.partitioned and self.connected < self.target:
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
            self.unreachable.clear()  # asked again: try every given peer anew
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
                "unreachable_peers": sorted(self.unreachable),
                "partitioned": self.partitioned,
                "healing": (not self.partitioned) and self.connected < self.target,
                "heal_at_in_s": None if self.heal_at is None else round(max(0.0, self.heal_at - time.monotonic()), 2),
            }



def _admin(node_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import urllib.request

    req = urllib.request.Request(node_url.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def drop_peers(node_url: str, heal_after_s: float | None = None) -> dict[str, Any]:
    """Partition the local node (``POST /admin/partition``): every peer connection drops, and none
    comes back until ``heal_after_s`` passes or a rejoin/heal asks. For the partition drill."""
    return _admin(node_url, "/admin/partition", {} if heal_after_s is None else {"heal_after_s": heal_after_s})


def heal_peers(node_url: str) -> dict[str, Any]:
    """Let the network heal (``POST /admin/heal``): the partition drill's cleanup if it stops halfway."""
    return _admin(node_url, "/admin/heal", {})
