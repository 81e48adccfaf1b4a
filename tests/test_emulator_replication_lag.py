"""recovery/local/emulator/rds_replication_lag.py over HTTP: a probe's readings become the secondary's
AuroraGlobalDBRPOLag in its own region and a lagging standby's LatestRestorableTime; a writer gets no
metric, a caught-up standby moto's "now". (The real probe, on real PostgreSQL, is exercised by
tests/test_replication_rpo.py.)"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any, Iterator

import pytest

from recovery.local import emulator as ext
from recovery.local.emulator import rds_replication_lag as lag
from recovery.local.moto_server import MotoServer


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    was_installed = ext.installed()
    ext.install()
    srv = MotoServer().start()
    yield srv
    srv.stop()
    ext.set_replication_probe(None)
    if not was_installed:
        ext.uninstall()


def _clusters(server: MotoServer) -> tuple[Any, Any, str, str]:
    east, west = server.client("rds", "us-east-1"), server.client("rds", "us-west-2")
    gid, primary, secondary = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("gc", "primary", "dr"))
    east.create_global_cluster(GlobalClusterIdentifier=gid, Engine="aurora-postgresql")
    east.create_db_cluster(DBClusterIdentifier=primary, Engine="aurora-postgresql", GlobalClusterIdentifier=gid,
                           MasterUsername="xaiadmin", MasterUserPassword="initial-password-1")
    west.create_db_cluster(DBClusterIdentifier=secondary, Engine="aurora-postgresql", GlobalClusterIdentifier=gid)
    return east, west, primary, secondary


def _points(server: MotoServer, region: str, cluster: str) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.timezone.utc)
    return list(server.client("cloudwatch", region).get_metric_statistics(
        Namespace="AWS/RDS", MetricName="AuroraGlobalDBRPOLag",
        Dimensions=[{"Name": "DBClusterIdentifier", "Value": cluster}],
        StartTime=now - dt.timedelta(minutes=3), EndTime=now + dt.timedelta(seconds=1), Period=60,
        Statistics=["Maximum"])["Datapoints"])


def test_the_standby_lag_is_published_in_its_region_and_its_restorable_time_trails(server: MotoServer) -> None:
    east, west, primary, secondary = _clusters(server)
    replayed = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=42)
    ext.set_replication_probe(lambda: {primary: {"lag_s": None, "restorable_at": None},
                                       secondary: {"lag_s": 42.5, "restorable_at": replayed}})
    lag.publish_once()
    pts = _points(server, "us-west-2", secondary)
    assert [p["Maximum"] for p in pts] == [42500.0] and pts[0]["Unit"] == "Milliseconds"
    assert _points(server, "us-east-1", secondary) == [], "published in the secondary's region only"
    assert _points(server, "us-east-1", primary) == [], "a writer has no AuroraGlobalDBRPOLag"
    got = west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0]["LatestRestorableTime"]
    assert got.astimezone(dt.timezone.utc) == replayed
    writer = east.describe_db_clusters(DBClusterIdentifier=primary)["DBClusters"][0]["LatestRestorableTime"]
    assert abs((dt.datetime.now(dt.timezone.utc) - writer).total_seconds()) < 5, "a writer: now"

    # caught up: the restorable time is "now" again
    ext.set_replication_probe(lambda: {secondary: {"lag_s": 0.0, "restorable_at": None}})
    lag.publish_once()
    now_again = west.describe_db_clusters(DBClusterIdentifier=secondary)["DBClusters"][0]["LatestRestorableTime"]
    assert abs((dt.datetime.now(dt.timezone.utc) - now_again).total_seconds()) < 5


def test_a_failing_probe_round_publishes_nothing_and_the_publisher_survives(server: MotoServer) -> None:
    _east, _west, _primary, secondary = _clusters(server)
    calls = []

    def probe() -> dict[str, dict[str, Any]]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the standby did not answer")
        return {secondary: {"lag_s": 1.0, "restorable_at": None}}

    ext.set_replication_probe(probe)
    ext.start_lag_publisher(0.1)
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        while not _points(server, "us-west-2", secondary) and dt.datetime.now() < deadline:
            time.sleep(0.1)
    finally:
        ext.stop_lag_publisher()
    assert len(calls) >= 2 and [p["Maximum"] for p in _points(server, "us-west-2", secondary)] == [1000.0]
