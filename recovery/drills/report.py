"""Human reports of a drill record: Markdown and one self-contained HTML page.

A drill record (JSON, kept in the stack's bucket under `drills/`) holds the scenarios a drill
ran; each scenario holds its steps with start and end times, the measured RTO and RPO, and the
objectives they are held to. The HTML page needs nothing from the network: the timeline is an
inline SVG and the styles are inline, so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

# The DR plan's "Continuous Improvement" list, left for people to fill in after every drill.
REVIEW_PROMPTS = (
    "Review all actions taken",
    "Document lessons learned",
    "Update procedures based on findings",
    "Conduct team debriefing",
    "Schedule follow-up training",
    "Update recovery time objectives if needed",
)


def _ts(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _target(minutes: float | None) -> str:
    return "N/A" if minutes is None else f"{minutes:g} min"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def objective_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario: measured RTO/RPO against the component's objectives."""
    rows = []
    for sc in record.get("scenarios", []):
        rows.append({
            "scenario": sc["name"],
            "component": sc.get("component", "-"),
            "rto": _dur(sc.get("rto_seconds")),
            "rto_target": _target(sc.get("rto_target_minutes")),
            "rto_ok": sc.get("rto_met"),
            "rpo": "-" if sc.get("rpo_seconds") is None else (
                f"{_dur(sc['rpo_seconds'])} ({sc.get('rpo_blocks', 0)} blocks)"),
            "rpo_target": _target(sc.get("rpo_target_minutes")),
            "rpo_ok": sc.get("rpo_met"),
            "result": _verdict(sc.get("passed")),
        })
    return rows


