"""Crash points and injected faults, for the tests that kill a run at its worst moment.

Test hooks are environment variables because they must reach a child process the test starts
exactly as an operator would (``recovery restore db ...``), with no test-only option on the CLI.
They are read only here, and nothing in production sets them (docs/runbook-engine.md):

* ``RECOVERY_TEST_CRASH_AT=<runbook>:<step>:<before|after>`` - the process SIGKILLs itself just
  before the step's action starts, or just after it returns and before the journal records it
  (the worst moment: the work is done but nobody knows).
* ``RECOVERY_TEST_FAULT=enospc`` - the chain (and config) extraction fails with ENOSPC after its first file,
  as a full disk would (a tiny filesystem needs a root mount, which tests cannot rely on).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
from typing import Any

from recovery.engine.steps import Step, StepContext

CRASH_ENV = "RECOVERY_TEST_CRASH_AT"
FAULT_ENV = "RECOVERY_TEST_FAULT"


def crash_point(runbook: str, step: str, when: str) -> None:
    """SIGKILL this process when RECOVERY_TEST_CRASH_AT names this point (tests only)."""
    want = os.environ.get(CRASH_ENV)
    if want and want == f"{runbook}:{step}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)


def fault(name: str) -> bool:
    return os.environ.get(FAULT_ENV) == name


def enospc(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def hooked(runbook: str, step: Step) -> Step:
    """The same step, with crash points before and after its action."""

    def action(ctx: StepContext) -> Any:
        crash_point(runbook, step.name, "before")
        out = step.action(ctx)
        crash_point(runbook, step.name, "after")
        return out

    return dataclasses.replace(step, action=action)
