"""RDS: global cluster failover/switchover, cross-region detach, the describe ID filter, and the
master-password hook that makes a rotation reach a real database.

Global clusters. AWS: FailoverGlobalCluster(AllowDataLoss=True) promotes a secondary at once
(unplanned, may lose the replication lag); without AllowDataLoss, or with Switchover=True, and
with SwitchoverGlobalCluster, it is a planned switchover without data loss. The global cluster
reports 'failing-over'/'switching-over' (plus FailoverState) and then 'available';
DescribeGlobalClusters then lists the target with IsWriter=True and the old primary as a reader
member, and DescribeDBClusters shows the secondaries' ReplicationSourceIdentifier pointing at the
new writer. RemoveFromGlobalCluster works from any region and makes the member a standalone
cluster. DescribeGlobalClusters honours GlobalClusterIdentifier (GlobalClusterNotFoundFault when
unknown).

moto 5.2.5: FailoverGlobalCluster and SwitchoverGlobalCluster raise NotImplementedError (HTTP 500
with HTML, botocore ResponseParserError). RemoveFromGlobalCluster looks up the global cluster in
the *request's* region while moto keeps every global cluster in the us-east-1 backend, so for a
us-west-2 member it silently does nothing (and deleting a us-west-2 member leaves it listed).
DescribeGlobalClusters ignores its ID filter. Secondaries show no ReplicationSourceIdentifier.
RestoreDBClusterToPointInTime copies the source's global cluster and replication source (AWS makes
a standalone cluster), so the restored copy becomes a global member and the source's replica.

This extension: adds both actions to RDSResponse. Each call is journaled (``promotion_calls()``),
including refused ones. The status goes to 'failing-over'/'switching-over' (also the state
returned by the call itself), the promotion hook runs (``set_promotion_hook``; on exception
nothing changes and the client gets InvalidGlobalClusterStateFault), then the writer flag moves,
secondaries' replication source is re-pointed, and the status is 'available' again before the
response is sent (the transition is collapsed). Errors: unknown global cluster
(GlobalClusterNotFoundFault), target not a member (DBClusterNotFoundFault), target already the
writer (InvalidDBClusterStateFault), status not available (InvalidGlobalClusterStateFault),
AllowDataLoss with Switchover (InvalidParameterCombination). RemoveFromGlobalCluster and
DeleteDBCluster find the global cluster wherever moto keeps it; DescribeGlobalClusters filters by
id or ARN. A point-in-time restore is standalone.

Master password. AWS: modify_db_cluster(MasterUserPassword=..., ApplyImmediately) changes the
cluster's master password within seconds; old connections stay open, new logins need the new
password. moto 5.2.5 stores the attribute; nothing else changes. This extension: after moto
accepted the modification, calls the hook registered with ``set_master_password_hook`` as
``fn(cluster_id, new_password)`` (the local environment runs ALTER ROLE on its PostgreSQL) and
records the call (password as fingerprint only). If the hook raises, the client gets
InvalidDBClusterStateFault and the record says outcome 'error'.

Both live here because both patch RDSResponse and share its error type; moto is imported only
when an extension is installed (it is a development dependency, not the CLI's).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from recovery.local.emulator.records import HOOKS, LOCK, RECORDS, fingerprint, now, patch, persist, run_hook, wrap


def install_global_failover() -> None:
    from moto.rds.models import RDSBackend
    from moto.rds.responses import RDSResponse

    patch(RDSResponse, "failover_global_cluster", _failover_global_cluster)
    patch(RDSResponse, "switchover_global_cluster", _switchover_global_cluster)
    patch(RDSResponse, "describe_global_clusters", _describe_global_clusters)
    patch(RDSResponse, "remove_from_global_cluster", _remove_from_global_cluster)
    wrap(RDSBackend, "create_db_cluster", _create_db_cluster)
    wrap(RDSBackend, "delete_db_cluster", _delete_db_cluster)
    wrap(RDSBackend, "restore_db_cluster_to_point_in_time", _restore_db_cluster_to_point_in_time)


def install_master_password_hook() -> None:
    from moto.rds.responses import RDSResponse

    wrap(RDSResponse, "modify_db_cluster", _modify_db_cluster)


# -- the patched calls --------------------------------------------------------------------------


def _failover_global_cluster(resp: Any) -> Any:
    return _promote(resp, "FailoverGlobalCluster")


def _switchover_global_cluster(resp: Any) -> Any:
    return _promote(resp, "SwitchoverGlobalCluster")


def _describe_global_clusters(resp: Any) -> Any:
    from moto.core.responses import ActionResult

    gid = resp._get_param("GlobalClusterIdentifier")
    if gid:
        clusters = [_find_global(resp.current_account, gid)]
    else:
        clusters = resp.global_backend.describe_global_clusters()
    return ActionResult({"GlobalClusters": clusters})


def _remove_from_global_cluster(resp: Any) -> Any:
    from moto.core.responses import ActionResult

    gid = resp._get_param("GlobalClusterIdentifier")
    member_id = resp._get_param("DbClusterIdentifier")
    with LOCK:
        gc = _find_global(resp.current_account, gid)
        member = _find_member(gc, member_id)
        _detach(gc, member)
    return ActionResult({"GlobalCluster": gc})


def _create_db_cluster(orig: Callable[..., Any], backend: Any, kwargs: dict[str, Any]) -> Any:
    cluster = orig(backend, kwargs)
    if cluster.global_cluster_identifier:
        with LOCK:
            gc = _global_of(backend.account_id, cluster)
            if gc is not None:
                _sync_topology(gc)
    return cluster


def _restore_db_cluster_to_point_in_time(orig: Callable[..., Any], backend: Any, *args: Any,
                                         **kwargs: Any) -> Any:
    """AWS restores into a standalone cluster; moto copies the source's global-cluster membership
    and replication source, so the copy joined the global cluster and showed up among the source's
    read replicas."""
    kwargs["global_cluster_identifier"] = None
    kwargs["replication_source_identifier"] = None
    source_id = kwargs.get("source_db_cluster_identifier") or (args[1] if len(args) > 1 else None)
    source = backend.clusters.get(str(source_id or "").lower())
    if source is not None:
        standalone_credentials(backend, source, kwargs)
    return orig(backend, *args, **kwargs)


def standalone_credentials(backend: Any, source: Any, kwargs: dict[str, Any]) -> None:
    """The master user a standalone copy of ``source`` gets (restores: PITR here, snapshots in rds_snapshot)."""
    if not source.master_username:
        # moto keeps no master user for a secondary created as a global member and refuses a
        # standalone cluster without one; on AWS every member has the primary's master user.
        with LOCK:
            gc = _global_of(backend.account_id, source)
            users = [m.master_username for m in (gc.members if gc else []) if m.master_username]
        kwargs.setdefault("master_username", users[0] if users else "postgres")
    if not getattr(source, "_master_user_password", None):
        # Likewise for the password, which moto never stores for a global member.
        kwargs.setdefault("master_user_password", "carried-over-from-source")


def _delete_db_cluster(orig: Callable[..., Any], backend: Any, cluster_identifier: str,
                       snapshot_name: Optional[str] = None) -> Any:
    cluster = backend.clusters.get(cluster_identifier)
    if cluster is not None and not cluster.deletion_protection and not cluster.members:
        with LOCK:
            gc = _global_of(backend.account_id, cluster)
            if gc is not None:
                _detach(gc, cluster)
    return orig(backend, cluster_identifier, snapshot_name)


def _modify_db_cluster(orig: Callable[..., Any], resp: Any) -> Any:
    password = resp._get_param("MasterUserPassword")
    cluster_id = resp._get_param("DBClusterIdentifier")  # read first: moto pops params
    result = orig(resp)
    if password is None:
        return result
    entry = {"time": now(), "region": resp.region, "cluster_id": cluster_id,
             "password_fingerprint": fingerprint(password), "outcome": "ok", "error": None}
    with LOCK:
        RECORDS.master_passwords.append(entry)
    run_hook("master_password", entry, (cluster_id, password), lambda exc: _error(
        "InvalidDBClusterStateFault",
        f"could not apply the new master password to {cluster_id}: {exc.__class__.__name__}"))
    return result


# -- global cluster model -----------------------------------------------------------------------


def _error(code: str, message: str) -> Exception:
    from moto.rds.exceptions import RDSClientError

    return RDSClientError(code, message)


def _global_backend(account: str) -> Any:
    from moto.rds.models import rds_backends

    return rds_backends[account]["us-east-1"]  # where moto keeps every global cluster


def _find_global(account: str, ident: str) -> Any:
    gcs = _global_backend(account).global_clusters
    if ident in gcs:
        return gcs[ident]
    for gc in gcs.values():
        if gc.global_cluster_arn == ident:
            return gc
    raise _error("GlobalClusterNotFoundFault", f"Global cluster {ident} not found.")


def _find_member(gc: Any, ident: str) -> Any:
    for member in gc.members:
        if ident.lower() in (member.db_cluster_identifier.lower(), member.db_cluster_arn.lower()):
            return member
    raise _error("DBClusterNotFoundFault",
                 f"DBCluster {ident} is not a member of global cluster "
                 f"{gc.global_cluster_identifier}.")


def _sync_topology(gc: Any) -> None:
    """Writer first; secondaries replicate from the writer, as DescribeDBClusters shows on AWS."""
    writers = [m for m in gc.members if m.is_writer]
    if not writers:
        return
    writer = writers[0]
    gc.members.sort(key=lambda m: not m.is_writer)
    readers = [m for m in gc.members if m is not writer]
    writer.replication_source_identifier = None
    writer.read_replica_identifiers = [m.db_cluster_arn for m in readers]
    for m in readers:
        m.replication_source_identifier = writer.db_cluster_arn
        m.read_replica_identifiers = [a for a in m.read_replica_identifiers
                                      if a != writer.db_cluster_arn]


def _global_of(account: str, cluster: Any) -> Any:
    for gc in _global_backend(account).global_clusters.values():
        if any(m is cluster for m in gc.members):
            return gc
    return None


def _detach(gc: Any, cluster: Any) -> None:
    gc.members[:] = [m for m in gc.members if m is not cluster]
    cluster.global_cluster_identifier = None
    was_writer = cluster.is_writer
    cluster.is_writer = False
    cluster.replication_source_identifier = None
    cluster.read_replica_identifiers = []
    for m in gc.members:
        m.read_replica_identifiers = [a for a in m.read_replica_identifiers
                                      if a != cluster.db_cluster_arn]
        if m.replication_source_identifier == cluster.db_cluster_arn:
            m.replication_source_identifier = None
    if was_writer and gc.members and not any(m.is_writer for m in gc.members):
        gc.members[0].is_writer = True
    _sync_topology(gc)


# -- promotion: journal, begin, hook, move the writer -------------------------------------------


def _promote(resp: Any, action: str) -> Any:
    from moto.core.responses import ActionResult

    entry = _journal(resp, action)
    try:
        gc, old, new, in_progress = _begin(resp, entry)
        _run_promotion_hook(gc, new)
        with LOCK:
            if old is not None:
                old.is_writer = False
            new.is_writer = True
            _sync_topology(gc)
            gc.status = "available"
            gc.failover_state = None
            entry["outcome"] = "ok"
        return ActionResult({"GlobalCluster": in_progress})
    except Exception as exc:
        with LOCK:
            entry["outcome"] = "error"
            entry["error"] = str(getattr(exc, "message", None) or exc)
        raise
    finally:
        persist("promotion", entry)


def _journal(resp: Any, action: str) -> dict[str, Any]:
    """The call's record, appended before anything is checked: refused calls are journaled too."""
    allow_data_loss = str(resp._get_param("AllowDataLoss", False)).lower() == "true"
    if action == "SwitchoverGlobalCluster":
        mode = "switchover"
    else:
        mode = "failover" if allow_data_loss else "switchover"
    entry: dict[str, Any] = {
        "seq": 0, "time": now(), "action": action, "mode": mode,
        "global_cluster_id": resp._get_param("GlobalClusterIdentifier"),
        "target": resp._get_param("TargetDbClusterIdentifier"), "target_cluster_id": None,
        "from_cluster_id": None, "allow_data_loss": allow_data_loss,
        "region": resp.region, "outcome": "running", "error": None,
    }
    with LOCK:
        entry["seq"] = len(RECORDS.promotions) + 1
        RECORDS.promotions.append(entry)
    return entry