def render_markdown(record: dict[str, Any]) -> str:
    lines = [
        f"# DR drill `{record['drill']}` on stack `{record['stack']}`: {_verdict(record.get('passed'))}",
        "",
        f"- Started: {_ts(record.get('started_at'))}",
        f"- Ended: {_ts(record.get('ended_at'))}",
        f"- Record: `{record.get('record_key', '-')}`",
        "",
        "## Measured RTO and RPO against the objectives",
        "",
        "| scenario | component | RTO | target | | RPO | target | | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in objective_rows(record):
        lines.append(f"| {r['scenario']} | {r['component']} | {r['rto']} | {r['rto_target']} | {_verdict(r['rto_ok'])} "
                     f"| {r['rpo']} | {r['rpo_target']} | {_verdict(r['rpo_ok'])} | {r['result']} |")
    for sc in record.get("scenarios", []):
        lines += ["", f"## {sc['name']}", ""]
        if sc.get("description"):
            lines += [sc["description"], ""]
        if sc.get("detection"):
            lines += [f"Detected by: {sc['detection']}", ""]
        if sc.get("error"):
            lines += [f"**Failed:** {sc['error']}", ""]
        lines += ["| step | start | duration | result |", "|---|---|---|---|"]
        for st in sc.get("steps", []):
            d = None if st.get("ended_at") is None else st["ended_at"] - st["started_at"]
            lines.append(f"| {st['name']} | {_ts(st['started_at'])} | {_dur(d)} | {st.get('result', '-')} |")
    lines += ["", "## Post-drill review (for people to fill in)", ""]
    lines += [f"- **{p}:** " for p in REVIEW_PROMPTS]
    return "\n".join(lines) + "\n"


def _timeline_svg(record: dict[str, Any]) -> str:
    steps = [(sc["name"], st) for sc in record.get("scenarios", []) for st in sc.get("steps", [])
             if st.get("started_at") is not None]
    if not steps:
        return "<p>No steps recorded.</p>"
    t0 = min(st["started_at"] for _, st in steps)
    t1 = max((st.get("ended_at") or st["started_at"]) for _, st in steps)
    span = max(t1 - t0, 1e-6)
    # Labels are right-aligned against the chart: make room for the longest (~7 px a character at 12 px).
    longest = max(len(f"{scenario} / {st['name']}") for scenario, st in steps)
    label_w, chart_w, row_h = max(330, 7 * longest + 16), 560, 22
    height = row_h * len(steps) + 40
    colors = {"ok": "#2e7d32", "skipped": "#9e9e9e", "failed": "#c62828", "held": "#6d4c41"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + chart_w + 80}" height="{height}" '
             f'role="img" aria-label="Timeline of the drill steps">']
    for i, (scenario, st) in enumerate(steps):
        y = 10 + i * row_h
        start = (st["started_at"] - t0) / span * chart_w
        width = max(((st.get("ended_at") or st["started_at"]) - st["started_at"]) / span * chart_w, 2)
        color = colors.get(str(st.get("result", "ok")), "#1565c0")
        label = html.escape(f"{scenario} / {st['name']}")
        dur = _dur(None if st.get("ended_at") is None else st["ended_at"] - st["started_at"])
        parts.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" font-size="12">{label}</text>')
        parts.append(f'<rect x="{label_w + start:.1f}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" '
                     f'fill="{color}"><title>{label}: {dur}</title></rect>')
        parts.append(f'<text x="{label_w + start + width + 4:.1f}" y="{y + 14}" font-size="11" fill="#555">{dur}</text>')
    axis_y = 10 + len(steps) * row_h + 8
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + chart_w}" y2="{axis_y}" stroke="#999"/>')
    for frac in (0, 0.25, 0.5, 0.75, 1):
        x = label_w + frac * chart_w
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle">+{_dur(frac * span)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(record: dict[str, Any]) -> str:
    e = html.escape
    verdict = _verdict(record.get("passed"))
    rows = "".join(
        f"<tr><td>{e(r['scenario'])}</td><td>{e(r['component'])}</td><td>{e(r['rto'])}</td><td>{e(r['rto_target'])}</td>"
        f"<td class='{_verdict(r['rto_ok']).lower().replace('/', '')}'>{_verdict(r['rto_ok'])}</td>"
        f"<td>{e(r['rpo'])}</td><td>{e(r['rpo_target'])}</td>"
        f"<td class='{_verdict(r['rpo_ok']).lower().replace('/', '')}'>{_verdict(r['rpo_ok'])}</td>"
        f"<td class='{r['result'].lower().replace('/', '')}'>{r['result']}</td></tr>"
        for r in objective_rows(record)
    )
    details = "".join(
        f"<h3>{e(sc['name'])}</h3>"
        + (f"<p>{e(sc['description'])}</p>" if sc.get("description") else "")
        + (f"<p>Detected by: {e(sc['detection'])}</p>" if sc.get("detection") else "")
        + (f"<p class='fail'>Failed: {e(sc['error'])}</p>" if sc.get("error") else "")
        for sc in record.get("scenarios", [])
    )
    prompts = "".join(f"<li><b>{e(p)}:</b> <span class='blank'></span></li>" for p in REVIEW_PROMPTS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>DR drill {e(record['drill'])} on {e(record['stack'])}: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
h1 .pass, td.pass {{ color: #2e7d32; font-weight: bold; }}
h1 .fail, td.fail, p.fail {{ color: #c62828; font-weight: bold; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #f3f3f3; }}
.blank {{ display: inline-block; min-width: 30em; border-bottom: 1px dotted #999; }}
.meta {{ color: #555; }}
</style></head><body>
<h1>DR drill <code>{e(record['drill'])}</code> on stack <code>{e(record['stack'])}</code>:
<span class="{verdict.lower()}">{verdict}</span></h1>
<p class="meta">Started {_ts(record.get('started_at'))}, ended {_ts(record.get('ended_at'))}.
Record <code>{e(str(record.get('record_key', '-')))}</code>.</p>
<h2>Measured RTO and RPO against the objectives</h2>
<table><tr><th>scenario</th><th>component</th><th>RTO</th><th>target</th><th></th><th>RPO</th><th>target</th><th></th><th>result</th></tr>
{rows}</table>
<h2>Timeline</h2>
{_timeline_svg(record)}
<h2>Scenarios</h2>
{details}
<h2>Post-drill review</h2>
<p>For people to fill in (the DR plan's continuous-improvement list):</p>
<ul>{prompts}</ul>
</body></html>
"""
