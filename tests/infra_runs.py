"""Runs of the real Pulumi program under mocks, shared by the infra, policy and contract tests."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent / "infra"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))

import offline  # noqa: E402

STACKS = ("production", "production-dr")


@functools.cache
def run(stack: str) -> "offline.StackRun":
    if stack == "production-dr":
        return offline.run_stack(stack, primary=run("production"))
    return offline.run_stack(stack)
