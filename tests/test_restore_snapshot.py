"""`recovery restore snapshot` against the moto server with the emulator's extensions (RDS over HTTP,
the restore job's role enforced), the CLI as a real process. The snapshots are made as the account's admin, as AWS Backup or an
operator would make them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from _restore_fixtures import RSite, drop_test_databases, make_rsite

RB = "restore-snapshot"
STEPS = ["check-snapshot", "restore-cluster", "create-instance", "wait-available", "report"]


@pytest.fixture()
def rs(moto_server: Any, pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
       request: pytest.FixtureRequest) -> Iterator[RSite]:
    from recovery.local import emulator

    # RestoreDBClusterFromSnapshot by ARN, standalone, as AWS does it (emulator/rds_snapshot.py);
    # left installed, every later test's moto would have the extensions
    if not emulator.installed():
        emulator.install()
        request.addfinalizer(emulator.uninstall)
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=0)
    s.extra_env["RECOVERY_RDS_POLL_SECONDS"] = "0.1"
    yield s
    drop_test_databases(pg, s.db)


def rds(rs: RSite) -> Any:
    return rs.server.client("rds", rs.outputs["region"])


def snapshot(rs: RSite, name: str) -> dict[str, Any]:
    s = rds(rs).create_db_cluster_snapshot(DBClusterIdentifier=rs.outputs["db_cluster_id"],
                                           DBClusterSnapshotIdentifier=name)["DBClusterSnapshot"]
    time.sleep(0.01)  # snapshot times differ, so "latest" is well defined
    return dict(s)


def source(rs: RSite) -> dict[str, Any]:
    c = dict(rds(rs).describe_db_clusters(DBClusterIdentifier=rs.outputs["db_cluster_id"])["DBClusters"][0])
    c.pop("LatestRestorableTime", None)  # moves with the clock
    return c


def state(rs: RSite) -> Any:
    return (sorted(c["DBClusterIdentifier"] for c in rds(rs).describe_db_clusters()["DBClusters"]),
            sorted(i["DBInstanceIdentifier"] for i in rds(rs).describe_db_instances()["DBInstances"]), source(rs))


def steps(j: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in j["steps"]}


def test_latest_restores_the_newest_snapshot_into_a_standalone_cluster_and_measures_the_rto(rs: RSite) -> None:
    snapshot(rs, "snap-old")
    new = snapshot(rs, "snap-new")
    before = source(rs)
    r = rs.cli("snapshot", "--new-cluster", "xai-snap-test", "--json")
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and [s["name"] for s in j["steps"]] == STEPS
    chk, rep = steps(j)["check-snapshot"]["detail"], steps(j)["report"]["detail"]
    assert chk["snapshot"] == "snap-new" and chk["arn"] == new["DBClusterSnapshotArn"] and chk["type"] == "manual"
    c = rds(rs).describe_db_clusters(DBClusterIdentifier="xai-snap-test")["DBClusters"][0]
    assert rep["endpoint"] == c["Endpoint"] and c["Status"] == "available"
    # AWS restores a snapshot of a global member into a standalone cluster
    assert not c.get("GlobalClusterIdentifier") and not c.get("ReplicationSourceIdentifier")
    inst = rds(rs).describe_db_instances(DBInstanceIdentifier="xai-snap-test-1")["DBInstances"][0]
    assert inst["DBClusterIdentifier"] == "xai-snap-test" and inst["DBInstanceClass"] == "db.r6g.large"
    assert source(rs) == before  # the source cluster was only described
    # the RTO of this restore: the journal's elapsed time, from the first step to the endpoints
    assert 0 < j["elapsed_s"] < 60
    assert j["elapsed_s"] >= sum(s["duration_s"] or 0 for s in j["steps"]) - 0.01
    # without --json the endpoint and the repoint steps are printed, once
    r2 = rs.cli("snapshot", "--snapshot", "snap-old", "--new-cluster", "xai-snap-test-2")
    assert r2.code == 0, r2.err
    assert "writer endpoint xai-snap-test-2" in r2.out and r2.out.count("To repoint clients") == 1
    assert "from snapshot snap-old" in r2.out


def test_a_named_snapshot_and_a_snapshot_arn(rs: RSite) -> None:
    old = snapshot(rs, "snap-a")
    snapshot(rs, "snap-b")
    r = rs.cli("snapshot", "--snapshot", "snap-a", "--new-cluster", "xai-snap-named", "--json")
    assert r.code == 0, r.err
    assert steps(r.json())["check-snapshot"]["detail"]["snapshot"] == "snap-a"
    r = rs.cli("snapshot", "--snapshot", old["DBClusterSnapshotArn"], "--json", "--yes")
    assert r.code == 0, r.err
    j = r.json()
    assert steps(j)["check-snapshot"]["detail"]["arn"] == old["DBClusterSnapshotArn"]
    # the default name carries the snapshot's time
    new = steps(j)["report"]["detail"]["cluster"]
    assert new.startswith(rs.outputs["db_cluster_id"][:30]) and "-snap-" in new
    assert rds(rs).describe_db_clusters(DBClusterIdentifier=new)["DBClusters"][0]["Status"] == "available"


def test_dry_run_changes_nothing(rs: RSite) -> None:
    snapshot(rs, "snap-dry")
    before = state(rs)
    r = rs.cli("snapshot", "--dry-run", "--json")
    assert r.code == 0, r.err
    assert r.json()["dry_run"] is True
    assert state(rs) == before and not rs.journal_dir.exists()


def test_latest_without_a_manual_snapshot_is_the_automated_one(rs: RSite) -> None:
    r = rs.cli("snapshot", "--new-cluster", "xai-snap-auto", "--json")
    assert r.code == 0, r.err
    chk = steps(r.json())["check-snapshot"]["detail"]
    assert chk["type"] == "automated" and chk["snapshot"].startswith(f"rds:{rs.outputs['db_cluster_id']}")


def test_unknown_snapshot_and_a_taken_name_are_refused_and_change_nothing(rs: RSite) -> None:
    snapshot(rs, "snap-x")
    before = state(rs)
    r = rs.cli("snapshot", "--snapshot", "snap-nope")
    assert r.code == 4, r.err
    line = r.err.strip().splitlines()[-1]
    assert "snap-nope is not a cluster snapshot of" in line and "describe-db-cluster-snapshots" in line
    other = rs.outputs["db_cluster_arn"].split(":")[4]
    foreign = f"arn:aws:rds:{rs.outputs['region']}:{int(other) + 1:012d}:cluster-snapshot:awsbackup:job-1"
    r = rs.cli("snapshot", "--snapshot", foreign)
    assert r.code == 4, r.err
    assert "start-copy-job" in r.err and len(r.err.strip().splitlines()) == 1
    taken = rs.outputs["db_cluster_id"]
    r = rs.cli("snapshot", "--new-cluster", taken)
    assert r.code == 4, r.err
    assert f"cluster {taken} already exists" in r.err
    assert state(rs) == before


def test_sigkill_then_rerun_resumes_and_does_not_restore_twice(rs: RSite) -> None:
    snapshot(rs, "snap-crash")
    args = ("snapshot", "--new-cluster", "xai-snap-crash")
    rs.crash(*args, at=f"{RB}:restore-cluster:after")
    rs.crash(*args, at=f"{RB}:create-instance:after")
    snapshot(rs, "snap-later")  # a newer snapshot meanwhile: the rerun still restores the one it began with
    r = rs.cli(*args, "--snapshot", "snap-crash", "--json")
    assert r.code == 0, r.err
    j = r.json()
    st = {s["name"]: s["status"] for s in j["steps"]}
    assert st["restore-cluster"] == "held" and st["create-instance"] == "held"
    assert steps(j)["check-snapshot"]["detail"]["snapshot"] == "snap-crash"
    # the RTO counts the crashed attempts too: from the first attempt's start to the end
    assert len(j["attempts"]) == 3 and j["elapsed_s"] >= sum(s["duration_s"] or 0 for s in j["steps"]) - 0.01
    ids = [c["DBClusterIdentifier"] for c in rds(rs).describe_db_clusters()["DBClusters"]]
    assert ids.count("xai-snap-crash") == 1
    assert [i["DBInstanceIdentifier"] for i in rds(rs).describe_db_instances()["DBInstances"]].count(
        "xai-snap-crash-1") == 1
