"""Aurora: a stack's cluster, its global cluster and the calls that move the writer.

Functions take the stack's outputs (or, for a runbook that holds its own client, the RDS client)
and return plain values; failures of the calls a runbook cannot go on without are the project's
RecoveryErrors. Nothing here prints.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from botocore.parsers import ResponseParserError

from recovery.aws import aws_error, client, error_code
from recovery.errors import SiteNotReadyError
from recovery.stack import StackOutputs

# the error codes (besides a response botocore cannot parse) that say a call does not exist here
UNAVAILABLE_CODES = ("NotImplemented", "InvalidAction", "UnsupportedOperation")
DETACH_CALL = "remove_from_global_cluster (detach-and-promote fallback)"


def rds(outputs: StackOutputs) -> Any:
    return client("rds", outputs.region)


def _describe(call: Callable[..., Any], ident: str, *, kind: str, not_found: str) -> dict[str, Any] | None:
    """The one entry a Describe call returns for ``ident``, or None when RDS says ``not_found``."""
    try:
        return dict(call(**{f"{kind}Identifier": ident})[f"{kind}s"][0])
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == not_found:
            return None
        what = "cluster" if kind == "DBCluster" else "instance"
        raise aws_error(exc, f"describing {what} {ident}") from None


def describe_cluster(api: Any, ident: str) -> dict[str, Any] | None:
    """A DescribeDBClusters entry, or None when the cluster does not exist."""
    return _describe(api.describe_db_clusters, ident, kind="DBCluster", not_found="DBClusterNotFoundFault")


def describe_instance(api: Any, ident: str) -> dict[str, Any] | None:
    """A DescribeDBInstances entry, or None when the instance does not exist."""
    return _describe(api.describe_db_instances, ident, kind="DBInstance", not_found="DBInstanceNotFound")


def cluster_status(outputs: StackOutputs) -> str:
    """The stack's cluster status, or 'not found (<why>)' - a preflight reports it, never raises."""
    try:
        cl = rds(outputs).describe_db_clusters(DBClusterIdentifier=outputs.db_cluster_id)["DBClusters"][0]
    except Exception as exc:  # noqa: BLE001
        return f"not found ({error_code(exc) or exc})"
    return str(cl.get("Status", "?"))


