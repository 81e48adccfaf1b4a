"""The continuous RPO (issue 16): `status` and `metrics` judge the real replication lag of the local
global database, as published into the emulator's CloudWatch from the DR site's streaming standby.

One environment for the module, tests in file order: healthy (green), replay paused on the real
standby while the primary's node keeps mining into the writer (green -> yellow -> red, then resumed
and green again), and a primary-region outage (the DR stack still measures from its own region; the
primary's stack says "unknown", yellow, never green).

The stack's RPO objective is 1 minute; the tests set RECOVERY_DB_RPO_SECONDS=20 (the knob that
tightens it) so the lag crosses half of it and all of it in seconds rather than minutes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import psycopg
import pytest

from cli_env import isolated_env, run_cli
from polling import wait_for

RPO_S = 20.0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("rpo") / "env"
    e = isolated_env(RECOVERY_LOCAL_DIR=str(d), RECOVERY_DB_RPO_SECONDS=str(int(RPO_S)))
    up = run_cli(e, "local", "up", "--mine-interval", "0.3")
    assert up.returncode == 0, up.stderr
    try:
        yield e
    finally:
        assert run_cli(e, "local", "down").returncode == 0


def state(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads((Path(env["RECOVERY_LOCAL_DIR"]) / "state.json").read_text()))


def on_standby(env: dict[str, str], sql: str) -> Any:
    """As the local control plane's superuser, on the DR site's standby."""
    st = state(env)
    pg = st["dr"]["postgres"]
    with psycopg.connect(host=pg["host"], port=pg["port"], user=st["postgres"]["maint_user"],
                         password=st["postgres"]["maint_password"], dbname="postgres", autocommit=True,
                         connect_timeout=5) as conn:
        return conn.execute(sql).fetchone()


def status(env: dict[str, str], stack: str = "local") -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    r = run_cli(env, "status", "--stack", stack, "--json", timeout=180)
    doc = json.loads(r.stdout)
    return r, {f"{ln['component']} {ln['check']}": ln for ln in doc["lines"]}


def metrics(env: dict[str, str], stack: str = "local") -> dict[str, float]:
    r = run_cli(env, "metrics", "--stack", stack, "--json")
    assert r.returncode == 0, r.stderr
    return {f"{s['name']}{json.dumps(s['labels'], sort_keys=True)}": s["value"]
            for s in json.loads(r.stdout)["samples"] if s["name"].startswith("xai_dr_db_")}


def gauge(samples: dict[str, float], name: str, **labels: str) -> float | None:
    want = {k: v for k, v in labels.items()}
    for key, value in samples.items():
        n, _, lab = key.partition("{")
        got = json.loads("{" + lab)
        if n == name and all(got.get(k) == v for k, v in want.items()):
            return value
    return None


def admin(env: dict[str, str], service: str, region: str) -> Any:
    from recovery.local.deploy import admin_client

    aws = state(env)["aws"]
    return admin_client(service, region, aws["endpoint"], aws["ca_bundle"])


def test_green_while_the_standby_keeps_up(env: dict[str, str]) -> None:
    def lag_known() -> Any:
        _r, got = status(env)
        return got if got["database replication"]["data"].get("lag_seconds") is not None else None

    got = wait_for("a first lag datapoint", lag_known, 30, interval=1)
    rep, rest = got["database replication"], got["database restorable"]
    assert rep["level"] == "green", rep
    # the primary's status asks the secondary's metric in the secondary's region
    assert rep["data"]["secondary_stack"] == "local-dr" and rep["data"]["region"] == "us-west-2", rep
    assert rep["data"]["lag_seconds"] < RPO_S / 2 and rep["data"]["rpo_seconds"] == RPO_S
    assert "AuroraGlobalDBRPOLag" in rep["detail"] and "RECOVERY_DB_RPO_SECONDS" in rep["detail"]
    assert rest["level"] == "green" and rest["data"]["age_seconds"] < 60, rest

    m = metrics(env)
    assert gauge(m, "xai_dr_db_replication_lag_seconds", secondary_cluster=rep["data"]["secondary_cluster"]) < RPO_S / 2
    assert gauge(m, "xai_dr_db_replication_rpo_seconds") == RPO_S
    assert gauge(m, "xai_dr_db_rpo_level", check="replication") == 0
    assert gauge(m, "xai_dr_db_rpo_level", check="restorable") == 0
    assert gauge(m, "xai_dr_db_latest_restorable_age_seconds") is not None
    prom = run_cli(env, "metrics", "--stack", "local")
    assert "# TYPE xai_dr_db_replication_lag_seconds gauge" in prom.stdout


def test_the_deployed_alarm_watches_the_published_metric_and_notifies_the_dr_events_topic(env: dict[str, str]) -> None:
    """infra/replication_alarms.py as `local up` deployed it: the DR site's alarm names the metric the
    emulator publishes for its standby, and its actions are the site's DR-events topic."""
    backend = Path(env["RECOVERY_LOCAL_DIR"]) / "backend" / ".pulumi" / "stacks" / "xai-dr" / "local-dr.json"
    dr = json.loads(backend.read_text())["checkpoint"]["latest"]["resources"][0]["outputs"]
    cw = admin(env, "cloudwatch", "us-west-2")
    alarm = cw.describe_alarms(AlarmNames=["xai-dr-local-dr-db-replication-lag"])["MetricAlarms"][0]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/RDS", "AuroraGlobalDBRPOLag")
    assert alarm["Dimensions"] == [{"Name": "DBClusterIdentifier", "Value": dr["db_cluster_id"]}]
    assert alarm["Threshold"] == 60_000 and alarm["AlarmActions"] == [dr["notifications"]["topic_arn"]]
    listed = cw.list_metrics(Namespace="AWS/RDS", MetricName="AuroraGlobalDBRPOLag")["Metrics"]
    assert {d["Value"] for m in listed for d in m["Dimensions"]} == {dr["db_cluster_id"]}, "published for the standby only"


