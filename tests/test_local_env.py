"""`recovery local up|status|down` as a user runs them: real processes, real ports, the real CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import psycopg
import pytest

from recovery.local.deploy import admin_client
from cli_env import isolated_env, run_cli


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("local") / "env"
    e = isolated_env()
    e["RECOVERY_LOCAL_DIR"] = str(d)
    up = cli(e, "local", "up", "--mine-interval", "0.2")
    assert up.returncode == 0, up.stderr
    yield e
    down = cli(e, "local", "down")
    assert down.returncode == 0, down.stderr
    assert not d.exists()


def status(env: dict[str, str]) -> dict[str, Any]:
    st = cli(env, "local", "status", "--json")
    assert st.returncode == 0, st.stderr
    return dict(json.loads(st.stdout))


def test_status_shows_every_service_running(env: dict[str, str]) -> None:
    st = status(env)
    assert st["aws"]["running"] and st["postgres"]["running"] and st["node"]["running"]
    assert st["stacks"] == ["local", "local-dr"]
    # The one place the sandbox's throwaway password may appear, and it works.
    with psycopg.connect(st["postgres"]["dsn"]) as conn:
        rows = conn.execute("SELECT count(*) FROM blockchain").fetchone()
        assert rows is not None and rows[0] > 0, "the node indexes into PostgreSQL"


def test_second_up_is_refused_and_changes_nothing(env: dict[str, str]) -> None:
    before = status(env)
    again = cli(env, "local", "up")
    assert again.returncode == 16
    assert "already runs" in again.stderr and len(again.stderr.strip().splitlines()) <= 1 + again.stderr.count("…")
    assert status(env)["aws"] == before["aws"]


def test_every_command_works_with_stack_local_and_dr_sees_replicated_backups(env: dict[str, str]) -> None:
    password = unquote(str(urlsplit(status(env)["postgres"]["dsn"]).password))
    backup = cli(env, "backup", "db", "--stack", "local", "--json")
    assert backup.returncode == 0, backup.stderr
    key = json.loads(backup.stdout)["key"]
    # Nothing put the backup in the DR bucket but the emulated replication.
    dr = cli(env, "verify", "--stack", "local-dr", "--kind", "db")
    assert dr.returncode == 0, dr.stdout + dr.stderr
    assert "replicates into this bucket" in dr.stdout
    listed = cli(env, "list", "--stack", "local-dr", "--json")
    assert key in [r["key"] for r in json.loads(listed.stdout)]
    for proc in (backup, dr, listed):
        assert password not in proc.stdout + proc.stderr


def test_master_password_change_reaches_the_real_server(env: dict[str, str]) -> None:
    st = status(env)
    dsn = st["postgres"]["dsn"]
    old = unquote(str(urlsplit(dsn).password))
    rds = admin_client("rds", "us-east-1", st["aws"]["endpoint"], st["aws"]["ca_bundle"])
    new = "Rotated-" + old[:12]
    rds.modify_db_cluster(DBClusterIdentifier="xai-local-db-primary", MasterUserPassword=new, ApplyImmediately=True)
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=5).close()
        psycopg.connect(dsn.replace(quote(old, safe=""), quote(new, safe="")), connect_timeout=5).close()
        pgpass = Path(env["RECOVERY_LOCAL_DIR"]) / "pgpass"
        assert pgpass.read_text().strip().endswith(":" + new), "the node's credential file follows the rotation"
    finally:
        rds.modify_db_cluster(DBClusterIdentifier="xai-local-db-primary", MasterUserPassword=old, ApplyImmediately=True)
    psycopg.connect(dsn, connect_timeout=5).close()


def test_up_without_the_policy_evaluator_says_so_and_starts_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from recovery.local import environment
    from recovery.local.iam import sidecar

    monkeypatch.setattr(sidecar, "EVALUATOR_DIR", tmp_path / "no-evaluator")
    with pytest.raises(environment.LocalEnvError) as err:
        environment.up(tmp_path / "env")
    assert err.value.line() == (f"IAM evaluator: {tmp_path / 'no-evaluator' / 'node_modules'} is missing - run "
                                f"`make venv` (npm ci --prefix {tmp_path / 'no-evaluator'})")
    assert err.value.exit_code == 16 and not (tmp_path / "env").exists()


def test_status_without_an_environment_is_one_line_and_distinct(tmp_path: Path) -> None:
    e = isolated_env()
    e["RECOVERY_LOCAL_DIR"] = str(tmp_path / "none")
    st = cli(e, "local", "status")
    assert st.returncode == 16
    assert st.stderr.strip().count("\n") == 0 and "recovery local up" in st.stderr
    backup = cli(e, "backup", "db", "--stack", "local")
    assert backup.returncode == 16 and "recovery local up" in backup.stderr


def test_down_refuses_a_directory_local_up_did_not_make(tmp_path: Path) -> None:
    """`local down --dir x` on someone's directory removes nothing (it used to delete x and exit 0)."""
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "k").write_text("kept")
    e = isolated_env()
    down = cli(e, "local", "down", "--dir", str(mine))
    assert down.returncode == 16, down.stderr
    assert down.stderr.strip().count("\n") == 0
    assert "nothing was stopped or removed" in down.stderr and "recovery local up" in down.stderr
    not_dir = cli(e, "local", "down", "--dir", str(mine / "k"))
    assert not_dir.returncode == 4 and "is a file" in not_dir.stderr and not_dir.stderr.strip().count("\n") == 0
    assert (mine / "k").read_text() == "kept"
    assert cli(e, "local", "down", "--dir", str(tmp_path / "never-made")).returncode == 0


def test_up_refuses_a_non_empty_directory_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "k").write_text("kept")
    up = cli(isolated_env(), "local", "up", "--dir", str(mine))
    assert up.returncode == 16 and "no .xai-recovery-local marker" in up.stderr, up.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["k"]
