"""`recovery restore pitr` against the moto server (RDS over HTTP), the CLI as a real process."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.runbooks.restore_pitr import restorable_window

from _restore_fixtures import RSite, drop_test_databases, make_rsite

RB = "restore-pitr"


@pytest.fixture()
def rs(moto_server: Any, pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=0)
    s.extra_env["RECOVERY_RDS_POLL_SECONDS"] = "0.1"
    # The cluster and its instances are the program's (deployed by make_rsite), with its retention.
    time.sleep(1.05)  # the window starts when the cluster was created (times are given in whole seconds)
    yield s
    drop_test_databases(pg, s.db)


def rds(rs: RSite) -> Any:
    return rs.server.client("rds", rs.outputs["region"])


def source(rs: RSite) -> dict[str, Any]:
    c = dict(rds(rs).describe_db_clusters(DBClusterIdentifier=rs.outputs["db_cluster_id"])["DBClusters"][0])
    c.pop("LatestRestorableTime", None)  # moves with the clock
    return c


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_restores_into_a_new_cluster_and_never_touches_the_source(rs: RSite) -> None:
    before = source(rs)
    t = datetime.now(timezone.utc)
    r = rs.cli("pitr", "--to-time", iso(t), "--new-cluster", "xai-pitr-test", "--json")
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and [s["name"] for s in j["steps"]] == [
        "check-window", "restore-cluster", "create-instance", "wait-available", "report"]
    rep = {s["name"]: s for s in j["steps"]}["report"]["detail"]
    new = rds(rs).describe_db_clusters(DBClusterIdentifier="xai-pitr-test")["DBClusters"][0]
    assert rep["endpoint"] == new["Endpoint"] and new["Status"] == "available"
    inst = rds(rs).describe_db_instances(DBInstanceIdentifier="xai-pitr-test-1")["DBInstances"][0]
    assert inst["DBClusterIdentifier"] == "xai-pitr-test" and inst["DBInstanceClass"] == "db.r6g.large"
    assert source(rs) == before  # the source cluster was only described
    # without --json the endpoint and the repoint steps are printed
    r2 = rs.cli("pitr", "--to-time", iso(t), "--new-cluster", "xai-pitr-test-2")
    assert r2.code == 0, r2.err
    assert "writer endpoint xai-pitr-test-2" in r2.out and "To repoint clients" in r2.out
    assert r2.out.count("To repoint clients") == 1


@pytest.mark.parametrize("offset", [timedelta(days=-1), timedelta(hours=1)])
def test_time_outside_the_window_is_refused_with_the_window(rs: RSite, offset: timedelta) -> None:
    before = source(rs)
    clusters = len(rds(rs).describe_db_clusters()["DBClusters"])
    t = datetime.now(timezone.utc) + offset
    r = rs.cli("pitr", "--to-time", iso(t))
    assert r.code == 4, r.err
    line = r.err.strip().splitlines()[-1]
    assert "outside the restorable window" in line and line.count("Z") >= 3 and iso(t) in line
    assert len(rds(rs).describe_db_clusters()["DBClusters"]) == clusters and source(rs) == before


def test_window_is_computed_when_rds_omits_it() -> None:
    created = datetime(2026, 11, 1, tzinfo=timezone.utc)
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    e, l, how = restorable_window({"ClusterCreateTime": created, "BackupRetentionPeriod": 7}, now)
    assert e == now - timedelta(days=7) and l == now - timedelta(minutes=5) and "computed" in how
    e, _, _ = restorable_window({"ClusterCreateTime": now - timedelta(hours=2), "BackupRetentionPeriod": 7}, now)
    assert e == now - timedelta(hours=2)


def test_dry_run_creates_nothing(rs: RSite) -> None:
    def state() -> Any:
        return ([c["DBClusterIdentifier"] for c in rds(rs).describe_db_clusters()["DBClusters"]],
                [i["DBInstanceIdentifier"] for i in rds(rs).describe_db_instances()["DBInstances"]], source(rs))

    before = state()
    t = datetime.now(timezone.utc)
    r = rs.cli("pitr", "--to-time", iso(t), "--dry-run", "--json")
    assert r.code == 0, r.err
    assert r.json()["dry_run"] is True
    assert state() == before and not rs.journal_dir.exists()


def test_sigkill_then_rerun_does_not_restore_twice(rs: RSite) -> None:
    t = datetime.now(timezone.utc)
    args = ("pitr", "--to-time", iso(t), "--new-cluster", "xai-pitr-crash")
    rs.crash(*args, at=f"{RB}:restore-cluster:after")
    rs.crash(*args, at=f"{RB}:create-instance:after")
    r = rs.cli(*args, "--json")
    assert r.code == 0, r.err
    st = {s["name"]: s["status"] for s in r.json()["steps"]}
    assert st["restore-cluster"] == "held" and st["create-instance"] == "held"
    ids = [c["DBClusterIdentifier"] for c in rds(rs).describe_db_clusters()["DBClusters"]]
    assert ids.count("xai-pitr-crash") == 1
