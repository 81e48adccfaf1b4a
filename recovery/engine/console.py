"""The terminal reporter: logs, plan and summary on stderr.

Two faces, chosen by whether stderr is a terminal:
- a terminal gets one line per step, rewritten in place while it runs (spinner, elapsed, progress
  with ETA) and left as one final line (``✓ step  0.4s  short detail``), then one summary line;
  ``verbose`` adds the full detail and the per-step table;
- anything else (a log, journald, CI) gets plain lines and no control sequences, as before.
A runbook run inside a step (failover's restore-chain) reports through the same reporter; its
steps are indented under the step that runs it instead of starting a counter at column 0 (on a
terminal without -v they live in the live region, leaving one line under the step, unless one fails).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, TextIO

from recovery.engine.journal import Journal, StepRecord
from recovery.engine.steps import Plan, stakes_text
from recovery.errors import RefusedError
from recovery.units import human_bytes, human_seconds

_MARK = {"ok": ("✓", "green"), "held": ("✓", "green"), "skipped": ("·", "dim"), "failed": ("✗", "bold red")}
_SPIN = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
LOG_PROGRESS_EVERY_S = 5.0  # as recovery/backups/read.py's PROGRESS_EVERY_S
_SHORT = 60  # characters of detail a final step line shows without -v


def _detail_text(detail: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


def _short_detail(detail: Mapping[str, Any]) -> str:
    """The few detail items worth a glance at 3 a.m., sizes and times in human units."""
    parts = []
    for k, v in detail.items():
        if isinstance(v, bool) or v is None or isinstance(v, (dict, list, tuple)):
            continue
        if isinstance(v, float) and v > 1e9:  # an epoch timestamp: -v shows it
            continue
        if isinstance(v, (int, float)) and k.endswith("bytes"):
            parts.append(f"{k.removesuffix('_bytes').removesuffix('bytes') or 'size'} {human_bytes(v)}")
        elif isinstance(v, (int, float)) and (k.endswith("_s") or k == "seconds"):
            parts.append(f"{k.removesuffix('_s')} {human_seconds(v)}")
        elif isinstance(v, float):
            parts.append(f"{k} {v:.3g}")
        elif len(str(v)) <= 40:
            parts.append(f"{k} {v}")
    text = ", ".join(parts)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


@dataclass
class _Running:
    """A step in flight, as the live line shows it."""

    record: StepRecord
    index: int
    total: int
    t0: float = field(default_factory=time.monotonic)
    note: str = ""
    first: tuple[float, float] | None = None  # (time, done) of the first progress with a count: the ETA's base
    said: float = field(default_factory=time.monotonic)  # when a log last got a progress line
    headed: bool = False  # a nested runbook's header line was printed for this step


class ConsoleReporter:
    """Terminal reporter: logs, plan and summary on stderr; rich and in place when stderr is a TTY.

    ``stdin``/``stream`` are injectable; ``interactive`` defaults to "stdin and stream are TTYs";
    ``color`` to "stream is a TTY" (tables, colour); ``live`` to "stream is a TTY" (lines rewritten
    in place: never in a log); ``verbose`` shows every detail and the per-step table.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        stdin: TextIO | None = None,
        interactive: bool | None = None,
        color: bool | None = None,
        verbose: bool = False,
        live: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.stdin = stdin if stdin is not None else sys.stdin
        tty = _isatty(self.stream)
        self.interactive = interactive if interactive is not None else (tty and _isatty(self.stdin))
        self.rich = tty if color is None else color
        self.verbose = verbose
        self._console: Any = None
        if self.rich:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        self.live = self._console is not None and (tty if live is None else live)
        self._running: list[_Running] = []  # the steps in flight, outermost first (nested runbooks)
        self._live: Any = None  # rich.live.Live while a step runs on a terminal

    def _out(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    @property
    def _depth(self) -> int:
        return len(self._running)

    def message(self, text: str) -> None:
        # said inside a step: under it (a log keeps a top-level step's lines at column 0, as before)
        depth = self._depth if self.live else max(self._depth - 1, 0)
        self._out("  " * depth + text)

    def detail(self, text: str) -> None:
        """A line a log keeps and a terminal shows only with -v (a preflight check that passed)."""
        if self.verbose or not self.live:
            self.message(text)

    def progress(self, text: str, done: float | None = None, total: float | None = None) -> None:
        """How far the running step is. A terminal rewrites the step's line; a log gets the line."""
        run = self._running[-1] if self._running else None
        if not (self.live and run is not None):
            # a log gets every phase, and a count now and then, not every tick
            if done is not None and run is not None:
                if time.monotonic() - run.said < LOG_PROGRESS_EVERY_S:
                    return
                run.said = time.monotonic()
            if done is not None and total:
                text += f" ({human_bytes(done)} of {human_bytes(total)}, {100 * done / total:.0f}%)"
            self.message(text)
            return
        note = text
        if done is not None and total:
            now = time.monotonic()
            if run.first is None:
                run.first = (now, done)
            note += f"  {human_bytes(done)} of {human_bytes(total)} ({100 * done / total:.0f}%)"
            t_first, d_first = run.first
            if done > d_first and now > t_first:
                note += f", ETA {human_seconds((total - done) * (now - t_first) / (done - d_first))}"
        run.note = note

    def plan(self, plan: Plan) -> None:
        head = f"Plan for {plan.runbook} on {plan.target.name}"
        if plan.target.production:
            head += " (PRODUCTION)"
        if plan.resumes:
            head += f", resuming run {plan.resumes}"
        rows = []
        for i, s in enumerate(plan.steps, 1):
            state = "run" if s.will_run else "skip"
            why = s.check or (f"journal: {s.journal_status}" if s.journal_status else "")
            if s.undone_by:
                why = f"holds now; {s.undone_by} runs first and undoes it"
            rows.append((str(i), s.name, state, s.touches or "-", why))
        stakes = stakes_text(plan.stakes)
        if self._console is not None:
            from rich.table import Table

            table = Table(title=head, title_justify="left", caption=stakes or None, caption_justify="left")
            for col in ("#", "step", "action", "touches", "state"):
                table.add_column(col)
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
        else:
            self._out(head + ":")
            for num, name, state, touches, why in rows:
                self._out(f"  {num}. {name} [{state}] touches: {touches}" + (f" ({why})" if why else ""))
            if stakes:
                self._out(f"  {stakes}")

    # -- steps --------------------------------------------------------------------------------

    def step_started(self, index: int, total: int, record: StepRecord) -> None:
        if not self.live:
            self._out("  " * self._depth + f"[{index}/{total}] {record.name} ...")
            self._running.append(_Running(record, index, total))
            return
        parent = self._running[-1] if self._running else None
        if parent is not None and not parent.headed:  # a nested runbook begins: its steps go under this header
            parent.headed = True
            self._line("▸", "cyan", self._depth - 1, f"[{parent.index}/{parent.total}] {parent.record.name}")
        self._running.append(_Running(record, index, total))
        if self._live is None:
            from rich.live import Live

            self._live = Live(get_renderable=self._render, console=self._console, transient=True,
                              refresh_per_second=8, redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def step_finished(self, index: int, total: int, record: StepRecord) -> None:
        if self._running and self._running[-1].record is record:  # a skipped step never started
            self._running.pop()
        depth = self._depth
        if not self.live:
            extra = _detail_text(record.detail)
            line = f"[{index}/{total}] {record.name}: {record.status} in {human_seconds(record.duration_s)}"
            if record.error:
                line += f": {record.error}"
            elif extra:
                line += f" ({extra})"
            self._out("  " * depth + line)
            return
        if depth and record.status != "failed" and not self.verbose:
            return  # a nested runbook's steps live only in the live region; its summary line stays
        detail = record.error or (_detail_text(record.detail) if self.verbose else _short_detail(record.detail))
        took = human_seconds(record.duration_s) if record.duration_s is not None else record.status
        mark, style = _MARK.get(record.status, ("?", ""))
        if record.status in ("held", "skipped"):
            detail = f"{record.status}" + (f", {detail}" if detail else "")
        self._line(mark, style, depth, f"{record.name}  {took}" + (f"  {detail}" if detail else ""))
        if not self._running:
            self._stop_live()

    def _line(self, mark: str, style: str, depth: int, text: str, wrap: bool = False) -> None:
        """A step's final line, cut to the terminal's width (the summary wraps: it names the journal)."""
        from rich.text import Text

        line = Text("  " * depth)
        line.append(mark, style=style)
        line.append(" " + text)
        self._console.print(line, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis")

    def _render(self) -> Any:
        """The live region: one line per step in flight, nested ones indented."""
        from rich.console import Group
        from rich.text import Text

        spin = _SPIN[int(time.monotonic() * 10) % len(_SPIN)]
        lines = []
        for depth, run in enumerate(self._running):
            text = Text("  " * depth)
            text.append(spin, style="cyan")
            text.append(f" [{run.index}/{run.total}] {run.record.name}  {human_seconds(time.monotonic() - run.t0)}")
            if run.note:
                text.append("  " + run.note, style="dim")
            text.no_wrap, text.overflow = True, "ellipsis"
            lines.append(text)
        return Group(*lines)

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def ask(self, prompt: str) -> str:
        self.stream.write(prompt)
        self.stream.flush()
        line = self.stdin.readline()
        if not line:
            raise RefusedError("no answer to the confirmation prompt", "rerun with --yes")
        return line.strip()

    # -- the end ------------------------------------------------------------------------------

    def summary(self, journal: Journal) -> None:
        """One line: status, elapsed, run id, journal. The per-step table only when verbose (the
        step lines above already said each result). A nested runbook's summary sits under its step."""
        nested = self._depth > 0
        if not nested:
            self._running.clear()  # an exception may have skipped a step's end
            self._stop_live()
        head = (
            f"{journal.runbook} on {journal.target}: {journal.status} "
            f"in {human_seconds(journal.elapsed_s())} (run {journal.run_id}, journal {journal.location})"
        )
        indent = "  " * self._depth
        if self.live and not self.verbose:
            mark, style = _MARK.get(journal.status, ("·", ""))
            if nested:  # one line under its step for the steps it ran (a failed one is shown above)
                counts = ", ".join(f"{n} {st}" for st in ("ok", "held", "skipped", "failed")
                                   if (n := sum(r.status == st for r in journal.steps)))
                # no target: the step above names it, and a data dir's path would push the counts off
                self._line(mark, style, self._depth, f"{journal.runbook}: {journal.status} in "
                           f"{human_seconds(journal.elapsed_s())}, {counts} (run {journal.run_id})")
            else:
                self._line(mark, style, 0, head, wrap=True)
            return
        if self._console is not None and self.verbose:
            from rich.table import Table

            table = Table(title=indent + head, title_justify="left")
            for col in ("step", "result", "duration", "detail"):
                table.add_column(col)
            for rec in journal.steps:
                table.add_row(rec.name, rec.status, human_seconds(rec.duration_s),
                              rec.error or _detail_text(rec.detail))
            self._console.print(table)
            return
        self._out(indent + head)
        if self.verbose:
            for rec in journal.steps:
                self._out(
                    f"{indent}  {rec.name}: {rec.status} {human_seconds(rec.duration_s)}"
                    + (f" {rec.error or _detail_text(rec.detail)}" if (rec.error or rec.detail) else "")
                )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
