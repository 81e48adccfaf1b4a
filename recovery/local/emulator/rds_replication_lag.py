"""RDS: an Aurora global database's replication lag metric and LatestRestorableTime, from real standbys.

AWS: RDS publishes ``AuroraGlobalDBRPOLag`` (namespace ``AWS/RDS``, milliseconds, dimension
``DBClusterIdentifier``) for each SECONDARY cluster of a global database, in the secondary's region,
about once a minute: how far the secondary's last recovery point trails the primary. It is RDS's own
publication (no caller, no IAM). DescribeDBClusters answers each cluster's ``LatestRestorableTime``,
the newest point a point-in-time restore of that cluster can reach.

moto 5.2.5: nothing publishes the metric (GetMetricStatistics answers no datapoints), and
``LatestRestorableTime`` is always "now".

This extension: the local environment's daemon registers a replication probe
(``set_replication_probe(fn)``; ``fn()`` returns ``{cluster_id: {"lag_s": float | None,
"restorable_at": datetime | None}}`` measured on the real PostgreSQL sites, recovery/local/replication_lag.py)
and starts ``start_publisher(interval_s)``. Each round calls the probe once and

- puts one ``AuroraGlobalDBRPOLag`` datum (ms, unit Milliseconds) per cluster whose ``lag_s`` is
  not None (a standby: the probe gives a writer or a fenced site no lag) into moto's CloudWatch
  backend of the region that holds the cluster, as RDS publishes it - straight into the backend,
  not through the API, so no role and no region outage is involved;
- keeps the probe's ``restorable_at`` per cluster (a standby behind its writer: its last replayed
  commit): DescribeDBClusters answers it as ``LatestRestorableTime`` while the round is fresh (3
  intervals); a writer, a caught-up standby (``restorable_at`` None) or a stale round get moto's "now".

It publishes every few seconds rather than each minute, so a reader that takes the newest minute's
Maximum (recovery/reports/replication_rpo.py, the alarms of infra/replication_alarms.py) sees a
change within a minute, as on AWS. ``publish_once()`` runs one round (tests).
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Any, Callable, Optional

from recovery.local.emulator.records import LOCK, patch

METRIC, NAMESPACE = "AuroraGlobalDBRPOLag", "AWS/RDS"
_PROBE: dict[str, Optional[Callable[[], dict[str, dict[str, Any]]]]] = {"fn": None}
# cluster id -> (monotonic time of the round, restorable_at)
_RESTORABLE: dict[str, tuple[float, _dt.datetime]] = {}
_PUBLISHER: dict[str, Any] = {"thread": None, "stop": None, "interval": 5.0}


def install() -> None:
    from moto.rds.models import DBCluster

    original = DBCluster.__dict__["latest_restorable_time"]
    patch(DBCluster, "latest_restorable_time", property(lambda c: _latest_restorable_time(original, c)))


def set_replication_probe(fn: Optional[Callable[[], dict[str, dict[str, Any]]]]) -> None:
    _PROBE["fn"] = fn


def _latest_restorable_time(original: Any, cluster: Any) -> _dt.datetime:
    with LOCK:
        seen = _RESTORABLE.get(cluster.db_cluster_identifier)
    if seen is not None and time.monotonic() - seen[0] <= 3 * float(_PUBLISHER["interval"]):
        return seen[1]
    return original.fget(cluster)  # type: ignore[no-any-return]


def _naive_utc(t: _dt.datetime) -> _dt.datetime:
    """moto keeps naive UTC datetimes (its serializer adds the zone)."""
    return t.astimezone(_dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _regions_of(cluster_ids: set[str]) -> dict[str, tuple[str, str]]:
    """cluster id -> (account, region) of the moto backend that holds it."""
    from moto.rds.models import rds_backends

    out = {}
    for account in list(rds_backends.keys()):
        for region in list(rds_backends[account].keys()):
            for cid in list(rds_backends[account][region].clusters):
                if cid in cluster_ids:
                    out[cid] = (account, region)
    return out


def publish_once() -> dict[str, dict[str, Any]]:
    """One round: probe, publish each standby's lag in its region, keep the restorable times."""
    from moto.cloudwatch.models import MetricDatum, cloudwatch_backends

    fn = _PROBE["fn"]
    readings = fn() if fn else {}
    where = _regions_of(set(readings))
    with LOCK:
        for cid, r in readings.items():
            if r.get("restorable_at") is not None:
                _RESTORABLE[cid] = (time.monotonic(), _naive_utc(r["restorable_at"]))
            else:
                _RESTORABLE.pop(cid, None)  # caught up, or a writer: moto's "now" is the truth
            if r.get("lag_s") is None or cid not in where:
                continue
            account, region = where[cid]
            cloudwatch_backends[account][region].metric_data.append(MetricDatum(
                NAMESPACE, METRIC, round(float(r["lag_s"]) * 1000.0, 1),
                [{"Name": "DBClusterIdentifier", "Value": cid}], None, "Milliseconds"))  # None: moto's own (naive UTC) now
    return readings


def start_publisher(interval_s: float = 5.0) -> None:
    """Publish on a daemon thread every ``interval_s`` until ``stop_publisher()``; a failed probe round
    publishes nothing (the metric goes missing, as when RDS cannot measure)."""
    stop_publisher()
    stop = threading.Event()
    _PUBLISHER.update(stop=stop, interval=interval_s)

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                publish_once()
            except Exception:  # noqa: BLE001 - one bad round must not end the publication
                pass

    t = threading.Thread(target=loop, name="rds-replication-lag", daemon=True)
    _PUBLISHER["thread"] = t
    t.start()


def stop_publisher() -> None:
    if _PUBLISHER["stop"] is not None:
        _PUBLISHER["stop"].set()
        _PUBLISHER["thread"].join(timeout=10)
    _PUBLISHER.update(stop=None, thread=None)


__all__ = ["install", "set_replication_probe", "publish_once", "start_publisher", "stop_publisher", "METRIC"]
