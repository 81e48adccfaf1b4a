"""Honest previews: on one real local environment, each runbook's dry run (`--dry-run --json`) and
then its real run (`--yes --json`) from the same state, through the real CLI. The steps the plan
says will run are, in order, exactly the steps the run ran (``ok``); every other step was held or
skipped. Also: a missing backup fails the dry run with the real run's exit code, and the
confirmation prompt restates the target, the mode, the new writer, the DNS target and the loss.

The tests run in file order and share the environment (starting one costs ~20 s): rotation,
restore chain, restore db, then failover and the failback that puts the sites back.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from cli_env import isolated_env, run_cli, run_on_a_terminal

pytestmark = pytest.mark.skipif(shutil.which("initdb") is None and not Path("/usr/lib/postgresql/15/bin/initdb").exists(),
                                reason="PostgreSQL 15 binaries missing")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    d = tmp_path_factory.mktemp("truth") / "env"
    e = isolated_env(RECOVERY_LOCAL_DIR=str(d), RECOVERY_JOURNAL_DIR=str(d.parent / "journal"),
                     RECOVERY_SYNC_POLL_SECONDS="0.2")
    up = run_cli(e, "local", "up", "--mine-interval", "0.3", timeout=180)
    assert up.returncode == 0, up.stderr
    try:
        for kind in ("chain", "db"):  # replicated into the DR bucket too (the failover's chain restore)
            r = run_cli(e, "backup", kind, "--stack", "local")
            assert r.returncode == 0, r.stderr
        yield e
    finally:
        down = run_cli(e, "local", "down", timeout=180)
        assert down.returncode == 0, down.stderr


def plan_then_run(env: dict[str, str], *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    dry = run_cli(env, *args, "--dry-run", "--json", timeout=180)
    assert dry.returncode == 0, dry.stderr
    real = run_cli(env, *args, "--yes", "--json", timeout=300)
    assert real.returncode == 0, real.stderr
    return json.loads(dry.stdout), json.loads(real.stdout)


def assert_plan_told_the_truth(plan: dict[str, Any], journal: dict[str, Any]) -> None:
    assert plan["dry_run"] is True and journal["status"] == "ok"
    assert [s["name"] for s in plan["steps"]] == [s["name"] for s in journal["steps"]]
    planned = [s["name"] for s in plan["steps"] if s["will_run"]]
    ran = [s["name"] for s in journal["steps"] if s["status"] == "ok"]
    assert planned == ran, {s["name"]: (s["will_run"], s["check"], s.get("undone_by")) for s in plan["steps"]}
    assert {s["status"] for s in journal["steps"] if s["name"] not in ran} <= {"held", "skipped"}


def test_rotate_all(env: dict[str, str]) -> None:
    plan, journal = plan_then_run(env, "rotate", "all", "--stack", "local", "--no-grace")
    assert_plan_told_the_truth(plan, journal)
    assert plan["stakes"]["rotates"].startswith("db")


def test_restore_chain(env: dict[str, str]) -> None:
    plan, journal = plan_then_run(env, "restore", "chain", "--stack", "local")
    assert_plan_told_the_truth(plan, journal)
    steps = {s["name"]: s for s in plan["steps"]}
    assert steps["start-services"]["check"] == "holds" and steps["start-services"]["undone_by"] == "stop-services"
    key = journal["params"]["backup_key"]
    assert plan["stakes"]["backup"] == f"{key} (latest)"  # the plan names what `latest` meant
    assert "the node's blocks after the backup's time: it is at height" in plan["stakes"]["rolls back"]


def test_restore_db(env: dict[str, str]) -> None:
    plan, journal = plan_then_run(env, "restore", "db", "--stack", "local", "--force")
    assert_plan_told_the_truth(plan, journal)
    assert "start-services" in [s["name"] for s in plan["steps"] if s["will_run"]]
    key = journal["params"]["backup_key"]
    assert plan["stakes"]["backup"] == f"{key} (latest)"
    backup_h = next(s for s in journal["steps"] if s["name"] == "verify-scratch")["detail"]["max_height"]
    rolls = plan["stakes"]["rolls back"]  # the node mines on: the live height only grows
    assert " block(s): xai_blockchain max(height) " in rolls and rolls.endswith(f"-> the backup's {backup_h}")


@pytest.mark.parametrize("runbook, backup", [("db", "backups/db/database-20000101T000000Z.sql.gz"),
                                             ("chain", "nope")])
def test_a_missing_backup_fails_the_dry_run_as_it_fails_the_run(env: dict[str, str], runbook: str,
                                                                  backup: str) -> None:
    args = ["restore", runbook, "--stack", "local", "--backup", backup, *(["--force"] if runbook == "db" else [])]
    dry = run_cli(env, *args, "--dry-run")
    real = run_cli(env, *args, "--yes")
    assert real.returncode == 4, real.stderr
    assert dry.returncode == real.returncode and "Plan for" not in dry.stderr
    assert dry.stderr.strip().splitlines()[-1] == real.stderr.strip().splitlines()[-1]


def _prompted(env: dict[str, str], *args: str) -> str:
    rc, screen = run_on_a_terminal([sys.executable, "-m", "recovery", *args], "n",
                                   {**env, "TERM": "xterm", "COLUMNS": "400"})
    assert rc == 9, screen  # refused: nothing changed
    line = next(x for x in screen.replace("\r", "").splitlines() if "[y/N]" in x)
    return line


def test_the_failover_prompt_restates_mode_writer_dns_and_loss(env: dict[str, str]) -> None:
    line = _prompted(env, "failover", "--stack", "local-dr")
    assert line.startswith("Run failover on local-dr (mode: switchover; new writer: xai-local-db-dr (local-dr); "
                           "DNS: api.xai.local -> node-usw2.xai.local; expected loss: none"), line


def test_the_restore_prompt_restates_the_backup_and_the_rollback(env: dict[str, str]) -> None:
    line = _prompted(env, "restore", "db", "--stack", "local", "--force")
    assert line.startswith("Run restore-db on xai_blockchain (backup: backups/db/database-"), line
    assert "(latest); backup taken: " in line and "; rolls back: " in line and "max(height)" in line


def test_failover(env: dict[str, str]) -> None:
    plan, journal = plan_then_run(env, "failover", "--stack", "local-dr")
    assert_plan_told_the_truth(plan, journal)
    steps = {s["name"]: s for s in plan["steps"]}
    assert steps["resume-peer"]["will_run"] and steps["resume-peer"]["undone_by"] == "quiesce-writers"
    assert plan["stakes"]["mode"] == "switchover" and plan["stakes"]["new writer"] == "xai-local-db-dr (local-dr)"


def test_failback(env: dict[str, str]) -> None:
    plan, journal = plan_then_run(env, "failback", "--stack", "local")
    assert_plan_told_the_truth(plan, journal)
    assert plan["stakes"]["DNS"] == "api.xai.local -> node-use1.xai.local"
