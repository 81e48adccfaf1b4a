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

from recovery.reports.render import (Code, Document, Figure, Items, Paragraph, Section, Span, Strong, Table,
                                     html_page, markdown)

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


def component_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per component with an objective (the plan's table): its scenarios, the worst RTO and
    RPO they measured, and the verdict; a component no scenario exercised says so ("not drilled")."""
    rows = []
    for comp, obj in (record.get("objectives") or {}).items():
        ran = [sc for sc in record.get("scenarios", []) if sc.get("component") == comp and not sc.get("skipped")]
        rto = [sc["rto_seconds"] for sc in ran if sc.get("rto_seconds") is not None]
        rpo = [sc["rpo_seconds"] for sc in ran if sc.get("rpo_seconds") is not None]
        verdicts = [sc.get("passed") for sc in ran]
        rows.append({
            "component": comp, "scenarios": ", ".join(sc["name"] for sc in ran) or "-",
            "rto": _dur(max(rto)) if rto else "-", "rto_target": _target((obj or {}).get("rto_minutes")),
            "rpo": _dur(max(rpo)) if rpo else "-", "rpo_target": _target((obj or {}).get("rpo_minutes")),
            "result": "not drilled" if not ran else _verdict(all(v is True for v in verdicts)),
        })
    return rows


def _verdict_cell(ok: bool | None) -> Span:
    v = _verdict(ok)
    return Span(v, v.lower().replace("/", ""))


def _scenario(sc: dict[str, Any]) -> Section:
    blocks: list[Any] = []
    if sc.get("description"):
        blocks.append(Paragraph(sc["description"]))
    if sc.get("detection"):
        blocks.append(Paragraph(f"Detected by: {sc['detection']}"))
    if sc.get("error"):
        blocks.append(Paragraph([Strong("Failed:"), f" {sc['error']}"], cls="fail"))
    rows = []
    for st in sc.get("steps", []):
        d = None if st.get("ended_at") is None else st["ended_at"] - st["started_at"]
        rows.append([st["name"], _ts(st["started_at"]), _dur(d), str(st.get("result", "-"))])
    blocks.append(Table(["step", "start", "duration", "result"], rows))
    return Section(sc["name"], blocks)


def document(record: dict[str, Any]) -> Document:
    """The drill report as a document: both renderings come from it."""
    verdict = _verdict(record.get("passed"))
    objectives = Table(["scenario", "component", "RTO", "target", "", "RPO", "target", "", "result"], [
        [r["scenario"], r["component"], r["rto"], r["rto_target"], _verdict_cell(r["rto_ok"]),
         r["rpo"], r["rpo_target"], _verdict_cell(r["rpo_ok"]), Span(r["result"], r["result"].lower())]
        for r in objective_rows(record)])
    components = Table(["component", "scenarios", "worst RTO", "target", "worst RPO", "target", "result"], [
        [r["component"], r["scenarios"], r["rto"], r["rto_target"], r["rpo"], r["rpo_target"],
         Span(r["result"], r["result"].lower().replace(" ", "-"))] for r in component_rows(record)])
    review = [Paragraph("For people to fill in (the DR plan's continuous-improvement list):"),
              Items([[Strong(f"{p}:")] for p in REVIEW_PROMPTS], blank=True)]
    return Document(
        title=["DR drill ", Code(str(record["drill"])), " on stack ", Code(str(record["stack"])), ": ",
               Span(verdict, verdict.lower())],
        summary=[("Started", _ts(record.get("started_at"))), ("Ended", _ts(record.get("ended_at"))),
                 ("Record", Code(str(record.get("record_key", "-"))))],
        sections=[Section("Measured RTO and RPO against the objectives", [objectives]),
                  Section("Per component (the plan's objectives table)", [components]),
                  Section("Timeline", [Figure(_timeline_svg(record), alt="The steps' timeline is drawn in the HTML report.")]),
                  Section("Scenarios", [_scenario(sc) for sc in record.get("scenarios", [])]),
                  Section("Post-drill review (for people to fill in)", review)],
        css=CSS)


CSS = """h1 .pass, td.pass { color: #2e7d32; font-weight: bold; }
h1 .fail, td.fail, p.fail { color: #c62828; font-weight: bold; }"""


def render_markdown(record: dict[str, Any]) -> str:
    return markdown(document(record))


def render_html(record: dict[str, Any]) -> str:
    return html_page(document(record))


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
