"""The runbook engine: ordered named steps, a crash-safe journal, resume, dry run, confirmation.

A runbook module builds a :class:`Runbook` from :class:`Step` objects and hands it to the CLI, which
calls :meth:`Runbook.dry_run` or :meth:`Runbook.run` with a journal store and a reporter. The engine
never prints: every word an operator sees goes through the :class:`Reporter` the caller supplies
(:class:`ConsoleReporter` for a terminal; tests supply their own).

Resume rule (see docs/runbook-engine.md): when a step has a check, the check wins over the journal;
a step without a check is skipped on rerun only when the journal records it as completed, unless it
is marked ``rerun`` (a preflight guarding irreversible steps judges the world as it is now).

A rerun resumes an unfinished run only when it is the same run: the same runbook, target, step
names and params (each runbook puts its *resolved* inputs there: the backup key ``latest`` meant,
the server), and the unfinished run was last active within ``RESUME_WITHIN_ENV`` hours (default
24). Otherwise the rerun starts afresh and says which unfinished run it left alone and where its
journal is.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Protocol, TextIO

from recovery import knobs
from recovery.errors import AwsAccessError, RecoveryError, RefusedError, StepFailedError

SCHEMA = 1

# Step results as the journal records them.
PENDING = "pending"  # not reached yet
RUNNING = "running"  # started, no end recorded (in flight, or the process died)
OK = "ok"  # the action ran and returned
HELD = "held"  # the step's check said it already holds, so the action did not run
SKIPPED = "skipped"  # no check, and an earlier attempt of this run completed it
FAILED = "failed"  # the action or the check raised

DONE = (OK, HELD, SKIPPED)

RESUME_WITHIN_ENV = "RECOVERY_RESUME_WITHIN_HOURS"  # recovery/knobs.py: default 24 h

# Run states.
RUN_RUNNING = "running"
RUN_OK = "ok"
RUN_FAILED = "failed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, RecoveryError):
        return exc.line()
    text = str(exc).strip().replace("\n", " ") or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if not isinstance(exc, OSError) else text


def new_run_id() -> str:
    """Sortable by start time: 20261125T171600Z-3f9a1c."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


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
    """

    name: str
    action: Action
    touches: str = ""
    check: Check | None = None
    rerun: bool = False


# --------------------------------------------------------------------------------------------
# The journal
# --------------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    name: str
    touches: str = ""
    status: str = PENDING
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    attempts: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "touches": self.touches,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "attempts": self.attempts,
            "detail": self.detail,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepRecord:
        return cls(
            name=str(d["name"]),
            touches=str(d.get("touches", "")),
            status=str(d.get("status", PENDING)),
            started_at=d.get("started_at"),
            ended_at=d.get("ended_at"),
            duration_s=d.get("duration_s"),
            attempts=int(d.get("attempts", 0)),
            detail=dict(d.get("detail") or {}),
            error=d.get("error"),
        )


@dataclass
class Journal:
    """What happened in one run, step by step. Its JSON form is the runbook's --json result."""

    runbook: str
    run_id: str
    target: str
    production: bool
    params: dict[str, Any]
    steps: list[StepRecord]
    status: str = RUN_RUNNING
    started_at: str = field(default_factory=_now)
    ended_at: str | None = None
    error: str | None = None
    failed_step: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    location: str | None = None  # where the store keeps it; set by the store

    @property
    def finished(self) -> bool:
        return self.status == RUN_OK

    def step(self, name: str) -> StepRecord:
        for rec in self.steps:
            if rec.name == name:
                return rec
        raise KeyError(name)

    def step_durations(self) -> dict[str, float | None]:
        """Seconds each step's last attempt took (None for steps that did not run). RTO input."""
        return {rec.name: rec.duration_s for rec in self.steps}

    def elapsed_s(self) -> float | None:
        """Wall time from the first attempt's start to the run's end, crashes included."""
        if not self.ended_at:
            return None
        start = datetime.fromisoformat(self.started_at)
        end = datetime.fromisoformat(self.ended_at)
        return (end - start).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "runbook": self.runbook,
            "run_id": self.run_id,
            "target": self.target,
            "production": self.production,
            "params": self.params,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "elapsed_s": self.elapsed_s(),
            "error": self.error,
            "failed_step": self.failed_step,
            "attempts": self.attempts,
            "location": self.location,
            "steps": [rec.to_dict() for rec in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Journal:
        return cls(
            runbook=str(d["runbook"]),
            run_id=str(d["run_id"]),
            target=str(d["target"]),
            production=bool(d.get("production", False)),
            params=dict(d.get("params") or {}),
            steps=[StepRecord.from_dict(s) for s in d.get("steps", [])],
            status=str(d.get("status", RUN_RUNNING)),
            started_at=str(d.get("started_at") or _now()),
            ended_at=d.get("ended_at"),
            error=d.get("error"),
            failed_step=d.get("failed_step"),
            attempts=list(d.get("attempts") or []),
            location=d.get("location"),
        )


def journal_key(prefix: str, runbook: str, run_id: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{runbook}/{run_id}.json" if prefix else f"{runbook}/{run_id}.json"


class JournalStore(ABC):
    """Where journals live. ``save`` is called after every step change."""

    @abstractmethod
    def save(self, journal: Journal) -> None: ...

    @abstractmethod
    def run_ids(self, runbook: str) -> list[str]:
        """Every stored run id of this runbook, any order."""

    @abstractmethod
    def load(self, runbook: str, run_id: str) -> Journal | None: ...

    @abstractmethod
    def describe(self, runbook: str, run_id: str) -> str:
        """Where this journal is (s3://... or a path), for messages."""

    def latest(self, runbook: str, target: str) -> Journal | None:
        """The newest journal of ``runbook`` aimed at ``target``, finished or not."""
        for run_id in sorted(self.run_ids(runbook), reverse=True):
            journal = self.load(runbook, run_id)
            if journal is not None and journal.target == target:
                return journal
        return None


class LocalJournalStore(JournalStore):
    """``<root>/runs/<runbook>/<run-id>.json``, each write a temp file renamed into place."""

    def __init__(self, root: str | os.PathLike[str], prefix: str = "runs") -> None:
        self.root = Path(root)
        self.prefix = prefix

    def _path(self, runbook: str, run_id: str) -> Path:
        return self.root / journal_key(self.prefix, runbook, run_id)

    def describe(self, runbook: str, run_id: str) -> str:
        return str(self._path(runbook, run_id))

    def save(self, journal: Journal) -> None:
        path = self._path(journal.runbook, journal.run_id)
        journal.location = str(path)
        data = journal.to_json().encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise RecoveryError(
                f"cannot write the run journal {path}: {exc.strerror or exc}",
                "free space or fix permissions there, or set RECOVERY_JOURNAL_DIR",
            ) from exc

    def run_ids(self, runbook: str) -> list[str]:
        folder = self.root / journal_key(self.prefix, runbook, "x").rsplit("/", 1)[0]
        if not folder.is_dir():
            return []
        return [p.stem for p in folder.glob("*.json") if not p.name.startswith(".")]

    def load(self, runbook: str, run_id: str) -> Journal | None:
        path = self._path(runbook, run_id)
        try:
            journal = Journal.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            raise RecoveryError(
                f"run journal {path} is unreadable: {exc}", "move it aside and rerun"
            ) from exc
        journal.location = str(path)
        return journal


class S3JournalStore(JournalStore):
    """``s3://<bucket>/runs/<runbook>/<run-id>.json`` through a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "runs") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, runbook: str, run_id: str) -> str:
        return journal_key(self.prefix, runbook, run_id)

    def describe(self, runbook: str, run_id: str) -> str:
        return f"s3://{self.bucket}/{self._key(runbook, run_id)}"

    def _fail(self, what: str, exc: Exception) -> AwsAccessError:
        return AwsAccessError(
            f"cannot {what} run journals in s3://{self.bucket}/{self.prefix}: {_one_line(exc)}",
            "check the bucket and your AWS credentials, or use the local journal",
        )

    def save(self, journal: Journal) -> None:
        journal.location = self.describe(journal.runbook, journal.run_id)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(journal.runbook, journal.run_id),
                Body=journal.to_json().encode(),
                ContentType="application/json",
            )
        except Exception as exc:  # botocore errors have no useful common base here
            raise self._fail("write", exc) from exc

    def run_ids(self, runbook: str) -> list[str]:
        folder = self._key(runbook, "x").rsplit("/", 1)[0] + "/"
        ids: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(folder) :]
                    if name.endswith(".json") and "/" not in name:
                        ids.append(name[: -len(".json")])
        except Exception as exc:
            raise self._fail("list", exc) from exc
        return ids

    def load(self, runbook: str, run_id: str) -> Journal | None:
        key = self._key(runbook, run_id)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return None
            raise self._fail("read", exc) from exc
        try:
            journal = Journal.from_dict(json.loads(body))
        except (ValueError, KeyError) as exc:
            raise RecoveryError(
                f"run journal s3://{self.bucket}/{key} is unreadable: {exc}",
                "move it aside and rerun",
            ) from exc
        journal.location = self.describe(runbook, run_id)
        return journal


class FallbackJournalStore(JournalStore):
    """Write to ``primary`` (S3); if that fails, say so once and keep writing to ``fallback``.

    A disaster may well take the bucket's region with it; the journal must not be lost then.
    Reads consult both and prefer the newer copy of a run.
    """

    def __init__(
        self, primary: JournalStore, fallback: JournalStore, warn: Callable[[str], None] | None = None
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.warn = warn or (lambda text: None)
        self.degraded = False

    def describe(self, runbook: str, run_id: str) -> str:
        store = self.fallback if self.degraded else self.primary
        return store.describe(runbook, run_id)

    def save(self, journal: Journal) -> None:
        if not self.degraded:
            try:
                self.primary.save(journal)
                return
            except RecoveryError as exc:
                self.degraded = True
                self.warn(
                    f"journal: {exc.problem}; writing it to "
                    f"{self.fallback.describe(journal.runbook, journal.run_id)} instead"
                )
        self.fallback.save(journal)

    def _safe(self, fn: Callable[[], Any], default: Any) -> Any:
        try:
            return fn()
        except RecoveryError as exc:
            self.warn(f"journal: {exc.problem}")
            return default

    def run_ids(self, runbook: str) -> list[str]:
        ids = set(self._safe(lambda: self.primary.run_ids(runbook), []))
        ids.update(self.fallback.run_ids(runbook))
        return list(ids)

    def load(self, runbook: str, run_id: str) -> Journal | None:
        candidates: list[Journal | None] = [
            self._safe(lambda: self.primary.load(runbook, run_id), None),
            self.fallback.load(runbook, run_id),
        ]
        found: list[Journal] = [j for j in candidates if j is not None]
        if not found:
            return None

        def progress(j: Journal) -> tuple[int, str]:
            return (len(j.attempts), max((s.ended_at or s.started_at or "") for s in j.steps) if j.steps else "")

        return max(found, key=progress)


def default_journal_dir() -> Path:
    """``$RECOVERY_JOURNAL_DIR``, else ``$XDG_STATE_HOME/xai-recovery``, else ~/.local/state/xai-recovery."""
    env = os.environ.get("RECOVERY_JOURNAL_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "xai-recovery"


def journal_store(
    s3_client: Any = None,
    bucket: str | None = None,
    *,
    local_dir: str | os.PathLike[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> JournalStore:
    """The usual store: the stack's bucket under ``runs/``, falling back to the local directory.

    Without a client or bucket, the local directory alone (``default_journal_dir()`` unless given).
    """
    local = LocalJournalStore(local_dir if local_dir is not None else default_journal_dir())
    if s3_client is None or not bucket:
        return local
    return FallbackJournalStore(S3JournalStore(s3_client, bucket), local, warn)


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


@dataclass(frozen=True)
class Plan:
    runbook: str
    target: Target
    destructive: bool
    params: Mapping[str, Any]
    steps: tuple[PlannedStep, ...]
    resumes: str | None  # run id of the unfinished run a real run would resume

    def to_dict(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "target": self.target.name,
            "production": self.target.production,
            "destructive": self.destructive,
            "params": dict(self.params),
            "resumes": self.resumes,
            "dry_run": True,
            "steps": [s.__dict__ for s in self.steps],
        }


class Reporter(Protocol):
    """Everything the engine says or asks goes through one of these."""

    interactive: bool

    def plan(self, plan: Plan) -> None: ...
    def message(self, text: str) -> None: ...
    def step_started(self, index: int, total: int, record: StepRecord) -> None: ...
    def step_finished(self, index: int, total: int, record: StepRecord) -> None: ...
    def ask(self, prompt: str) -> str: ...
    def summary(self, journal: Journal) -> None: ...


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
            rows.append((str(i), s.name, state, s.touches or "-", why))
        if self._console is not None:
            from rich.table import Table

            table = Table(title=head, title_justify="left")
            for col in ("#", "step", "action", "touches", "state"):
                table.add_column(col)
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
        else:
            self._out(head + ":")
            for num, name, state, touches, why in rows:
                self._out(f"  {num}. {name} [{state}] touches: {touches}" + (f" ({why})" if why else ""))

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


# --------------------------------------------------------------------------------------------
# The runbook
# --------------------------------------------------------------------------------------------


def resume_within_hours() -> float:
    return knobs.value(RESUME_WITHIN_ENV)


def _last_active(journal: Journal) -> datetime:
    """When the run last did anything: its last attempt's start, or its end if it recorded one."""
    stamps = [journal.started_at, journal.ended_at, *(a.get("started_at") for a in journal.attempts)]
    return max(datetime.fromisoformat(str(t)) for t in stamps if t)


class Runbook:
    """An ordered list of named steps aimed at one target.

    ``params`` are recorded in the journal; an unfinished run is resumed only by a rerun with the
    same runbook, target, step names and params.
    """

    def __init__(
        self,
        name: str,
        steps: list[Step],
        target: Target | str,
        *,
        destructive: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"runbook {name}: step names must be unique: {names}")
        if "/" in name or not name:
            raise ValueError(f"runbook name {name!r} must be non-empty and contain no '/'")
        self.name = name
        self.steps = list(steps)
        self.target = target if isinstance(target, Target) else Target(target)
        self.destructive = destructive
        self.params = dict(params or {})

    # -- resume -------------------------------------------------------------------------------

    def _resumable(self, store: JournalStore, reporter: Reporter | None = None) -> Journal | None:
        hours = resume_within_hours()  # a bad value is refused whether or not a run is unfinished
        prev = store.latest(self.name, self.target.name)
        if prev is None or prev.status == RUN_OK:
            return None
        why = None
        if [r.name for r in prev.steps] != [s.name for s in self.steps]:
            why = "its steps differ from this version's"
        elif json.loads(json.dumps(self.params, default=str)) != prev.params:
            changed = sorted(k for k in set(prev.params) | set(self.params)
                             if prev.params.get(k) != json.loads(json.dumps(self.params.get(k), default=str)))
            why = "it ran with different inputs (" + ", ".join(
                f"{k}: {prev.params.get(k)!r}, now {self.params.get(k)!r}" for k in changed) + ")"
        else:
            age_h = (datetime.now(timezone.utc) - _last_active(prev)).total_seconds() / 3600
            if age_h > hours:
                why = f"it was last active {age_h:.1f} h ago, more than {RESUME_WITHIN_ENV}={hours:g}"
        if why:
            if reporter is not None:
                reporter.message(f"An unfinished run {prev.run_id} of {self.name} on {self.target.name} is left as it "
                                 f"is ({why}); starting a new run. Its journal: {prev.location}")
            return None
        return prev

    def _ctx(self, run_id: str, reporter: Reporter, journal: Journal | None) -> StepContext:
        results = {r.name: dict(r.detail) for r in journal.steps if r.status in DONE} if journal else {}
        return StepContext(self.name, run_id, self.target, self.params, results, reporter)

    # -- dry run ------------------------------------------------------------------------------

    def plan(self, store: JournalStore | None, reporter: Reporter, evaluate_checks: bool = True) -> Plan:
        """What a run would do now. Reads the journal and calls checks; writes nothing."""
        prev = self._resumable(store) if store is not None else None
        ctx = self._ctx(prev.run_id if prev else "dry-run", reporter, prev)
        planned = []
        for step in self.steps:
            jstatus = prev.step(step.name).status if prev else None
            check_text = None
            will_run = True
            if step.check is not None and evaluate_checks:
                try:
                    holds = bool(step.check(ctx))
                    check_text = "holds" if holds else "does not hold"
                    will_run = not holds
                except Exception as exc:
                    check_text = f"check error: {_one_line(exc)}"
            elif step.check is None and jstatus in DONE and not step.rerun:
                will_run = False
            planned.append(
                PlannedStep(step.name, step.touches, step.check is not None, jstatus, check_text, will_run)
            )
        return Plan(self.name, self.target, self.destructive, self.params, tuple(planned),
                    prev.run_id if prev else None)

    def dry_run(self, store: JournalStore | None, reporter: Reporter) -> Plan:
        """Show the plan through the reporter and return it. Changes nothing, journal included."""
        plan = self.plan(store, reporter)
        reporter.plan(plan)
        return plan

    # -- confirmation -------------------------------------------------------------------------

    def confirm(self, reporter: Reporter, yes: bool) -> None:
        """Ask before a destructive run; raise RefusedError unless the operator agrees."""
        if not self.destructive or yes:
            return
        if not reporter.interactive:
            raise RefusedError(
                f"{self.name} changes {self.target.name} and needs confirmation, but there is no terminal",
                "check the plan with --dry-run, then rerun with --yes",
            )
        if self.target.production:
            answer = reporter.ask(
                f"{self.target.name} is a PRODUCTION target. Type its name to go ahead: "
            )
            if answer != self.target.name:
                raise RefusedError(
                    f"confirmation did not match {self.target.name!r}; nothing was changed",
                    "rerun and type the target's name exactly",
                )
        else:
            answer = reporter.ask(f"Run {self.name} on {self.target.name}? [y/N] ")
            if answer.lower() not in ("y", "yes"):
                raise RefusedError(f"{self.name} cancelled by the operator; nothing was changed")

    # -- run ----------------------------------------------------------------------------------

    def run(
        self,
        store: JournalStore,
        reporter: Reporter,
        *,
        yes: bool = False,
        resume: bool = True,
        lock: ContextManager[Any] | None = None,
    ) -> Journal:
        """Run (or resume) the runbook; return the finished journal.

        Raises RefusedError before anything changes when confirmation is missing, and
        StepFailedError naming the step when a step fails (the journal then says ``failed``).
        """
        if self.destructive and not yes:
            reporter.plan(self.plan(store, reporter, evaluate_checks=False))
            self.confirm(reporter, yes)
        with lock if lock is not None else contextlib.nullcontext():
            prev = self._resumable(store, reporter) if resume else None
            if prev is not None:
                journal = prev
                journal.status = RUN_RUNNING
                journal.ended_at = None
                journal.error = None
                journal.failed_step = None
                reporter.message(f"Resuming run {journal.run_id} of {self.name} on {self.target.name}")
            else:
                run_id = new_run_id()
                journal = Journal(
                    runbook=self.name,
                    run_id=run_id,
                    target=self.target.name,
                    production=self.target.production,
                    params=json.loads(json.dumps(self.params, default=str)),
                    steps=[StepRecord(s.name, s.touches) for s in self.steps],
                )
            journal.attempts.append({"started_at": _now(), "pid": os.getpid(), "host": socket.gethostname()})
            store.save(journal)
            try:
                self._run_steps(journal, store, reporter, lock)
            finally:
                reporter.summary(journal)
        return journal

    def _run_steps(
        self, journal: Journal, store: JournalStore, reporter: Reporter, lock: Any
    ) -> None:
        total = len(self.steps)
        for index, step in enumerate(self.steps, 1):
            for hook in ("renew", "check"):  # a held lease: renew it, stop if it was lost
                fn = getattr(lock, hook, None)
                if callable(fn):
                    fn()
            rec = journal.step(step.name)
            ctx = self._ctx(journal.run_id, reporter, journal)
            previous = rec.status
            if step.check is None and previous in DONE and not step.rerun:
                if previous != SKIPPED:
                    rec.status = SKIPPED
                    store.save(journal)
                reporter.step_finished(index, total, rec)
                continue
            rec.status = RUNNING
            rec.started_at = _now()
            rec.ended_at = None
            rec.duration_s = None
            rec.error = None
            rec.attempts += 1
            store.save(journal)
            reporter.step_started(index, total, rec)
            t0 = time.monotonic()
            try:
                held = step.check(ctx) if step.check is not None else False
                if held:
                    rec.status = HELD
                    # keep detail from the attempt that did the work; a check may add its own
                    if isinstance(held, Mapping):
                        rec.detail = {**rec.detail, **dict(held)}
                else:
                    returned = step.action(ctx)
                    rec.detail = {**ctx.detail, **dict(returned or {})}
                    rec.status = OK
            except BaseException as exc:
                rec.status = FAILED
                rec.error = _one_line(exc) if isinstance(exc, Exception) else "interrupted"
                rec.detail = dict(ctx.detail)
                self._end(journal, rec, t0)
                journal.status = RUN_FAILED
                journal.error = rec.error
                journal.failed_step = step.name
                journal.ended_at = rec.ended_at
                store.save(journal)
                reporter.step_finished(index, total, rec)
                if not isinstance(exc, Exception):
                    raise
                err = StepFailedError(
                    f"step '{step.name}' of {self.name} failed: {rec.error}",
                    f"fix the cause and rerun the same command to resume (journal: {journal.location})",
                )
                err.step = step.name  # type: ignore[attr-defined]
                err.journal = journal  # type: ignore[attr-defined]
                raise err from exc
            self._end(journal, rec, t0)
            store.save(journal)
            reporter.step_finished(index, total, rec)
        journal.status = RUN_OK
        journal.ended_at = _now()
        store.save(journal)

    @staticmethod
    def _end(journal: Journal, rec: StepRecord, t0: float) -> None:
        rec.ended_at = _now()
        rec.duration_s = round(time.monotonic() - t0, 6)


__all__ = [
    "Check",
    "Action",
    "ConsoleReporter",
    "FallbackJournalStore",
    "Journal",
    "JournalStore",
    "LocalJournalStore",
    "Plan",
    "PlannedStep",
    "Reporter",
    "Runbook",
    "S3JournalStore",
    "Step",
    "StepContext",
    "StepRecord",
    "Target",
    "default_journal_dir",
    "journal_key",
    "journal_store",
    "new_run_id",
    "OK",
    "HELD",
    "SKIPPED",
    "FAILED",
    "PENDING",
    "RUNNING",
]
