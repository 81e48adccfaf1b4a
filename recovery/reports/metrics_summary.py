"""`recovery metrics` on a terminal: the collected report in a dozen lines for a person.

Prometheus text and --json are for machines and stay as they are; this reads only the report's
JSON document (recovery/reports/metrics.py), so the summary never disagrees with the samples.
"""

from __future__ import annotations

from typing import Any

from recovery.units import human_seconds


def _pct(r: float | None) -> str:
    return "-" if r is None else f"{100 * r:.0f}%"


def _window(w: dict[str, Any]) -> str:
    if not w.get("expected"):
        return "none due yet"  # a fresh environment: no slot has come round, nothing failed
    return f"{min(w['catalogued'] - w['failed_verification'], w['expected'])}/{w['expected']} ({_pct(w['success_ratio'])})"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = [f"DR metrics for stack {doc['stack']} ({doc['bucket']}) at {doc['generated_at'][:19]}Z"]
    rows = [("backup", "last good", "24h", "7d", "RPO")]
    for kind, kb in sorted(doc["backups"].items()):
        age = kb.get("last_success_age_seconds")
        rpo = kb.get("rpo_compliant")
        limit = kb.get("rpo_limit_seconds")
        rows.append((kind, "never" if age is None else f"{human_seconds(age)} ago", _window(kb["windows"]["24h"]),
                     _window(kb["windows"]["7d"]),
                     "-" if rpo is None else ("met" if rpo else "MISSED") + f" (limit {human_seconds(limit)})"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    v, r, d = doc["verifications"], doc["restores"], doc["drills"]
    lines.append(f"verifications ({v['window']}): {v['ok']} ok of {v['runs']}")
    lines.append(f"restores: {r['ok']} ok, {r['failed']} failed ({_pct(r['success_ratio'])})")
    lines.append(f"drills: {d['passed']} passed, {d['failed']} failed" + (f", last {d['last_at'][:19]}Z" if d.get("last_at") else ""))
    times = [f"{comp} {src} p95 {human_seconds(t['p95_seconds'])}" for comp, by in sorted(doc["recovery_time"].items())
             for src, t in sorted(by.items())]
    lines.append("recovery times: " + ("; ".join(times) if times else "none measured yet"))
    rep = doc.get("database_replication") or {}
    for what in ("replication", "restorable"):
        if isinstance(rep.get(what), dict) and rep[what].get("detail"):
            lines.append(f"{what}: {rep[what]['level']}: {rep[what]['detail']}")
    lines.append("(Prometheus text: pipe it, e.g. `| cat`, or --textfile; everything: --json)")
    return lines
