"""What `verify`, `status` and drills found, as DR events (recovery/notify.py): one call per place.

A stale backup and broken replication are lasting conditions: sent `once` per backup kind (and
resolved, closing the pager's incident, when a later run finds them fine again), so one stale
backup pages once however often `status` runs. Other failed verification checks make one
`verify-failed` event per run. A drill sends one `drill-failed` event per failing scenario (no
summary event: each names the drill, its report and record, and the CLI's exit says the rest).
"""

from __future__ import annotations

from typing import Any, Iterable

from recovery import notify

_COMPONENT = {"db": "postgresql", "chain": "node", "config": "site"}


def _stale_key(outputs: Any, kind: str) -> str:
    return f"xai-dr/{outputs.stack}/backup-stale/{kind}"


def _replication_key(outputs: Any, kind: str) -> str:
    return f"xai-dr/{outputs.stack}/replication-failed/{kind}"


def _condition(outputs: Any, event: str, key: str, kind: str, bad: bool | None, detail: str) -> None:
    component = "site" if event == "replication-failed" else _COMPONENT.get(kind, "site")
    if bad:
        notify.announce(outputs, event, component, detail, details={"backup kind": kind}, dedup_key=key, once=True)
    elif bad is False:
        notify.resolve(outputs, event, component, dedup_key=key)


def verification_findings(outputs: Any, checks: Iterable[Any]) -> None:
    """After `verify`: stale backups and replication once each, the other failed checks as one event."""
    others = []
    for c in checks:
        if c.name == "age":
            _condition(outputs, "backup-stale", _stale_key(outputs, c.scope), c.scope,
                       None if c.ok is None else not c.ok, c.detail)
        elif c.name == "replication":
            _condition(outputs, "replication-failed", _replication_key(outputs, c.scope), c.scope,
                       None if c.ok is None else not c.ok, c.detail)
        elif c.ok is False:
            others.append(c)
    if others:
        notify.announce(outputs, "verify-failed", _COMPONENT.get(others[0].scope, "site"),
                        f"{len(others)} verification check(s) failed (first: {others[0].scope} {others[0].name}: "
                        f"{others[0].detail})", details={f"{c.scope} {c.name}": c.detail for c in others})


def status_findings(outputs: Any, lines: Iterable[Any]) -> None:
    """After `status`: a red backup line is a stale (or missing) backup; a red replication line broken
    replication. Green lines resolve them."""
    for ln in lines:
        if ln.component == "backup":
            _condition(outputs, "backup-stale", _stale_key(outputs, ln.check), ln.check,
                       {"red": True, "green": False}.get(ln.level), ln.detail)
        elif ln.component == "replication":
            _condition(outputs, "replication-failed", _replication_key(outputs, "db"), "db",
                       {"red": True, "green": False}.get(ln.level), ln.detail)


def drill_findings(outputs: Any, record: dict[str, Any], reports: dict[str, str]) -> None:
    """One event per failing scenario of a drill record (already scrubbed)."""
    for sc in record.get("scenarios", []):
        if sc.get("passed") is False and not sc.get("skipped"):
            notify.announce(outputs, "drill-failed", str(sc.get("component") or "site"),
                            f"drill {record['drill']} scenario {sc['name']} failed: {sc.get('error') or 'objective missed'}",
                            details={"drill": record["drill"], "scenario": sc["name"], "record": record.get("record_key"),
                                     "report": reports.get("html")},
                            dedup_key=f"xai-dr/{outputs.stack}/drill-failed/{sc['name']}/{record['started_at']:.0f}")
