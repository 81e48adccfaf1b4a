"""Route 53's data plane: a real DNS server answering from moto's hosted zones.

AWS: Route 53's name servers answer queries for a hosted zone's records everywhere, also while
us-east-1 (its API) is down. A failover record pair answers with the PRIMARY while its health
check is healthy, else with the SECONDARY (when that one is healthy or has no check); with both
unhealthy Route 53 answers with the PRIMARY.

moto 5.2.5: stores zones and record sets; serves no DNS.

This module: ``DnsServer().start()`` answers UDP queries on 127.0.0.1 (a free port) from moto's
Route 53 backends of every account: the longest hosted zone that holds the name, its simple record
sets of the asked type (a CNAME answers any type, as DNS does), and failover pairs decided by
``route53_health.health_check_healthy``, the same evaluation GetHealthCheckStatus answers with.
NXDOMAIN for a name inside a zone with no records, REFUSED outside every zone. TTLs are the
records'. It is not an HTTP request, so a regional outage (outage.py) never touches it. The local
environment's daemon (recovery/local/aws_daemon.py) runs one and writes its address into
``aws.json`` (``"dns"``); the local stacks' ``dns_server`` output hands it to the runbooks.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from recovery.local.emulator.route53_health import health_check_healthy


def _zones() -> list[tuple[str, Any]]:
    from moto.route53.models import route53_backends

    out = []
    for account in list(route53_backends.keys()):
        for backend in list(route53_backends[account].values()):
            for zone in list(backend.zones.values()):
                out.append((zone.name.rstrip(".").lower(), zone))
    return out


def _healthy(hc_id: str | None) -> bool | None:
    from moto.route53.models import route53_backends

    if not hc_id:
        return None
    for account in list(route53_backends.keys()):
        for backend in list(route53_backends[account].values()):
            hc = backend.health_checks.get(hc_id)
            if hc is not None:
                return health_check_healthy(hc)[0]
    return False  # a check that does not exist never passes


def resolve(name: str, rdtype: str) -> tuple[str, list[Any]]:
    """("NOERROR"|"NXDOMAIN"|"REFUSED", the record sets that answer) for ``name``."""
    name = name.rstrip(".").lower()
    zones = [(zn, z) for zn, z in _zones() if name == zn or name.endswith("." + zn)]
    if not zones:
        return "REFUSED", []
    _zn, zone = max(zones, key=lambda t: len(t[0]))
    sets = [r for r in zone.rrsets if r.name.rstrip(".").lower() == name]
    if not sets:
        return "NXDOMAIN", []
    typed = [r for r in sets if r.type == rdtype] or [r for r in sets if r.type == "CNAME"]
    failover = [r for r in typed if r.failover]
    if not failover:
        return "NOERROR", typed
    primary = next((r for r in failover if r.failover == "PRIMARY"), None)
    secondary = next((r for r in failover if r.failover == "SECONDARY"), None)
    if primary is not None and _healthy(primary.health_check_id) is not False:
        return "NOERROR", [primary]
    if secondary is not None and _healthy(secondary.health_check_id) is not False:
        return "NOERROR", [secondary]
    return "NOERROR", [primary or secondary]


def answer(wire: bytes) -> bytes:
    """The wire-format response to one wire-format query."""
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    query = dns.message.from_wire(wire)
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.AA  # authoritative, as a zone's name servers are
    for q in query.question:
        rcode, sets = resolve(q.name.to_text(), dns.rdatatype.to_text(q.rdtype))
        resp.set_rcode(dns.rcode.from_text(rcode))
        for r in sets:
            raw = [v.get("Value") if isinstance(v, dict) else v for v in r.records]
            values = [str(v) if r.type not in ("CNAME", "NS") or str(v).endswith(".") else f"{v}." for v in raw]
            resp.answer.append(dns.rrset.from_text_list(q.name, int(r.ttl or 60), "IN", r.type, values))
    return bytes(resp.to_wire())


class DnsServer:
    """UDP on 127.0.0.1; ``address`` is "127.0.0.1:PORT" once started."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.address = ""

    def start(self) -> "DnsServer":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="route53-dns", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                wire, peer = sock.recvfrom(4096)
            except OSError:
                return  # closed by stop()
            try:
                sock.sendto(answer(wire), peer)
            except Exception:  # noqa: BLE001 - a malformed query gets no answer, as from a real server
                continue

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


__all__ = ["DnsServer", "resolve", "answer"]
