"""ElastiCache: a replication group's nodes, TestFailover, and deleting a group, as AWS does them.

AWS: a cluster-mode-disabled group of NumCacheClusters nodes has one primary and NumCacheClusters-1
replicas (``NodeGroups[0].NodeGroupMembers``, each with ``CurrentRole`` and its own ``ReadEndpoint``);
``PrimaryEndpoint`` is a DNS name that follows whichever node is primary. ``TestFailover`` promotes a
replica of the node group (refused with InvalidReplicationGroupState when automatic failover is
disabled, or the group is not available; NodeGroupNotFoundFault for an unknown node group).
``DeleteReplicationGroup`` answers ``deleting`` and the group is gone shortly after, so the same id
can be created again.

moto 5.2.5: creates a single member whatever NumCacheClusters says (it reads ReplicasPerNodeGroup
only), has no TestFailover at all, and keeps a deleted group forever (``deleting``), so it can never
be recreated.

This extension: creates the missing replica members; adds TestFailover, which picks the first
replica, calls ``fn(group_id, old_primary_id, new_primary_id)`` registered with
``set_cache_failover_hook`` (the local environment promotes the real redis-server replica: a hook
exception refuses the call with InvalidReplicationGroupState and changes nothing), then swaps the
members' roles; makes DeleteReplicationGroup run ``fn(group_id)`` (``set_cache_delete_hook``) and
remove the group after answering; runs ``fn(group_id, token, node_count)`` on
CreateReplicationGroup (``set_cache_create_hook``: the local environment starts a fresh redis pair
for a recreated group); and fills each member's ``ReadEndpoint`` from ``fn(group_id)``
(``set_cache_nodes_hook``: {cache_cluster_id: (host, port)}) so a runbook can probe every node.
Every failover is recorded (``cache_failover_calls()``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from recovery.local.emulator.records import LOCK, now, patch, persist, wrap

HOOKS: dict[str, Optional[Callable[..., Any]]] = {"failover": None, "delete": None, "create": None, "nodes": None}
FAILOVERS: list[dict[str, Any]] = []


def set_cache_failover_hook(fn: Optional[Callable[[str, str, str], Any]]) -> None:
    HOOKS["failover"] = fn


def set_cache_delete_hook(fn: Optional[Callable[[str], Any]]) -> None:
    HOOKS["delete"] = fn


def set_cache_create_hook(fn: Optional[Callable[[str, Optional[str], int], Any]]) -> None:
    HOOKS["create"] = fn


def set_cache_nodes_hook(fn: Optional[Callable[[str], dict[str, tuple[str, int]]]]) -> None:
    HOOKS["nodes"] = fn


def cache_failover_calls() -> list[dict[str, Any]]:
    """Every TestFailover: time, region, replication_group_id, node_group_id, from, to, outcome, error."""
    with LOCK:
        return [dict(c) for c in FAILOVERS]


def install() -> None:
    from moto.elasticache.responses import ElastiCacheResponse

    wrap(ElastiCacheResponse, "create_replication_group", _create_replication_group)
    wrap(ElastiCacheResponse, "describe_replication_groups", _describe_replication_groups)
    wrap(ElastiCacheResponse, "delete_replication_group", _delete_replication_group)
    patch(ElastiCacheResponse, "test_failover", _test_failover)
    from moto.moto_api._internal.models import MotoAPIBackend

    wrap(MotoAPIBackend, "reset", _reset)


def _reset(orig: Callable[..., Any], backend: Any) -> None:
    """POST /moto-api/reset clears the failover records too, like the other extensions' records."""
    orig(backend)
    with LOCK:
        FAILOVERS.clear()


def _error(code: str, message: str) -> Exception:
    from recovery.local.emulator.elasticache_auth import _error as auth_error

    return auth_error(code, message)


def _members(group: Any) -> list[dict[str, Any]]:
    groups = getattr(group, "node_groups", None) or [{}]
    return list(groups[0].get("node_group_members") or [])


