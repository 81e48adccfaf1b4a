"""The terminal reporter: logs, plan and summary on stderr; rich tables when stderr is a TTY."""

from __future__ import annotations

import sys
from typing import Any, Mapping, TextIO

from recovery.engine.journal import Journal, StepRecord
from recovery.engine.steps import Plan, stakes_text
from recovery.errors import RefusedError

def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m{sec:02d}s"


def _detail_text(detail: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


class ConsoleReporter:
    """Terminal reporter: logs, plan and summary on stderr; rich tables when stderr is a TTY.

    ``stdin``/``stream`` are injectable; ``interactive`` defaults to "stdin and stream are TTYs".
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        stdin: TextIO | None = None,
        interactive: bool | None = None,
        color: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.stdin = stdin if stdin is not None else sys.stdin
        tty = _isatty(self.stream)
        self.interactive = interactive if interactive is not None else (tty and _isatty(self.stdin))
        self.rich = tty if color is None else color
        self._console: Any = None
        if self.rich:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def _out(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        self._out(text)

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

    def step_started(self, index: int, total: int, record: StepRecord) -> None:
        self._out(f"[{index}/{total}] {record.name} ...")

    def step_finished(self, index: int, total: int, record: StepRecord) -> None:
        extra = _detail_text(record.detail)
        line = f"[{index}/{total}] {record.name}: {record.status} in {_fmt_s(record.duration_s)}"
        if record.error:
            line += f": {record.error}"
        elif extra:
            line += f" ({extra})"
        self._out(line)

    def ask(self, prompt: str) -> str:
        self.stream.write(prompt)
        self.stream.flush()
        line = self.stdin.readline()
        if not line:
            raise RefusedError("no answer to the confirmation prompt", "rerun with --yes")
        return line.strip()

    def summary(self, journal: Journal) -> None:
        head = (
            f"{journal.runbook} on {journal.target}: {journal.status} "
            f"in {_fmt_s(journal.elapsed_s())} (run {journal.run_id}, journal {journal.location})"
        )
        if self._console is not None:
            from rich.table import Table

            table = Table(title=head, title_justify="left")
            for col in ("step", "result", "duration", "detail"):
                table.add_column(col)
            for rec in journal.steps:
                table.add_row(
                    rec.name, rec.status, _fmt_s(rec.duration_s), rec.error or _detail_text(rec.detail)
                )
            self._console.print(table)
        else:
            self._out(head)
            for rec in journal.steps:
                self._out(
                    f"  {rec.name}: {rec.status} {_fmt_s(rec.duration_s)}"
                    + (f" {rec.error or _detail_text(rec.detail)}" if (rec.error or rec.detail) else "")
                )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


