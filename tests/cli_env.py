"""Running the real `recovery` CLI as a subprocess, isolated from the caller's environment.

Tests that drive the CLI must not inherit AWS credentials, endpoints, Pulumi backends, PG*
variables or RECOVERY_* settings from whoever runs the suite: `isolated_env()` strips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_INHERITED = ("AWS_", "RECOVERY_", "PULUMI_", "PG")


def isolated_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recovery", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