def _begin(resp: Any, entry: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """Validate and put the global cluster in 'failing-over'/'switching-over'.

    Returns (global cluster, old writer, new writer, a copy of the in-progress state)."""
    gid, target, allow_data_loss = entry["global_cluster_id"], entry["target"], entry["allow_data_loss"]
    if allow_data_loss and str(resp._get_param("Switchover", False)).lower() == "true":
        raise _error("InvalidParameterCombination",
                     "AllowDataLoss and Switchover can't be specified together.")
    if not gid or not target:
        raise _error("InvalidParameterValue",
                     "GlobalClusterIdentifier and TargetDbClusterIdentifier are required.")
    with LOCK:
        gc = _find_global(resp.current_account, gid)
        new = _find_member(gc, target)
        old = next((m for m in gc.members if m.is_writer), None)
        entry["target_cluster_id"] = new.db_cluster_identifier
        entry["from_cluster_id"] = old.db_cluster_identifier if old else None
        if gc.status != "available":
            raise _error("InvalidGlobalClusterStateFault",
                         f"Global cluster {gc.global_cluster_identifier} is in {gc.status} state.")
        if new is old:
            raise _error("InvalidDBClusterStateFault",
                         f"DBCluster {entry['target_cluster_id']} is already the "
                         "primary cluster of the global cluster.")
        status = "failing-over" if entry["mode"] == "failover" else "switching-over"
        gc.status = status
        gc.failover_state = {
            "Status": status,
            "FromDbClusterArn": old.db_cluster_arn if old else None,
            "ToDbClusterArn": new.db_cluster_arn,
            "IsDataLossAllowed": allow_data_loss,
        }
        in_progress = copy.copy(gc)  # what the call answers: the in-progress state
        in_progress.members = [copy.copy(m) for m in gc.members]
    return gc, old, new, in_progress


def _run_promotion_hook(gc: Any, new: Any) -> None:
    """The hook acts on the real database; if it fails, the global cluster is as it was."""
    hook = HOOKS["promotion"]
    try:
        if hook is not None:
            hook(new.db_cluster_identifier)
    except Exception as exc:
        with LOCK:
            gc.status = "available"
            gc.failover_state = None
        raise _error("InvalidGlobalClusterStateFault",
                     f"promotion of {new.db_cluster_identifier} failed: {exc}") from exc
