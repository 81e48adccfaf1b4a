"""What a runbook is made of: its target, its steps, the context a step runs in, and the plan a
dry run shows. The reporter protocol is here too: everything the engine says goes through one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from recovery.engine.journal import Journal, StepRecord

# --------------------------------------------------------------------------------------------
# Steps, targets and the context a step runs in
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a runbook acts on. ``production`` makes confirmation ask for the name to be retyped."""

    name: str
    production: bool = False


@dataclass
class StepContext:
    """Handed to every action and check.

    ``detail`` is recorded in the journal when the step ends (bytes, rows, keys...).
    ``results`` holds the detail of steps completed earlier in this run, including attempts
    before a crash, so a resumed step can find what an earlier step produced.
    """

    runbook: str
    run_id: str
    target: Target
    params: Mapping[str, Any]
    results: Mapping[str, Mapping[str, Any]]
    reporter: Reporter
    detail: dict[str, Any] = field(default_factory=dict)

    def info(self, text: str) -> None:
        self.reporter.message(text)

    def progress(self, text: str, done: float | None = None, total: float | None = None) -> None:
        """How far this step is (bytes read of the backup's size...): a terminal rewrites the step's
        line with it and an ETA; a reporter without ``progress`` (tests' own) gets it as a message."""
        say = getattr(self.reporter, "progress", None)
        if say is not None:
            say(text, done, total)
        else:
            self.reporter.message(text)


Action = Callable[[StepContext], "Mapping[str, Any] | None"]
Check = Callable[[StepContext], "bool | Mapping[str, Any]"]


@dataclass(frozen=True)
class Step:
    """One named step. ``touches`` says, for the dry run, what the action changes.

    ``action(ctx)`` may return a mapping merged into the step's journal detail.
    ``check(ctx)`` returns a truthy value when the step's effect already holds; it must be
    read-only. A non-empty mapping means "holds" and becomes the step's detail (so later steps
    can read ``ctx.results[name]`` even when the action never ran in this run).
    A step without a check must be safe to run again if a crash interrupted it.
    ``rerun`` makes a completed step run again on resume (read-only preflights whose verdict
    guards what follows: the world may have changed since the crash).
    ``undone_by`` names earlier steps that undo this step's effect (``stop-services`` for
    ``start-services``). A dry run judges checks against the world as it is now; when one of
    these runs first, a check that holds now will not hold then, so the plan says "run".
    """

    name: str
    action: Action
    touches: str = ""
    check: Check | None = None
    rerun: bool = False
    undone_by: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Reporting and confirmation (all operator I/O)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    name: str
    touches: str
    has_check: bool
    journal_status: str | None  # what an unfinished earlier run recorded, if resuming
    check: str | None  # "holds", "does not hold", "error: ..." or None when not evaluated
    will_run: bool
    undone_by: str | None = None  # the earlier step that runs first and undoes what the check found


@dataclass(frozen=True)
class Plan:
    runbook: str
    target: Target
    destructive: bool
    params: Mapping[str, Any]
    steps: tuple[PlannedStep, ...]
    resumes: str | None  # run id of the unfinished run a real run would resume
    stakes: Mapping[str, Any] = field(default_factory=dict)  # Runbook.stakes: what the run does, in plain words

    def to_dict(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "target": self.target.name,
            "production": self.target.production,
            "destructive": self.destructive,
            "params": dict(self.params),
            "stakes": dict(self.stakes),
            "resumes": self.resumes,
            "dry_run": True,
            "steps": [s.__dict__ for s in self.steps],
        }


def stakes_text(stakes: Mapping[str, Any]) -> str:
    """One line for the prompt and the plan: ``mode: switchover; new writer: ...; expected loss: ...``."""
    return "; ".join(f"{k}: {v}" for k, v in stakes.items() if v is not None)


class Reporter(Protocol):
    """Everything the engine says or asks goes through one of these."""

    interactive: bool

    def plan(self, plan: Plan) -> None: ...
    def message(self, text: str) -> None: ...
    # optional: def progress(self, text: str, done: float | None, total: float | None) -> None
    # optional: def detail(self, text: str) -> None  (a line only -v or a log shows)
    def step_started(self, index: int, total: int, record: StepRecord) -> None: ...
    def step_finished(self, index: int, total: int, record: StepRecord) -> None: ...
    def ask(self, prompt: str) -> str: ...
    def summary(self, journal: Journal) -> None: ...


