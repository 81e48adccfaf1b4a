"""A regional outage: every request for the region is dropped, as when a region is gone.

AWS: when a region fails its endpoints stop answering; so do the global control planes hosted
there. Route 53's API, IAM and STS's global endpoint all live in us-east-1 (clients sign their
requests for us-east-1). DNS answering and health checking (Route 53's data plane) and the other
regions' endpoints keep working.

moto 5.2.5: one server answers every region; nothing can take a region away.

This extension: while an outage of region R holds, a request whose SigV4 credential scope names R
(the ``Credential=AKID/DATE/R/SERVICE/aws4_request`` of its Authorization header, or a presigned
URL's ``X-Amz-Credential``) gets no response at all: its connection is shut down and the server
(moto_server.py), seeing an ECONNRESET, writes nothing, so a client sees what it sees in a real outage, a
connection that ends without an answer, and its retries meet the same. Unsigned
requests (``/moto-api/...``, this control) are served; the emulator's DNS server
(route53_dns.py) is not an HTTP request and keeps answering.

Control (unsigned, on the emulator's endpoint):

- ``POST /xai-local/outage`` with ``{"regions": ["us-east-1"]}`` begins it (``[]`` heals);
- ``GET /xai-local/outage`` answers ``{"regions", "since", "refused": [...]}``.

Every refused request is recorded (time, region, service, operation, access key) in memory and,
with ``configure(record_file=...)``, in the record file as kind ``outage-refused``. In-process:
``begin(regions)``, ``heal()``, ``regions()``, ``refused()``.
"""

from __future__ import annotations

import errno
import json
import re
import socket
import time
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from recovery.local.emulator.records import LOCK, SOCKET_KEY, persist, wrap

CONTROL_PATH = "/xai-local/outage"
_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")

_STATE: dict[str, Any] = {"regions": [], "since": None}
_REFUSED: list[dict[str, Any]] = []


def begin(regions: Iterable[str]) -> None:
    with LOCK:
        _STATE["regions"] = sorted(set(regions))
        _STATE["since"] = time.time() if _STATE["regions"] else None


def heal() -> None:
    begin([])


def regions() -> list[str]:
    with LOCK:
        return list(_STATE["regions"])


def refused() -> list[dict[str, Any]]:
    with LOCK:
        return [dict(r) for r in _REFUSED]


def install() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    wrap(DomainDispatcherApplication, "__call__", _call)


def scope(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(access key, region, service) of a SigV4-signed request, None when it is unsigned."""
    m = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if m is None:
        cred = parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential", [""])[0]
        m = _SCOPE.search("Credential=" + cred)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _operation(environ: dict[str, Any]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).rsplit(".", 1)[-1]
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    return action[0] if action else f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"


def _call(original: Callable[..., Any], app: Any, environ: dict[str, Any], start_response: Any) -> Any:
    if environ.get("PATH_INFO") == CONTROL_PATH:
        return _control(environ, start_response)
    down = regions()
    if down:
        signed = scope(environ)
        if signed is not None and signed[1] in down:
            entry = {"time": time.time(), "region": signed[1], "service": signed[2],
                     "operation": _operation(environ), "access_key": signed[0]}
            with LOCK:
                _REFUSED.append(entry)
            persist("outage-refused", entry)
            # Close the connection under the request, then let the server treat the ECONNRESET
            # as a dropped client: nothing is written, no status, no body.
            sock = environ.get(SOCKET_KEY)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            raise ConnectionResetError(errno.ECONNRESET, f"region {signed[1]} is in outage")
    return original(app, environ, start_response)


def _control(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ.get("REQUEST_METHOD") == "POST":
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(size) or b"{}")
            wanted = body["regions"]
            if not isinstance(wanted, list) or not all(isinstance(r, str) for r in wanted):
                raise ValueError("regions must be a list of region names")
        except (ValueError, KeyError) as exc:
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [json.dumps({"error": str(exc)}).encode()]
        begin(wanted)
    with LOCK:
        doc = {"regions": list(_STATE["regions"]), "since": _STATE["since"], "refused": [dict(r) for r in _REFUSED]}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(doc).encode()]


__all__ = ["begin", "heal", "regions", "refused", "install", "scope", "CONTROL_PATH"]
