"""Issue 18 item 1, "output for 3 a.m.": what an operator sees on a terminal, on the real local
environment and the real CLI run on a pseudo-terminal (80 columns, as `script` gives).

One environment for the module; the tests run in file order (fresh metrics -> backups -> restore db
-> failover -> failback -> metrics). Counts are lines left on the screen (tests/cli_env.screen_lines):
a line rewritten in place counts once, as the operator sees it.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from cli_env import isolated_env, run_cli, run_on_a_terminal, screen_lines
from recovery.engine.console import ConsoleReporter
from recovery.engine.journal import LocalJournalStore
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step

CONTROL = re.compile(r"\x1b|\r")
NO_HUMAN_SIZE = re.compile(r"\b0\.0 MB\b|\d+ bytes\b")


class Env:
    def __init__(self, env: dict[str, str], d: Path) -> None:
        self.env = env
        self.dir = d

    def tty(self, *args: str, timeout: float = 240) -> tuple[int, list[str], str]:
        rc, raw = run_on_a_terminal([sys.executable, "-m", "recovery", *args], "", {**self.env, "COLUMNS": "80"},
                                    timeout=timeout)
        return rc, screen_lines(raw), raw

    def cli(self, *args: str) -> Any:
        return run_cli(self.env, *args, timeout=240)

    def s3_json(self, location: str) -> Any:
        from recovery.local.deploy import admin_client

        state = json.loads((self.dir / "state.json").read_text())
        bucket, _, key = location.removeprefix("s3://").partition("/")
        s3 = admin_client("s3", "us-east-1", state["aws"]["endpoint"], state["aws"]["ca_bundle"])
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("output") / "env"
    e = isolated_env(RECOVERY_LOCAL_DIR=str(d), RECOVERY_JOURNAL_DIR=str(d.parent / "journal"), TERM="xterm")
    up = run_cli(e, "local", "up", "--mine-interval", "0.3", timeout=600)
    assert up.returncode == 0, up.stderr
    try:
        yield Env(e, d)
    finally:
        down = run_cli(e, "local", "down", timeout=300)
        assert down.returncode == 0, down.stderr


def test_a_new_environments_first_backups_read_100_percent(env: Env) -> None:
    for kind in ("chain", "db", "config"):  # the DR node restores from the replicated chain backup
        b = env.cli("backup", kind, "--stack", "local")
        assert b.returncode == 0, b.stderr
        assert not NO_HUMAN_SIZE.search(b.stdout), b.stdout
    r = env.cli("metrics", "--stack", "local", "--json")
    assert r.returncode == 0, r.stderr
    for kind, kb in json.loads(r.stdout)["backups"].items():
        for window in kb["windows"].values():  # due only since the first backup: one slot, filled
            assert window["expected"] == 1 and window["success_ratio"] == 1.0, (kind, window)
    prom = env.cli("metrics", "--stack", "local")
    assert 'xai_dr_backup_success_ratio{component="postgresql",kind="db",stack="local",window="24h"} 1' in prom.stdout


def test_restore_db_on_a_terminal_is_one_line_per_step(env: Env) -> None:
    rc, lines, raw = env.tty("restore", "db", "--stack", "local", "--yes", "--force")
    assert rc == 0, raw
    assert len(lines) <= 15, "\n".join(lines)
    assert any(re.match(r"✓ restore-scratch +\d", line) for line in lines), lines
    assert not any(re.match(r"\[\d+/\d+\]", line) for line in lines), lines  # counters live only while running
    assert any(re.match(r"✓ restore-db on \S+: ok in ", line) for line in lines), lines  # the one summary
    assert "┃" not in raw and "│" not in raw  # no per-step table without -v
    assert not NO_HUMAN_SIZE.search("\n".join(lines)), lines


def test_verbose_adds_the_detail_and_the_table(env: Env) -> None:
    rc, lines, raw = env.tty("restore", "db", "--stack", "local", "--yes", "--force", "-v")
    assert rc == 0, raw
    assert "┃" in raw or "│" in raw  # the per-step table
    assert "=" in "\n".join(lines)  # the full detail, key=value


def test_restore_db_off_a_terminal_stays_line_oriented_and_json_is_the_journal(env: Env) -> None:
    r = env.cli("restore", "db", "--stack", "local", "--yes", "--force")
    assert r.returncode == 0, r.stderr
    assert not CONTROL.search(r.stderr), r.stderr[:2000]
    assert re.search(r"^\[1/\d+\] preflight \.\.\.$", r.stderr, re.M) and re.search(r"^\[\d+/\d+\] swap: ok in ",
                                                                                      r.stderr, re.M)
    j = env.cli("restore", "db", "--stack", "local", "--yes", "--force", "--json")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc == env.s3_json(doc["location"])  # exactly the journal, as before
    assert not CONTROL.search(j.stdout)


def test_failover_on_a_terminal_indents_the_nested_restore(env: Env) -> None:
    rc, lines, raw = env.tty("failover", "--stack", "local-dr", "--yes")
    assert rc == 0, raw
    assert len(lines) <= 25, "\n".join(lines)
    header = next(i for i, line in enumerate(lines) if re.match(r"▸ \[\d+/\d+\] restore-chain$", line))
    nested = lines[header + 1: next(i for i, line in enumerate(lines) if line.startswith("✓ restore-chain"))]
    assert nested and all(line.startswith("  ") for line in nested), lines  # restore chain's own steps, under it
    assert any(re.match(r"  ✓ restore-chain: ok in \S+, \d+ ok", line) for line in nested), nested
    assert not any(re.match(r"\[\d+/\d+\]", line) for line in lines), lines


def test_failback_on_a_terminal(env: Env) -> None:
    rc, lines, raw = env.tty("failback", "--stack", "local", "--yes")
    assert rc == 0, raw
    assert len(lines) <= 25, "\n".join(lines)
    assert any(line.startswith("✓ failback on ") or line.startswith("✓ failover on ") for line in lines) or \
        any(": ok in " in line for line in lines), lines


def test_metrics_on_a_terminal_is_a_short_summary(env: Env) -> None:
    rc, lines, raw = env.tty("metrics", "--stack", "local")
    assert rc == 0, raw
    assert 5 <= len(lines) <= 15, "\n".join(lines)
    assert lines[0].startswith("DR metrics for stack local") and not any("xai_dr_" in line for line in lines)
    assert any(re.match(r"\s+db\s+\S+ ago\s", line) for line in lines), lines
    piped = env.cli("metrics", "--stack", "local")  # not a terminal: the exposition, as before
    assert piped.stdout.startswith("# HELP xai_dr_") and not CONTROL.search(piped.stdout)


# ------------------------------------------------------------------ the reporter, in process


def test_a_log_gets_nested_steps_indented_and_one_summary(tmp_path: Path) -> None:
    store = LocalJournalStore(tmp_path)
    inner = Runbook("inner", [Step("a", lambda c: {"stored_bytes": 1_234_567})], "t2")
    outer = Runbook("outer", [Step("one", lambda c: None),
                              Step("nested", lambda c: {"run": inner.run(store, c.reporter, yes=True).run_id})], "t")
    buf = io.StringIO()
    outer.run(store, ConsoleReporter(stream=buf, stdin=io.StringIO()), yes=True)
    text = buf.getvalue()
    assert "  [1/1] a ...\n  [1/1] a: ok in " in text and "\n[2/2] nested: ok in " in text
    assert "\n  inner on t2: ok in " in text and text.count("outer on t: ok in ") == 1
    assert "\n  one: ok" not in text  # the per-step list of the summary only with verbose
    assert not CONTROL.search(text)
