"""The one report renderer (recovery/reports/render.py) and the two reports built on it, without AWS."""

from __future__ import annotations

from recovery.drills.report import render_html, render_markdown
from recovery.reports.render import Code, Document, Items, Paragraph, Section, Span, Table, html_page, markdown
from recovery.runbooks.contain import FOLLOW_UPS, report


def test_every_text_is_escaped_in_html_and_pipes_in_markdown_tables() -> None:
    doc = Document(title=["a ", Code("<x>")], summary=[("k&", "<v>")],
                   sections=[Section("s<", [Paragraph("p<"), Table(["h"], [["a|b<"], [Span("<ok>", "pass")]]),
                                            Items(["i<"], checkbox=True)])])
    page, md = html_page(doc), markdown(doc)
    assert page.startswith("<!doctype html>") and "<x>" not in page and "<v>" not in page and "<ok>" not in page
    assert "&lt;x&gt;" in page and "<td class='pass'>&lt;ok&gt;</td>" in page and "&#9744; i&lt;" in page
    assert md.startswith("# a `<x>`\n") and "| a/b< |" in md and "- [ ] i<" in md and "## s<" in md


def test_drill_report_keeps_its_table_timeline_and_review() -> None:
    rec = {"drill": "full", "stack": "local", "passed": True, "started_at": 1.7e9, "ended_at": 1.7e9 + 900,
           "record_key": "drills/x.json",
           "scenarios": [{"name": "database-corruption", "component": "postgresql", "rto_seconds": 120,
                          "rto_target_minutes": 15, "rto_met": True, "passed": True, "description": "<drop>",
                          "steps": [{"name": "swap", "started_at": 1.7e9, "ended_at": 1.7e9 + 60, "result": "ok"}]}]}
    page, md = render_html(rec), render_markdown(rec)
    assert "<svg" in page and "<table>" in page and "database-corruption" in page and "15 min" in page
    assert "Post-drill review" in page and "<drop>" not in page
    assert "| database-corruption | postgresql |" in md and "| swap |" in md and "Post-drill review" in md


def test_incident_report_has_facts_timeline_and_follow_ups() -> None:
    rec = {"incident_id": "INC-7", "instance_id": "i-0123", "stack": "local", "quarantine_group_id": "sg-9",
           "opened_at": "2024-01-01T00:00:00+00:00", "follow_ups": FOLLOW_UPS,
           "investigation": {"events": [{"time": "2024-01-01T00:00:30", "name": "RunInstances", "user": "m|<x>",
                                         "source": "ec2", "resources": []}]}}
    md, page = report(rec)
    assert "Timeline" in md and "Root cause" in md and "Lessons learned" in md and "sg-9" in md
    assert "- **Quarantine group**: sg-9" in md and "| RunInstances by m/<x> (ec2)  |" in md
    assert page.startswith("<!doctype html>") and "Root cause" in page and "m|&lt;x&gt;" in page