def test_paused_replay_turns_status_yellow_then_red_and_resuming_heals_it(env: dict[str, str]) -> None:
    on_standby(env, "SELECT pg_wal_replay_pause()")
    seen: list[tuple[float, str, float | None]] = []
    t0 = time.monotonic()
    try:
        def level(want: str) -> Callable[[], Any]:
            def check() -> Any:
                r, got = status(env)
                rep = got["database replication"]
                seen.append((round(time.monotonic() - t0, 1), rep["level"], rep["data"].get("lag_seconds")))
                return (r, got) if rep["level"] == want else None
            return check

        wait_for("yellow", level("yellow"), 60, interval=1)
        _r, got = wait_for("red", level("red"), 60, interval=1)
        rep = got["database replication"]
        assert rep["data"]["lag_seconds"] > RPO_S and "over the RPO" in rep["detail"], rep
        m = metrics(env)
        assert gauge(m, "xai_dr_db_replication_lag_seconds") > RPO_S
        assert gauge(m, "xai_dr_db_rpo_level", check="replication") == 2
        # the DR stack's own status reads the same lag from its own region
        _r, dr = status(env, "local-dr")
        assert dr["database replication"]["level"] == "red" and dr["database replication"]["data"]["region"] == "us-west-2"
        # a lagging standby's latest restorable time trails too (its last replayed commit)
        assert dr["database restorable"]["data"]["age_seconds"] > RPO_S, dr["database restorable"]
    finally:
        on_standby(env, "SELECT pg_wal_replay_resume()")
    levels = [lv for _t, lv, _lag in seen]
    assert levels.index("yellow") < levels.index("red"), seen
    # back to green once the newest minute's maximum is below half the RPO again
    wait_for("green after resuming", lambda: status(env)[1]["database replication"]["level"] == "green", 100, interval=1)


def test_primary_region_outage_the_dr_stack_still_measures_from_its_own_region(env: dict[str, str]) -> None:
    assert run_cli(env, "local", "outage", "us-east-1").returncode == 0
    try:
        _r, dr = status(env, "local-dr")
        rep = dr["database replication"]
        # measured in us-west-2 (the standby's last replayed commit ages: the lag grows), never "unknown"
        assert rep["data"].get("lag_seconds") is not None and rep["data"]["region"] == "us-west-2", rep
        assert dr["database restorable"]["data"].get("age_seconds") is not None, dr["database restorable"]
    finally:
        assert run_cli(env, "local", "outage", "--heal").returncode == 0


def test_an_unreadable_lag_is_unknown_and_yellow_never_green(env: dict[str, str]) -> None:
    """The secondary's region (the DR site's) does not answer: the primary's status cannot read the lag."""
    assert run_cli(env, "local", "outage", "us-west-2").returncode == 0
    try:
        r, primary = status(env, "local")
        rep = primary["database replication"]
        assert rep["level"] == "yellow" and rep["data"].get("lag_seconds") is None, rep
        assert "unknown" in rep["detail"] and "CloudWatch in us-west-2 did not answer" in rep["detail"], rep
        assert primary["database restorable"]["level"] == "green"  # its own cluster, its own region
        m = metrics(env)
        assert gauge(m, "xai_dr_db_replication_lag_seconds") is None  # unknown is left out, not 0
        assert gauge(m, "xai_dr_db_rpo_level", check="replication") == 1
    finally:
        assert run_cli(env, "local", "outage", "--heal").returncode == 0
