"""`recovery local outage REGION` / `--heal` on a real local environment (issue 14): real SIGKILLs,
real `pg_ctl stop -m immediate`, a real promotion through the emulator, a fenced old primary.

One environment for the module; the tests run in file order (outage -> heal -> outage + failover
-> fenced heal -> rejoin).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest

from cli_env import isolated_env, run_cli
from recovery.local.deploy import admin_client

ROOT = Path(__file__).resolve().parent.parent
MINE = 0.2


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("outage") / "env"
    e = isolated_env(RECOVERY_LOCAL_DIR=str(d))
    up = run_cli(e, "local", "up", "--mine-interval", str(MINE))
    assert up.returncode == 0, up.stderr
    try:
        yield e
    finally:
        assert run_cli(e, "local", "down").returncode == 0


def state(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads((Path(env["RECOVERY_LOCAL_DIR"]) / "state.json").read_text()))


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def q(env: dict[str, str], site: str, sql: str) -> Any:
    st = state(env)
    pg = st["postgres"] if site == "primary" else st["dr"]["postgres"]
    with psycopg.connect(host=pg["host"], port=pg["port"], user=st["postgres"]["maint_user"],
                         password=st["postgres"]["maint_password"], dbname=pg["dbname"], autocommit=True,
                         connect_timeout=5) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else None


def height(env: dict[str, str]) -> int:
    with urllib.request.urlopen(state(env)["node"]["url"] + "/api/v1/blockchain/info", timeout=5) as r:
        return int(json.loads(r.read())["block_height"])


def wait_until(pred: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
        except (OSError, psycopg.Error):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def primary_ports(env: dict[str, str]) -> dict[str, int]:
    st = state(env)
    return {"postgres": st["postgres"]["port"], "node": st["node"]["port"], "redis": st["redis"]["port"]}


def emulator_assertion(env: dict[str, str], result: dict[str, Any], region: str, refused_now: bool) -> None:
    """The emulator's side is another branch's (recovery/local/emulator/outage.py): assert it only
    when the emulator has the control (it answered 404 otherwise)."""
    if not result.get("emulator", True):
        warnings.warn("the emulator has no /xai-local/outage (404, or moto’s S3 catch-all answered): its outage is not asserted")
        return
    st = state(env)
    s3 = admin_client("s3", region, st["aws"]["endpoint"], st["aws"]["ca_bundle"])
    if refused_now:
        with pytest.raises(Exception):  # noqa: B017 - the connection is dropped: botocore's own error class
            s3.list_buckets()
    else:
        s3.list_buckets()


def test_a_bad_region_is_refused_and_changes_nothing(env: dict[str, str]) -> None:
    before = state(env)
    r = run_cli(env, "local", "outage", "eu-west-1")
    assert r.returncode == 47, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "us-east-1 (local)" in r.stderr and "us-west-2 (local-dr)" in r.stderr
    assert state(env) == before and not any(refused(p) for p in primary_ports(env).values())
    heal = run_cli(env, "local", "outage", "--heal")
    assert heal.returncode == 47 and "no outage holds" in heal.stderr


def test_outage_stops_the_primary_hard_and_a_second_is_refused(env: dict[str, str]) -> None:
    ports = primary_ports(env)
    r = run_cli(env, "local", "outage", "us-east-1", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["regions"] == ["us-east-1"] and sorted(result["stopped"]) == ["node", "postgres", "redis"]
    assert {k: refused(p) for k, p in ports.items()} == {"postgres": True, "node": True, "redis": True}
    assert state(env)["outage"]["since"] <= time.time()
    emulator_assertion(env, result, "us-east-1", refused_now=True)
    emulator_assertion(env, result, "us-west-2", refused_now=False)
    st = json.loads(run_cli(env, "local", "status", "--json").stdout)
    assert st["outage"]["regions"] == ["us-east-1"] and st["postgres"]["role"] is None
    assert st["dr"]["postgres"]["role"] == "standby"
    again = run_cli(env, "local", "outage", "us-west-2")
    assert again.returncode == 47 and "already holds" in again.stderr and again.stderr.strip().count("\n") == 0
    assert state(env)["outage"]["regions"] == ["us-east-1"]


def test_heal_restarts_the_primary_as_the_writer(env: dict[str, str]) -> None:
    r = run_cli(env, "local", "outage", "--heal")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "healed us-east-1: started postgres, redis, node; its database is writer"
    assert not any(refused(p) for p in primary_ports(env).values())
    assert "outage" not in state(env)
    h = height(env)
    wait_until(lambda: height(env) >= h + 3, what="the primary node mining again")
    st = json.loads(run_cli(env, "local", "status", "--json").stdout)
    assert st["postgres"]["role"] == "writer" and st["dr"]["postgres"]["role"] == "standby" and st["outage"] is None


def test_after_a_failover_heal_brings_the_primary_back_fenced_and_rejoin_keeps_its_data(env: dict[str, str]) -> None:
    q(env, "primary", "CREATE TABLE IF NOT EXISTS diverged_marker (x int)")
    wait_until(lambda: q(env, "dr", "SELECT to_regclass('diverged_marker')")[0][0], what="replication of the marker")
    # written after the last replicated point: the standby stops receiving WAL first
    q(env, "dr", "ALTER SYSTEM SET primary_conninfo = ''")
    q(env, "dr", "SELECT pg_reload_conf()")
    time.sleep(1.0)
    q(env, "primary", "INSERT INTO diverged_marker VALUES (42)")
    assert run_cli(env, "local", "outage", "us-east-1").returncode == 0
    st = state(env)
    # the unplanned global failover, signed for the DR region, as the failover runbook calls it
    rds = admin_client("rds", "us-west-2", st["aws"]["endpoint"], st["aws"]["ca_bundle"])
    dr_arn = rds.describe_db_clusters(DBClusterIdentifier="xai-local-db-dr")["DBClusters"][0]["DBClusterArn"]
    rds.failover_global_cluster(GlobalClusterIdentifier="xai-local-global", TargetDbClusterIdentifier=dr_arn,
                                AllowDataLoss=True)
    wait_until(lambda: q(env, "dr", "SELECT pg_is_in_recovery()")[0][0] is False, what="the DR promotion")

    r = run_cli(env, "local", "outage", "--heal", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["postgres_role"] == "fenced"
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        q(env, "primary", "INSERT INTO blockchain (height, hash, prev_hash, \"timestamp\", tx_count, transactions) "
                          "VALUES (999999, 'x', 'y', now(), 0, '[]')")
    assert q(env, "primary", "SELECT x FROM diverged_marker") == [(42,)], "its data was kept"
    h = wait_until(lambda: height(env) + 1, what="the primary node answering") - 1
    time.sleep(MINE * 8)
    assert height(env) == h, "the fenced primary's node mined"
    node_status = json.loads(urllib.request.urlopen(state(env)["node"]["url"] + "/api/v1/node/status").read())
    assert node_status["consensus_state"] == "fenced"
    st = json.loads(run_cli(env, "local", "status", "--json").stdout)
    assert st["postgres"]["role"] == "fenced" and st["dr"]["postgres"]["role"] == "writer"

    datadir = Path(state(env)["postgres"]["datadir"])
    rj = subprocess.run([sys.executable, "-m", "recovery.local.dr_site", "rejoin"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert rj.returncode == 0, rj.stderr
    assert json.loads(rj.stdout)["reseeded"] == ["xai-local-db-primary"]
    kept = list(datadir.parent.glob(f"{datadir.name}.diverged-*"))
    assert len(kept) == 1 and (kept[0] / "PG_VERSION").is_file()
    assert q(env, "primary", "SELECT pg_is_in_recovery()")[0][0] is True
    assert wait_until(lambda: q(env, "primary", "SELECT status FROM pg_stat_wal_receiver")[0][0] == "streaming",
                      what="the rebuilt primary streaming from the DR writer")
    assert q(env, "primary", "SELECT count(*) FROM diverged_marker") == [(0,)], "a copy of the new writer"
    st = json.loads(run_cli(env, "local", "status", "--json").stdout)
    assert st["postgres"]["role"] == "standby"
