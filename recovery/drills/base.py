"""The drill framework: a scenario registry and the timing/measurement record of one run.

A scenario is a function taking a `DrillRun`. It marks the moments the RTO/RPO figures come
from and wraps its work in timed steps:

    @scenario("database-corruption", component="postgresql", order=10,
              description="rows deleted from the blockchain table")
    def database_corruption(d: DrillRun) -> None:
        with d.step("backup"):
            ...                               # last good state: d.last_good(height=..., at=...)
        with d.step("inject"):
            ...                               # real damage
        d.injected()
        with d.step("detect"):
            ...                               # a real check that fails
        d.detected("row count 12 != node height 40")
        with d.step("restore"):
            ...                               # the runbook
        with d.step("verify"):
            ...                               # a real check that passes
        d.recovered()
        d.lost(blocks=..., seconds=...)       # RPO, counted independently of the runbook

RTO is detection to verified service (`detected` -> `recovered`). RPO is what was lost between
the last good state before the disaster and what the recovery brought back. A scenario that
raises fails; the drill records the error and goes on to the next scenario, and cleanup
callbacks registered with `d.cleanup(fn)` always run.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import recovery.drills as drills_pkg
from recovery import redact


@dataclass
class Step:
    name: str
    started_at: float
    ended_at: float | None = None
    result: str = "running"  # ok | failed | skipped
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "started_at": self.started_at, "ended_at": self.ended_at,
                "result": self.result, "detail": self.detail}


LEDGER = "created.jsonl"  # in a scenario's work dir: what it made directly, one JSON line each


@dataclass
class DrillRun:
    """One scenario's run: steps, marks and measurements. Objectives in minutes (None = N/A)."""

    name: str
    component: str
    description: str
    stack: str
    outputs: Any  # recovery.stack.StackOutputs
    work_dir: Path
    say: Callable[[str], None] = lambda _m: None
    params: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    injected_at: float | None = None
    detected_at: float | None = None
    recovered_at: float | None = None
    detection: str | None = None
    lost_blocks: int | None = None
    lost_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        st = Step(name, time.time())
        self.steps.append(st)
        self.say(f"  {self.name}: {name} ...")
        try:
            yield st
        except BaseException:
            st.result = "failed"
            raise
        else:
            st.result = "ok"
        finally:
            st.ended_at = time.time()
            self.say(f"  {self.name}: {name}: {st.result} in {st.ended_at - st.started_at:.1f}s")

    def injected(self) -> None:
        self.injected_at = time.time()

    def detected(self, how: str) -> None:
        self.detected_at = time.time()
        self.detection = how

    def recovered(self) -> None:
        self.recovered_at = time.time()

    def lost(self, *, blocks: int, seconds: float) -> None:
        self.lost_blocks, self.lost_seconds = blocks, seconds

    def skip(self, why: str) -> None:
        """Mark the scenario as not applicable here (e.g. redis-server not installed)."""
        self.skipped = why

    def cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def record_created(self, kind: str, name: str) -> None:
        """Note in the drill's ledger, *before* creating it, something the scenario makes directly
        (``kind`` "database" or "dir"): after a SIGKILL the next drill's sweep removes only what a
        ledger, or the journals of the restores a drill ran, name."""
        with open(self.work_dir / LEDGER, "a") as f:
            f.write(json.dumps({"kind": kind, "name": name}) + "\n")

    def run_cleanups(self) -> list[str]:
        problems = []
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - cleanup must try everything
                problems.append(f"{getattr(fn, '__name__', 'cleanup')}: {exc}")
        self._cleanups.clear()
        return problems

    # -- measurements against the objectives

    @property
    def rto_seconds(self) -> float | None:
        if self.detected_at is None or self.recovered_at is None:
            return None
        return self.recovered_at - self.detected_at

    def objective(self) -> dict[str, Any]:
        return dict((self.outputs.objectives or {}).get(self.component) or {})

    def to_json(self) -> dict[str, Any]:
        obj = self.objective()
        rto_t, rpo_t = obj.get("rto_minutes"), obj.get("rpo_minutes")
        rto = self.rto_seconds
        rto_met = None if rto is None or rto_t is None else rto <= rto_t * 60
        rpo_met = None if self.lost_seconds is None or rpo_t is None else self.lost_seconds <= rpo_t * 60
        passed = (self.skipped is None and self.error is None and self.recovered_at is not None
                  and rto_met is not False and rpo_met is not False)
        return {
            "name": self.name, "component": self.component, "description": self.description,
            "skipped": self.skipped, "error": self.error, "passed": None if self.skipped else passed,
            "injected_at": self.injected_at, "detected_at": self.detected_at, "recovered_at": self.recovered_at,
            "detection": self.detection,
            "rto_seconds": rto, "rto_target_minutes": rto_t, "rto_met": rto_met,
            "rpo_seconds": self.lost_seconds, "rpo_blocks": self.lost_blocks, "rpo_target_minutes": rpo_t,
            "rpo_met": rpo_met,
            "steps": [s.to_json() for s in self.steps], "extra": self.extra,
        }


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    component: str
    description: str
    order: int
    fn: Callable[[DrillRun], None]
    local_only: bool = True  # injects real damage: only on the local environment


SCENARIOS: dict[str, ScenarioSpec] = {}


def scenario(name: str, *, component: str, description: str, order: int = 100,
             local_only: bool = True) -> Callable[[Callable[[DrillRun], None]], Callable[[DrillRun], None]]:
    """Register a drill scenario (see the module docstring)."""

    def register(fn: Callable[[DrillRun], None]) -> Callable[[DrillRun], None]:
        if name in SCENARIOS and SCENARIOS[name].fn is not fn:
            raise ValueError(f"drill scenario {name!r} registered twice")
        SCENARIOS[name] = ScenarioSpec(name, component, description, order, fn, local_only)
        return fn

    return register


def load_all() -> list[ScenarioSpec]:
    """Import every module of recovery.drills so their scenarios register; return them in order."""
    for mod in pkgutil.iter_modules(drills_pkg.__path__):
        if mod.name != "base":
            importlib.import_module(f"recovery.drills.{mod.name}")
    return sorted(SCENARIOS.values(), key=lambda s: (s.order, s.name))


def run_scenario(spec: ScenarioSpec, stack: str, outputs: Any, work_dir: Path,
                 say: Callable[[str], None] = lambda _m: None, **params: Any) -> DrillRun:
    """Run one scenario; never raises for the scenario's own failure (it is recorded)."""
    d = DrillRun(spec.name, spec.component, spec.description, stack, outputs, work_dir, say, params)
    try:
        spec.fn(d)
    except Exception as exc:  # noqa: BLE001 - a failed scenario is a result, not a crash
        line = getattr(exc, "line", None)
        d.error = redact.scrub(line() if line is not None else f"{type(exc).__name__}: {exc}")
        d.extra["traceback"] = redact.scrub("".join(traceback.format_exception(exc))[-4000:])
    finally:
        problems = d.run_cleanups()
        if problems:
            d.extra["cleanup_problems"] = problems
    return d
