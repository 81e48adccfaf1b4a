"""What a decision is made of: one check a request needs (``_Check``) and the caller
(``_Principal``), with moto's times and policy documents in the form AWS and iam-simulate use.
Every other module of the package builds on these; this one imports none of them."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class _Check:
    """One IAM decision a request needs."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)
    resource_policy: Any = None
    resource_account: str | None = None


@dataclass
class _Principal:
    kind: str  # "root" | "user" | "role" | "anonymous"
    arn: str  # the caller as AWS names it in errors: the session ARN for a role
    principal_arn: str  # aws:PrincipalArn: the role ARN for a session
    policies: list[dict[str, Any]] = field(default_factory=list)
    boundary: list[dict[str, Any]] = field(default_factory=list)
    session_policy: Any = None
    context: dict[str, str] = field(default_factory=dict)


def _unique(checks: list[_Check]) -> Iterable[_Check]:
    seen: set[str] = set()
    for check in checks:
        key = json.dumps([check.action, check.resource, check.context], sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield check


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(t: _dt.datetime) -> str:
    if t.tzinfo is None:  # moto keeps naive UTC datetimes
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _document(doc: Any) -> Any:
    """moto keeps policy documents as JSON text (AWS managed ones sometimes as dicts)."""
    return json.loads(doc) if isinstance(doc, str) else doc
