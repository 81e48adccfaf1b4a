"""`recovery status` against a real local environment: all green, then real damage turns a line red.

The environment is started and stopped through the CLI (`recovery local up|down`), as an operator
would. Damage is real: rows deleted from PostgreSQL behind the indexer's back, and the node stopped
through its run directory. The sandbox's DB password never appears in any output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from cli_env import isolated_env, run_cli


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("status") / "env"
    e = isolated_env()
    e["RECOVERY_LOCAL_DIR"] = str(d)
    up = cli(e, "local", "up", "--mine-interval", "0.3")
    assert up.returncode == 0, up.stderr
    try:
        st = json.loads(cli(e, "local", "status", "--json").stdout)
        e["_DSN"] = st["postgres"]["dsn"]
        e["_PASSWORD"] = unquote(str(urlsplit(st["postgres"]["dsn"]).password))
        for kind in ("db", "chain", "config"):  # config: no paths, the services' own (explorer, monitoring)
            b = cli(e, "backup", kind, "--stack", "local")
            assert b.returncode == 0, b.stderr
        yield e
    finally:
        down = cli(e, "local", "down")
        assert down.returncode == 0, down.stderr


def status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    run_env = {k: v for k, v in env.items() if not k.startswith("_")}
    r = cli(run_env, "status", "--stack", "local", *args)
    assert env["_PASSWORD"] not in r.stdout + r.stderr, "the DB password leaked"
    return r


def lines(r: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    doc = json.loads(r.stdout)
    return {f"{ln['component']} {ln['check']}": ln for ln in doc["lines"]}


def test_all_green_on_a_healthy_environment(env: dict[str, str]) -> None:
    r = status(env, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    got = lines(r)
    assert set(got) == {"node height", "node peers", "node mining", "database reachable", "database rows",
                        "cache reachable", "explorer health", "monitoring health", "backup db", "backup chain",
                        "backup config", "site role", "traffic dns", "health route53", "replication bucket",
                        "database replication", "database restorable"}
    not_green = {k: (v["level"], v["detail"]) for k, v in got.items() if v["level"] != "green"}
    # The cache may be skipped with a note when no Redis runs locally; nothing else may be off.
    assert set(not_green) <= {"cache reachable"} and all(lv == "skip" for lv, _ in not_green.values()), not_green
    assert json.loads(r.stdout)["level"] == "green"
    assert got["database rows"]["data"]["missing_rows"] == 0
    assert got["node peers"]["data"]["peer_count"] > 5
    assert "COMPLETED" in got["replication bucket"]["detail"]

    # Against a reference (here the node itself): lag 0, still green.
    url = json.loads(cli(env, "local", "status", "--json").stdout)["node"]["url"]
    ref = status(env, "--json", "--reference", url)
    assert ref.returncode == 0 and lines(ref)["node height"]["data"]["reference_height"] is not None

    plain = status(env)  # not a TTY: plain marks, one line per check, a summary line
    assert plain.returncode == 0
    out = plain.stdout.splitlines()
    assert len(out) == 18 and out[-1].startswith("✓ stack 'local': green")
    assert all(ln[0] in "✓-" for ln in out) and "\x1b[" not in plain.stdout


def test_the_explorer_and_monitoring_lines_follow_their_processes(env: dict[str, str]) -> None:
    """Five components: a killed explorer is red until it runs again; the config backup (its state,
    explorer RPO 1 h) is judged on the config schedule."""
    got = lines(status(env, "--json"))
    assert got["explorer health"]["level"] == "green" and got["explorer health"]["data"]["latest_height"] >= 0
    assert got["monitoring health"]["level"] == "green"
    assert got["backup config"]["level"] == "green" and "interval 60 min" in got["backup config"]["detail"]
    services = json.loads(Path(json.loads(cli(env, "local", "status", "--json").stdout)["dir"], "services.json").read_text())
    explorer = next(s for s in services["services"] if s["name"] == "xai-explorer")
    assert subprocess.run(explorer["stop"], capture_output=True, timeout=60).returncode == 0
    try:
        r = status(env, "--json")
        assert r.returncode == 29
        line = lines(r)["explorer health"]
        assert line["level"] == "red" and "not answering" in line["detail"]
        assert lines(r)["monitoring health"]["level"] == "green"
    finally:
        assert subprocess.run(explorer["start"], capture_output=True, timeout=60).returncode == 0
    assert lines(status(env, "--json"))["explorer health"]["level"] == "green"


def test_deleted_rows_turn_the_database_red_and_exit_29(env: dict[str, str]) -> None:
    with psycopg.connect(env["_DSN"], autocommit=True) as conn:
        hi = conn.execute("SELECT max(height) FROM blockchain").fetchone()[0]  # type: ignore[index]
        deleted = conn.execute("DELETE FROM blockchain WHERE height BETWEEN 2 AND 4").rowcount
    assert hi >= 5 and deleted == 3
    r = status(env, "--json")
    assert r.returncode == 29, r.stderr
    got = lines(r)
    assert got["database rows"]["level"] == "red"
    assert got["database rows"]["data"]["missing_rows"] == 3
    assert "3 rows missing" in got["database rows"]["detail"]
    assert json.loads(r.stdout)["ok"] is False
    assert r.stderr.strip().count("\n") == 0 and "database rows" in r.stderr  # one line
    plain = status(env)
    assert plain.returncode == 29
    assert any(ln.startswith("✗ database") for ln in plain.stdout.splitlines())


def test_stopped_node_is_red_in_node_and_health_check(env: dict[str, str]) -> None:
    st = json.loads(cli(env, "local", "status", "--json").stdout)
    run_dir = Path(st["node"]["data_dir"]).parents[3]  # <dir>/node, the node's run dir
    stop = subprocess.run([sys.executable, "-m", "recovery.local.node_process", "stop", "--run-dir", str(run_dir),
                           "--name", "xai-node"], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    r = status(env, "--json")
    assert r.returncode == 29
    got = lines(r)
    assert got["node height"]["level"] == "red" and "unreachable" in got["node height"]["detail"]
    assert got["node peers"]["level"] == "skip"
    assert got["health route53"]["level"] == "red"  # Route 53's checkers probe the same node
    assert got["backup db"]["level"] == "green"  # the rest still reports
