"""One small document model for the human reports, rendered as Markdown and as one HTML page.

The drill report (`recovery.drills.report`) and the incident report (`recovery.runbooks.contain`)
build a :class:`Document`: a title, summary rows, and sections holding paragraphs, tables, lists
and (HTML only) inline figures. :func:`markdown` and :func:`html_page` render it; every text is
escaped for its format, so a value from AWS or a record cannot break the page. The page is
self-contained (inline styles, no scripts, nothing fetched) so it can be mailed or archived.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Span:
    """Text with a CSS class in HTML (e.g. pass/fail); plain text in Markdown."""
    text: str
    cls: str


Inline = Union[str, Code, Strong, Span]
Text = Union[Inline, list[Inline]]


@dataclass
class Paragraph:
    text: Text
    cls: str | None = None


@dataclass
class Table:
    header: list[str]
    rows: list[list[Text]]


@dataclass
class Items:
    """A bullet list; ``checkbox`` marks to-dos, ``blank`` leaves a line to fill in after each."""
    items: list[Text]
    checkbox: bool = False
    blank: bool = False


@dataclass
class Figure:
    """Raw HTML (an inline SVG) the caller built and escaped itself; Markdown shows ``alt``, if any."""
    html: str
    alt: str | None = None


Block = Union[Paragraph, Table, Items, Figure, "Section"]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: Text
    summary: list[tuple[str, Text]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    css: str = ""


def _parts(text: Text) -> list[Inline]:
    return text if isinstance(text, list) else [text]


def plain(text: Text) -> str:
    return "".join(p if isinstance(p, str) else p.text for p in _parts(text))


def _md(text: Text) -> str:
    out = []
    for p in _parts(text):
        out.append(f"`{p.text}`" if isinstance(p, Code) else f"**{p.text}**" if isinstance(p, Strong)
                   else p if isinstance(p, str) else p.text)
    return "".join(out)


def _html(text: Text) -> str:
    e, out = html.escape, []
    for p in _parts(text):
        out.append(f"<code>{e(p.text)}</code>" if isinstance(p, Code) else f"<b>{e(p.text)}</b>"
                   if isinstance(p, Strong) else f"<span class='{e(p.cls)}'>{e(p.text)}</span>"
                   if isinstance(p, Span) else e(p))
    return "".join(out)


def _md_blocks(blocks: list[Block], level: int) -> list[str]:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Section):
            lines += ["", f"{'#' * level} {b.title}", ""] + _md_blocks(b.blocks, level + 1)
        elif isinstance(b, Paragraph):
            lines += [_md(b.text), ""]
        elif isinstance(b, Table):
            lines += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(_md(c).replace("|", "/") for c in row) + " |" for row in b.rows]
            lines.append("")
        elif isinstance(b, Items):
            mark = "- [ ] " if b.checkbox else "- "
            lines += [mark + _md(i) + (" " if b.blank else "") for i in b.items] + [""]
        elif b.alt:
            lines += [b.alt, ""]
    return lines


def markdown(doc: Document) -> str:
    lines = [f"# {_md(doc.title)}", ""] + [f"- **{k}**: {_md(v)}" for k, v in doc.summary]
    lines += _md_blocks(list(doc.sections), 2)
    # each block ends with a blank line and each heading starts with one: keep one between them
    out = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def _html_blocks(blocks: list[Block], level: int) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Section):
            out += [f"<h{level}>{html.escape(b.title)}</h{level}>"] + _html_blocks(b.blocks, min(level + 1, 6))
        elif isinstance(b, Paragraph):
            cls = f" class='{html.escape(b.cls)}'" if b.cls else ""
            out.append(f"<p{cls}>{_html(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>\n" for row in b.rows)
            out.append(f"<table><tr>{head}</tr>\n{rows}</table>")
        elif isinstance(b, Items):
            mark = "&#9744; " if b.checkbox else ""
            blank = " <span class='blank'></span>" if b.blank else ""
            out.append("<ul>" + "".join(f"<li>{mark}{_html(i)}{blank}</li>" for i in b.items) + "</ul>")
        else:
            out.append(b.html)
    return out


def _cell(c: Text) -> str:
    """A cell that is one Span takes its class on the <td> (so a whole cell reads pass/fail)."""
    if isinstance(c, Span):
        return f"<td class='{html.escape(c.cls)}'>{html.escape(c.text)}</td>"
    return f"<td>{_html(c)}</td>"


BASE_CSS = """body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; }
.blank { display: inline-block; min-width: 30em; border-bottom: 1px dotted #999; }
.meta { color: #555; }"""


def html_page(doc: Document) -> str:
    summary = "".join(f"<li><b>{html.escape(k)}</b>: {_html(v)}</li>" for k, v in doc.summary)
    body = [f"<h1>{_html(doc.title)}</h1>"] + ([f"<ul class='meta'>{summary}</ul>"] if summary else [])
    body += _html_blocks(list(doc.sections), 2)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<title>{html.escape(plain(doc.title))}</title>\n<style>\n{BASE_CSS}\n"
            + (f"{doc.css}\n" if doc.css else "") + "</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