def _create_replication_group(orig: Callable[..., Any], resp: Any) -> Any:
    gid = resp._get_param("ReplicationGroupId")
    count = resp._get_int_param("NumCacheClusters") or 1
    result = orig(resp)
    group = resp.elasticache_backend.replication_groups.get(gid)
    if group is not None and group.cluster_mode != "enabled":
        _add_replicas(group, count)
    hook = HOOKS["create"]
    if hook is not None:
        try:
            hook(gid, resp._get_param("AuthToken"), count)
        except Exception as exc:
            resp.elasticache_backend.replication_groups.pop(gid, None)
            raise _error("InvalidReplicationGroupState",
                         f"could not start the nodes of {gid}: {exc.__class__.__name__}") from None
    return result


def _add_replicas(group: Any, count: int) -> None:
    ng = group.node_groups[0]
    members = ng["node_group_members"]
    first = members[0]
    domain = first["read_endpoint"]["address"].split(".", 1)[1]
    azs = [m.get("preferred_availability_zone") for m in members]
    for n in range(len(members) + 1, count + 1):
        cid = f"{group.replication_group_id}-{n:03d}"
        members.append({"cache_cluster_id": cid, "cache_node_id": ng["node_group_id"], "current_role": "replica",
                        "read_endpoint": {"address": f"{cid}.{domain}", "port": group.port},
                        "preferred_availability_zone": azs[-1] or "us-east-1b"})
        group.member_clusters.append(cid)


def _describe_replication_groups(orig: Callable[..., Any], resp: Any) -> Any:
    hook = HOOKS["nodes"]
    if hook is not None:
        for gid, group in list(resp.elasticache_backend.replication_groups.items()):
            try:
                nodes = hook(gid) or {}
            except Exception:  # noqa: BLE001 - a describe never fails for the local backing's sake
                nodes = {}
            for m in _members(group):
                if m.get("cache_cluster_id") in nodes:
                    host, port = nodes[m["cache_cluster_id"]]
                    m["read_endpoint"] = {"address": host, "port": int(port)}
    return orig(resp)


def _delete_replication_group(orig: Callable[..., Any], resp: Any) -> Any:
    gid = resp._get_param("ReplicationGroupId")
    result = orig(resp)  # raises ReplicationGroupNotFoundFault for an unknown id
    hook = HOOKS["delete"]
    if hook is not None:
        hook(gid)
    # AWS removes the group once its nodes are gone; the answer above still says `deleting`
    resp.elasticache_backend.replication_groups.pop(gid, None)
    return result


def _test_failover(resp: Any) -> Any:
    from moto.core.responses import ActionResult

    gid = resp._get_param("ReplicationGroupId")
    ngid = resp._get_param("NodeGroupId")
    group = resp.elasticache_backend.replication_groups.get(gid)
    if group is None:
        from moto.elasticache.exceptions import ReplicationGroupNotFound

        raise ReplicationGroupNotFound(gid)
    if not ngid or ngid not in [ng.get("node_group_id") for ng in group.node_groups]:
        raise _error("NodeGroupNotFoundFault", f"Node group {ngid} not found in {gid}.")
    if group.automatic_failover != "enabled" or group.status != "available":
        raise _error("InvalidReplicationGroupState",
                     f"Replication group {gid} must be available with automatic failover enabled.")
    members = _members(group)
    primary = next((m for m in members if m.get("current_role") == "primary"), None)
    replica = next((m for m in members if m.get("current_role") == "replica"), None)
    if primary is None or replica is None:
        raise _error("TestFailoverNotAvailableFault", f"Replication group {gid} has no replica to promote.")
    entry = {"time": now(), "region": resp.region, "replication_group_id": gid, "node_group_id": ngid,
             "from": primary["cache_cluster_id"], "to": replica["cache_cluster_id"], "outcome": "ok", "error": None}
    with LOCK:
        FAILOVERS.append(entry)
    try:
        hook = HOOKS["failover"]
        if hook is not None:
            hook(gid, primary["cache_cluster_id"], replica["cache_cluster_id"])
    except Exception as exc:
        entry["outcome"], entry["error"] = "error", exc.__class__.__name__
        raise _error("InvalidReplicationGroupState",
                     f"could not fail over {gid}: {exc.__class__.__name__}") from None
    finally:
        persist("cache_failover", entry)
    primary["current_role"], replica["current_role"] = "replica", "primary"
    group.primary_cluster_id = replica["cache_cluster_id"]
    return ActionResult({"ReplicationGroup": group})
