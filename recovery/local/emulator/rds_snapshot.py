"""RDS: RestoreDBClusterFromSnapshot as AWS does it.

AWS: RestoreDBClusterFromSnapshot(DBClusterIdentifier, SnapshotIdentifier, Engine, ...) makes a new
*standalone* cluster from a cluster snapshot: manual, automated, or an AWS Backup recovery point of
an Aurora cluster (SnapshotType ``awsbackup``, whose ARN is the recovery point's ARN).
SnapshotIdentifier is the snapshot's identifier or its ARN (an ARN is the only way to name a snapshot
shared from another account). The cluster is what the snapshot captured, not what the source is now.

moto 5.2.5: an ARN is not found (DBClusterSnapshotNotFoundFault); the new cluster is built from the
snapshot's copy of the source with ``get_cfg()``, which raises KeyError (HTTP 500) for a cluster
whose password moto never stored (a global secondary), and otherwise copies the source's
global-cluster membership and replication source, so the copy joins the global cluster (as moto's
point-in-time restore does, see rds_global).

This extension: a snapshot ARN of this account and region is resolved to its snapshot; the copy is
made from the snapshot's attributes the way moto's point-in-time restore makes one, standalone
(no global cluster, no replication source), with the master user AWS would carry over
(rds_global.standalone_credentials); the request's parameters override, as in moto.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from recovery.local.emulator.rds_global import standalone_credentials
from recovery.local.emulator.records import wrap

# what cannot be copied from the captured cluster (moto's own PITR skips the same)
_NOT_COPIED = ("backend", "db_subnet_group", "vpc_security_group_ids", "members", "tags")


def install() -> None:
    from moto.rds.models import RDSBackend

    wrap(RDSBackend, "restore_db_cluster_from_snapshot", _restore_db_cluster_from_snapshot)


def _snapshot_id(backend: Any, ident: str) -> str:
    """An identifier for moto: the ARN of one of this backend's snapshots becomes its identifier."""
    if ident.startswith("arn:"):
        for sid, snap in backend.cluster_snapshots.items():
            if getattr(snap, "arn", None) == ident:
                return str(sid)
    return ident


def _restore_db_cluster_from_snapshot(orig: Callable[..., Any], backend: Any, from_snapshot_id: str,
                                      overrides: dict[str, Any]) -> Any:
    ident = _snapshot_id(backend, from_snapshot_id)
    # moto's own lookup (and its DBClusterSnapshotNotFoundFault for an unknown one)
    snap = backend.describe_db_cluster_snapshots(db_cluster_identifier=None, db_snapshot_identifier=ident)[0]
    captured = snap.cluster
    props: dict[str, Any] = {}
    for key, value in captured.__dict__.items():
        key = key[1:] if key.startswith("_") else key
        if key not in _NOT_COPIED:
            props[key] = copy.copy(value)
    props["global_cluster_identifier"] = None
    props["replication_source_identifier"] = None
    for key in ("master_username", "master_user_password"):
        if not props.get(key):
            props.pop(key, None)  # so that the credentials AWS carries over fill them
    # the live source when it still exists: rds_global finds a global member's master user through it
    standalone_credentials(backend, backend.clusters.get(captured.db_cluster_identifier) or captured, props)
    for key, value in overrides.items():
        if value and key != "snapshot_identifier":
            props[key] = value
    return backend.create_db_cluster(props)
