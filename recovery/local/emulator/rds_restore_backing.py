"""RDS: a restored cluster that answers SQL at its endpoint, with the data of its restore time.

AWS: RestoreDBClusterToPointInTime and RestoreDBClusterFromSnapshot create a cluster whose storage
holds the source's data as of RestoreToTime (or LatestRestorableTime with UseLatestRestorableTime) /
the snapshot's SnapshotCreateTime. DescribeDBClusters answers its own Endpoint and ReaderEndpoint
host names and its Port; clients connect there.

moto 5.2.5: the new cluster is a record; its endpoints are made-up host names nothing listens on.

This extension: a restore backing hook (``set_restore_backing_hook(fn)``, installed by the local
environment's daemon, recovery/local/restored_clusters.py) is called after moto made the cluster as
``fn(source_cluster_id, new_cluster_id, restore_time)`` and returns the ``(host, port)`` of a real
server holding that data, or None (no backing: the cluster stays a record, as without the hook).
A backed cluster's Endpoint and ReaderEndpoint are that host and its Port that port. The hook runs
inside the call (the server is up when the call returns; AWS's cluster is "creating" for minutes,
which the runbooks wait out anyway). A hook that raises leaves the cluster a record (logged): the
restore call itself succeeded, as on AWS, and failing it would only make the client's retry meet the
cluster moto already made.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from recovery.local.emulator.records import LOCK, patch, wrap

log = logging.getLogger(__name__)
Backing = Callable[[str, str, datetime], Optional[tuple[str, int]]]
_HOOK: dict[str, Optional[Backing]] = {"fn": None}
_BACKED: dict[str, str] = {}  # new cluster id -> the host that backs it


def set_restore_backing_hook(fn: Optional[Backing]) -> None:
    _HOOK["fn"] = fn


def install() -> None:
    from moto.rds.models import DBCluster, RDSBackend

    wrap(RDSBackend, "restore_db_cluster_to_point_in_time", _restore_to_point_in_time)
    wrap(RDSBackend, "restore_db_cluster_from_snapshot", _restore_from_snapshot)
    for name in ("endpoint", "reader_endpoint"):
        original = DBCluster.__dict__[name]
        patch(DBCluster, name, property(lambda c, o=original: _BACKED.get(c.db_cluster_identifier) or o.fget(c)))


def _back(cluster: Any, source_id: str, when: datetime) -> Any:
    fn = _HOOK["fn"]
    if fn is None:
        return cluster
    try:
        where = fn(source_id, cluster.db_cluster_identifier, when.astimezone(timezone.utc))
    except Exception:  # noqa: BLE001 - see the module docstring
        log.exception("no server backs restored cluster %s", cluster.db_cluster_identifier)
        return cluster
    if where is not None:
        with LOCK:
            _BACKED[cluster.db_cluster_identifier] = where[0]
        cluster.port = where[1]
    return cluster


def _restore_to_point_in_time(orig: Callable[..., Any], backend: Any, db_cluster_identifier: str,
                              source_db_cluster_identifier: str, *args: Any, **kwargs: Any) -> Any:
    cluster = orig(backend, db_cluster_identifier, source_db_cluster_identifier, *args, **kwargs)
    when = kwargs.get("restore_to_time")
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if not isinstance(when, datetime):  # UseLatestRestorableTime
        when = datetime.now(timezone.utc)
    return _back(cluster, source_db_cluster_identifier, _utc(when))


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _restore_from_snapshot(orig: Callable[..., Any], backend: Any, from_snapshot_id: str,
                           overrides: dict[str, Any]) -> Any:
    cluster = orig(backend, from_snapshot_id, overrides)
    ident = from_snapshot_id.lower()
    snaps = [s for s in backend.cluster_snapshots.values()
             if ident in (s.db_cluster_snapshot_identifier, str(getattr(s, "arn", "")).lower())]
    if not snaps:
        return cluster
    return _back(cluster, snaps[0].db_cluster_identifier, _utc(snaps[0].snapshot_create_time))


__all__ = ["set_restore_backing_hook", "install"]
