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
import socket
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from recovery import knobs
from recovery.engine.journal import (DONE, FAILED, HELD, OK, RUN_FAILED, RUN_OK, RUN_PARTIAL, RUN_RUNNING, RUNNING, SKIPPED,
                                     Journal, JournalStore, StepRecord, _now, new_run_id)
from recovery.engine.console import ConsoleReporter
from recovery.engine.hooks import crash_point
from recovery.engine.locks import Lock
from recovery.engine.steps import Plan, PlannedStep, Reporter, Step, StepContext, Target, stakes_text
from recovery.errors import RecoveryError, RefusedError, StepFailedError, one_line

RESUME_WITHIN_ENV = "RECOVERY_RESUME_WITHIN_HOURS"  # recovery/knobs.py: default 24 h


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

    ``stakes`` says what the run does to the target in the operator's words (the backup it restores,
    the new writer, where DNS goes, the data it rolls back or may lose). The plan shows it and the
    confirmation prompt restates it, so nobody agrees to a run without seeing what it costs.
    """

    def __init__(
        self,
        name: str,
        steps: list[Step],
        target: Target | str,
        *,
        destructive: bool = False,
        params: Mapping[str, Any] | None = None,
        stakes: Mapping[str, Any] | None = None,
    ) -> None:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"runbook {name}: step names must be unique: {names}")
        for i, step in enumerate(steps):
            if set(step.undone_by) - set(names[:i]):  # a typo would silently make the plan lie again
                raise ValueError(f"runbook {name}: step {step.name} is undone_by {list(step.undone_by)}, "
                                 f"which must name steps before it")
        if "/" in name or not name:
            raise ValueError(f"runbook name {name!r} must be non-empty and contain no '/'")
        self.name = name
        self.steps = list(steps)
        self.target = target if isinstance(target, Target) else Target(target)
        self.destructive = destructive
        self.params = dict(params or {})
        self.stakes = dict(stakes or {})

    # -- resume -------------------------------------------------------------------------------

    def resumable(self, store: JournalStore, reporter: Reporter | None = None) -> Journal | None:
        """The unfinished run a real run would resume now, or None (said through `reporter`)."""
        hours = resume_within_hours()  # a bad value is refused whether or not a run is unfinished
        prev = store.latest(self.name, self.target.name)
        if prev is None or prev.finished:
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
        """What a run would do now. Reads the journal and calls checks; writes nothing.

        Checks see the world as it is now, before any step ran. A step whose check holds now but
        that an earlier step of this run undoes (``Step.undone_by``) will find its check false at
        run time, so it is planned to run, and the plan names the step that undoes it."""
        prev = self.resumable(store) if store is not None else None
        ctx = self._ctx(prev.run_id if prev else "dry-run", reporter, prev)
        planned: list[PlannedStep] = []
        for step in self.steps:
            jstatus = prev.step(step.name).status if prev else None
            check_text = None
            will_run = True
            undone = None
            if step.check is not None and evaluate_checks:
                try:
                    holds = bool(step.check(ctx))
                    check_text = "holds" if holds else "does not hold"
                    will_run = not holds
                except Exception as exc:  # noqa: BLE001 - a failing check is shown in the plan, not raised
                    check_text = f"check error: {one_line(exc)}"
                if not will_run:
                    undone = next((p.name for p in planned if p.will_run and p.name in step.undone_by), None)
                    will_run = undone is not None
            elif step.check is None and jstatus in DONE and not step.rerun:
                will_run = False
            planned.append(
                PlannedStep(step.name, step.touches, step.check is not None, jstatus, check_text, will_run, undone)
            )
        return Plan(self.name, self.target, self.destructive, self.params, tuple(planned),
                    prev.run_id if prev else None, self.stakes)

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
        stakes = stakes_text(self.stakes)
        if self.target.production:
            answer = reporter.ask(
                f"{self.target.name} is a PRODUCTION target: {self.name}{f' ({stakes})' if stakes else ''}. "
                "Type its name to go ahead: "
            )
            if answer != self.target.name:
                raise RefusedError(
                    f"confirmation did not match {self.target.name!r}; nothing was changed",
                    "rerun and type the target's name exactly",
                )
        else:
            answer = reporter.ask(f"Run {self.name} on {self.target.name}{f' ({stakes})' if stakes else ''}? [y/N] ")
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
        lock: Lock | None = None,
    ) -> Journal:
        """Run (or resume) the runbook; return the finished journal.

        Raises RefusedError before anything changes when confirmation is missing, and
        StepFailedError naming the step when a step fails (the journal then says ``failed``).
        """
        if self.destructive and not yes:
            reporter.plan(self.plan(store, reporter, evaluate_checks=False))
            self.confirm(reporter, yes)
        with lock if lock is not None else contextlib.nullcontext():
            prev = self.resumable(store, reporter) if resume else None
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
            # not saved yet: the first step's start saves the new attempt with it (see _run_steps)
            try:
                self._run_steps(journal, store, reporter, lock)
            finally:
                reporter.summary(journal)
        return journal

    def _run_steps(
        self, journal: Journal, store: JournalStore, reporter: Reporter, lock: Lock | None
    ) -> None:
        # The journal is saved when a step starts, when one fails and when the run ends. A step's
        # success is saved with the next step's start: nothing runs between the two that a crash
        # could tell apart, and a step killed after its action but before any save is rerun (or
        # its check finds it held) exactly as one killed mid-action. On S3 each save is a PUT on
        # the critical path, so this halves them.
        total = len(self.steps)
        for index, step in enumerate(self.steps, 1):
            if lock is not None:  # a lease someone else took over stops the run before its next change
                lock.check()
            rec = journal.step(step.name)
            ctx = self._ctx(journal.run_id, reporter, journal)
            previous = rec.status
            if step.check is None and previous in DONE and not step.rerun:
                rec.status = SKIPPED
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
                    crash_point(self.name, step.name, "before")
                    returned = step.action(ctx)
                    crash_point(self.name, step.name, "after")
                    rec.detail = {**ctx.detail, **dict(returned or {})}
                    rec.status = OK
            except BaseException as exc:
                rec.status = FAILED
                rec.error = one_line(exc) if isinstance(exc, Exception) else "interrupted"
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
                raise StepFailedError(
                    f"step '{step.name}' of {self.name} failed: {rec.error}",
                    f"fix the cause and rerun the same command to resume (journal: {journal.location})",
                    step=step.name, journal=journal,
                ) from exc
            self._end(journal, rec, t0)
            reporter.step_finished(index, total, rec)
        journal.status = RUN_PARTIAL if journal.not_restored() else RUN_OK
        journal.ended_at = _now()
        store.save(journal)

    @staticmethod
    def _end(journal: Journal, rec: StepRecord, t0: float) -> None:
        rec.ended_at = _now()
        rec.duration_s = round(time.monotonic() - t0, 6)




# --------------------------------------------------------------------------------------------
# Running a runbook for a command
# --------------------------------------------------------------------------------------------


def exit_code_of(err: StepFailedError) -> int:
    """A failed step exits with its cause's code (8 checksum, 6 database, 15 services, 11 deadline,
    ...) so scripts can tell failures apart; 10 when the cause is not a RecoveryError."""
    cause = err.__cause__
    return cause.exit_code if isinstance(cause, RecoveryError) else StepFailedError.exit_code


def execute(rb: Runbook, store: JournalStore, *, yes: bool, dry_run: bool,
            reporter: Reporter | None = None, lock: Lock | None = None,
            on_failure: Callable[[Journal], None] | None = None) -> tuple[Journal | None, dict[str, Any] | None]:
    """Dry run (returns the plan) or run (returns the journal). ``lock`` is entered by the engine
    after confirmation, so a refused run leaves no trace at all. On a step failure ``on_failure``
    (the runbook's compensation) puts the system back as it was when it can, and the
    StepFailedError is re-raised with the cause's exit code."""
    reporter = reporter or ConsoleReporter()
    if dry_run:
        return None, rb.dry_run(store, reporter).to_dict()
    try:
        return rb.run(store, reporter, yes=yes, lock=lock), None
    except StepFailedError as err:
        if on_failure is not None and err.journal is not None:
            try:
                on_failure(err.journal)
            except Exception as exc:  # noqa: BLE001 - the step's own failure is what gets reported
                reporter.message(f"cleanup after the failure also failed: {one_line(exc)}")
        err.exit_code = exit_code_of(err)
        raise
