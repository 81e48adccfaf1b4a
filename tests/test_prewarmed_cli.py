"""The suite's forked CLI runs (tests/prewarmed_cli.py) behave as `python -m` would: output, exit
status, stdin, environment, cwd, exit handlers, signals and timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import prewarmed_cli
from cli_env import ROOT, isolated_env


def _spawned(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recovery", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.parametrize("args", [["--version"], ["nosuch"], ["list", "--stack", "nope"], ["backup", "db", "--help"],
                                  ["list", "--stack", "local", "--outputs", "/nonexistent/outputs.json"]])
def test_a_forked_run_matches_a_spawned_one(args: list[str], tmp_path: Path) -> None:
    env = isolated_env(RECOVERY_JOURNAL_DIR=str(tmp_path))
    forked = prewarmed_cli.run("recovery", args, env=env, input="")
    spawned = _spawned(args, env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (spawned.returncode, spawned.stdout, spawned.stderr)


def test_environment_cwd_stdin_and_exit_handlers_are_the_callers(tmp_path: Path) -> None:
    stmt = ("import atexit, os, sys, threading, time; print(os.environ['MARK'], os.getcwd(), sys.stdin.read()); "
            "atexit.register(print, 'atexit ran'); threading.Thread(target=lambda: (time.sleep(0.3), print('joined'))).start()")
    r = prewarmed_cli.run("timeit", ["-n1", "-r1", stmt], env={**isolated_env(), "MARK": "m-42"}, cwd=tmp_path,
                          input="typed")
    assert r.returncode == 0, r.stderr
    assert f"m-42 {tmp_path} typed" in r.stdout
    assert r.stdout.index("joined") < r.stdout.index("atexit ran")  # threads joined first, as at exit


def test_a_signal_and_a_timeout_end_the_child_as_subprocess_would() -> None:
    killed = prewarmed_cli.run("timeit", ["-n1", "-r1", "import os; os.kill(os.getpid(), 9)"], env=isolated_env())
    assert killed.returncode == -9
    with pytest.raises(subprocess.TimeoutExpired):
        prewarmed_cli.run("timeit", ["-n1", "-r1", "import time; time.sleep(30)"], env=isolated_env(), timeout=0.5)
    after = prewarmed_cli.run("recovery", ["--version"], env=isolated_env())  # the server carries on
    assert after.returncode == 0 and "0.1.0" in after.stdout
    assert os.environ.get("RECOVERY_TEST_SPAWN") == "1" or prewarmed_cli._SERVER["proc"].poll() is None
