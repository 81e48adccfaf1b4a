"""The records: with ``install(record_file=path)`` one JSON line per authorised request (see
the package docstring for the fields), read back by ``read_records(path)``."""

from __future__ import annotations

import json
import threading
from typing import Any

from recovery.local.iam.call import _Call
from recovery.local.iam.facts import _Check, _Principal, _iso, _now, _unique

_RECORD_LOCK = threading.Lock()
_RECORD_FILE: str | None = None


def _set_record_file(path: str | None) -> None:
    """Where _record appends from now on; None records nothing (install/uninstall set it)."""
    global _RECORD_FILE
    _RECORD_FILE = path


def read_records(path: str) -> list[dict[str, Any]]:
    """The records an installed authorizer appended to `path` (any process), oldest first."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _record(call: _Call, operation: str, principal: _Principal | None, check: _Check, answer: dict[str, Any],
            unmapped: bool, checks: list[_Check] | None = None) -> None:
    """One JSON line per authorised request: the deciding check (the first refused, else the first),
    and every (action, resource) the request needed, so a grant used only as a request's second
    resource (CreateSecurityGroup's VPC) counts as used."""
    if _RECORD_FILE is None:
        return
    entry = {
        "time": _iso(_now()), "principal": principal.arn if principal else call.key_id,
        "principal_arn": principal.principal_arn if principal else None, "operation": operation or call.operation,
        "action": check.action, "resource": check.resource, "region": call.region,
        "decision": answer["decision"], "detail": answer["detail"], "unmapped": unmapped,
        "checks": len(checks or [check]), "checked": [[c.action, c.resource] for c in _unique(checks or [check])],
    }
    with _RECORD_LOCK, open(_RECORD_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