def global_members(target: StackOutputs) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The global cluster and its members by cluster id (``{}`` when it does not exist)."""
    try:
        gcs = rds(target).describe_global_clusters(GlobalClusterIdentifier=target.global_cluster_id)["GlobalClusters"]
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "GlobalClusterNotFoundFault":
            return {}, {}
        raise
    gc = next((g for g in gcs if g.get("GlobalClusterIdentifier") == target.global_cluster_id), gcs[0] if gcs else {})
    members = {m["DBClusterArn"].split(":")[-1]: m for m in gc.get("GlobalClusterMembers", [])}
    return gc, members


def is_writer(target: StackOutputs) -> bool:
    """The stack's cluster is the global cluster's writer and the global cluster is available."""
    gc, members = global_members(target)
    m = members.get(target.db_cluster_id)
    if m is not None:
        return bool(m.get("IsWriter")) and gc.get("Status", "available") == "available"
    return False


def is_detached_writer(target: StackOutputs) -> bool:
    """Out of the global cluster and replicating from nothing: a detach-and-promote has happened."""
    _gc, members = global_members(target)
    if target.db_cluster_id in members:
        return False
    cl = describe_cluster(rds(target), target.db_cluster_id)
    return cl is not None and not cl.get("ReplicationSourceIdentifier")


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, ResponseParserError) or error_code(exc) in UNAVAILABLE_CODES


def promote(target: StackOutputs, mode: str, *, detach_fallback: bool,
            on_detach: Callable[[], None] = lambda: None) -> str:
    """Make the target the writer: ``switchover_global_cluster`` (no data loss) or
    ``failover_global_cluster(AllowDataLoss)``. When failover's call does not exist here, detach the
    target instead - only with ``detach_fallback`` (``on_detach`` runs first, to say so). Returns the call."""
    api = rds(target)
    gid, cluster = target.global_cluster_id, target.db_cluster_id
    try:
        start_promotion(api, mode, gid, cluster, target.db_cluster_arn)
        return f"{mode}_global_cluster"
    except Exception as exc:  # noqa: BLE001
        if not (_unavailable(exc) and mode == "failover"):
            raise
        if not detach_fallback:
            raise SiteNotReadyError(
                f"failover_global_cluster is unavailable here ({type(exc).__name__})",
                "rerun with --detach-fallback to detach the DR cluster from the global cluster instead") from None
    on_detach()
    api.remove_from_global_cluster(GlobalClusterIdentifier=gid, DbClusterIdentifier=target.db_cluster_arn)
    return DETACH_CALL


def start_promotion(api: Any, mode: str, gid: str, cluster: str, cluster_arn: str) -> None:
    """``switchover_global_cluster`` / ``failover_global_cluster(AllowDataLoss)`` to ``cluster``.

    A reply lost after RDS accepted the call (a read timeout while the region is in trouble) makes
    botocore retry, and RDS refuses the retry because the global cluster is now failing or switching
    over - to this very cluster. That refusal is the promotion we asked for, in progress: the caller
    goes on to wait for the writer. A promotion in flight to any other cluster is still an error."""
    try:
        if mode == "switchover":
            api.switchover_global_cluster(GlobalClusterIdentifier=gid, TargetDbClusterIdentifier=cluster)
        else:
            api.failover_global_cluster(GlobalClusterIdentifier=gid, TargetDbClusterIdentifier=cluster,
                                        AllowDataLoss=True)
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) != "InvalidGlobalClusterStateFault" or not _promoting_to(api, gid, cluster_arn):
            raise


def _promoting_to(api: Any, gid: str, cluster_arn: str) -> bool:
    try:
        gc = api.describe_global_clusters(GlobalClusterIdentifier=gid)["GlobalClusters"][0]
    except Exception:  # noqa: BLE001 - the refusal is then reported as it came
        return False
    state = gc.get("FailoverState") or {}
    return state.get("ToDbClusterArn") == cluster_arn and state.get("Status") != "cancelling"


def wait_for_writer(target: StackOutputs, is_promoted: Callable[[], object], *, timeout_s: float = 600,
                    interval_s: float = 2) -> None:
    """Poll ``is_promoted`` until it holds; SiteNotReadyError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not is_promoted():
        if time.monotonic() > deadline:
            raise SiteNotReadyError(f"{target.db_cluster_id} did not become the writer within {timeout_s:g}s",
                                    "check the RDS console")
        time.sleep(interval_s)


def cloudwatch_lag_s(target: StackOutputs) -> float | None:
    """CloudWatch ``AuroraGlobalDBReplicationLag`` of the target cluster in seconds (the newest
    datapoint of the last five minutes); None when there is none. Raises what CloudWatch raised."""
    now = datetime.now(timezone.utc)
    pts = client("cloudwatch", target.region).get_metric_statistics(
        Namespace="AWS/RDS", MetricName="AuroraGlobalDBReplicationLag",
        Dimensions=[{"Name": "DBClusterIdentifier", "Value": target.db_cluster_id}],
        StartTime=datetime.fromtimestamp(now.timestamp() - 300, timezone.utc), EndTime=now,
        Period=60, Statistics=["Maximum"]).get("Datapoints", [])
    if not pts:
        return None
    return float(max(pts, key=lambda p: p["Timestamp"])["Maximum"]) / 1000.0


__all__ = ["rds", "describe_cluster", "describe_instance", "cluster_status", "global_members", "is_writer",
           "is_detached_writer", "promote", "start_promotion", "wait_for_writer", "cloudwatch_lag_s", "DETACH_CALL"]
