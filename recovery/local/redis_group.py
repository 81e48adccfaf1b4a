"""What the emulator's ElastiCache control plane does to the local redis-servers, and a drill's damage.

The emulator's hooks (recovery/local/emulator/elasticache_failover.py, wired in aws_daemon.py) call
these in the emulator's process, as AWS's control plane acts on a group's nodes:

- :func:`failover` (TestFailover): ``REPLICAOF NO ONE`` on the replica being promoted, then the old
  primary follows it: ``REPLICAOF`` when it still runs, else it is replaced (started again from its
  own config, which holds the current tokens, as a replica of the new primary), as ElastiCache
  replaces a failed node. ``redis.json`` then names the new primary, so the primary endpoint moves.
  The replica must answer first, else the call is refused and nothing changes.
- :func:`delete` (DeleteReplicationGroup): the nodes stop; the primary endpoint stays (its name is
  the group id's, so a group created again under the same id answers there).
- :func:`create` (CreateReplicationGroup): for a group the environment already backs (a recreate
  after the whole group was lost) a fresh, empty pair starts with the token the call carries.
  At `local up` nothing is backed yet: redis_cache.start_redis starts the first pair.
- :func:`node_endpoints`: each member's real address, for DescribeReplicationGroups.

:func:`kill_nodes` is the drills' damage: SIGKILL the primary's, the replica's or every node's
redis-server.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from recovery.local.redis_cache import (HOST, admin_call, node_answers, read_cfg, set_replicaof, spawn_node,
                                        start_group, wait_replicas_linked, write_cfg)
from recovery.processes import pid_alive, stop_pid


def node_endpoints(state_dir: Path, group_id: str) -> dict[str, tuple[str, int]]:
    cfg = read_cfg(state_dir)
    if not cfg or cfg.get("group_id") != group_id:
        return {}
    return {cid: (HOST, int(n["port"])) for cid, n in cfg["nodes"].items()}


def failover(state_dir: Path, group_id: str, old_primary: str, new_primary: str) -> None:
    cfg = read_cfg(state_dir)
    if not cfg or cfg.get("group_id") != group_id:
        return  # a group no redis-server backs: swapping the roles is all there is
    pw = cfg["admin_password"]
    new, old = cfg["nodes"][new_primary], cfg["nodes"][old_primary]
    if not node_answers(int(new["port"]), pw):
        raise RuntimeError(f"replica {new_primary} does not answer")
    admin_call(int(new["port"]), pw, "REPLICAOF", "NO", "ONE")
    admin_call(int(new["port"]), pw, "CONFIG", "REWRITE")
    cfg["primary"] = new_primary
    write_cfg(state_dir, cfg)  # the endpoint follows from here on
    conf = state_dir / "redis" / old_primary / "redis.conf"
    if pid_alive(old.get("pid")) and node_answers(int(old["port"]), pw):
        admin_call(int(old["port"]), pw, "REPLICAOF", HOST, str(new["port"]))
        admin_call(int(old["port"]), pw, "CONFIG", "REWRITE")
    else:
        stop_pid(old.get("pid"), timeout=2)
        set_replicaof(conf, int(new["port"]))
        spawn_node(state_dir, cfg, old_primary)
    wait_replicas_linked(cfg)
    write_cfg(state_dir, cfg)


def delete(state_dir: Path, group_id: str) -> None:
    cfg = read_cfg(state_dir)
    if not cfg or cfg.get("group_id") != group_id:
        return
    for node in cfg["nodes"].values():
        stop_pid(node.get("pid"), timeout=2)
        node["pid"] = None
    write_cfg(state_dir, cfg)


def create(state_dir: Path, group_id: str, token: str | None, count: int) -> None:
    cfg = read_cfg(state_dir)
    if not cfg or cfg.get("group_id") != group_id:
        return  # `local up`'s first deploy: start_redis starts the pair once the stacks exist
    if any(pid_alive(n.get("pid")) for n in cfg["nodes"].values()):
        raise RuntimeError(f"nodes of {group_id} still run")
    start_group(state_dir, cfg, [token] if token else [], [f"{group_id}-{n:03d}" for n in range(1, count + 1)])
    write_cfg(state_dir, cfg)


def kill_nodes(state_dir: Path, which: str) -> list[str]:
    """SIGKILL the redis-server of the 'primary', the 'replica' or 'all' nodes; the members killed."""
    cfg = read_cfg(state_dir)
    if not cfg:
        return []
    targets = [cid for cid in cfg["nodes"] if which == "all" or (cid == cfg["primary"]) == (which == "primary")]
    killed = []
    for cid in targets:
        pid = cfg["nodes"][cid].get("pid")
        if pid_alive(pid):
            os.kill(int(pid), signal.SIGKILL)
            killed.append(cid)
    deadline = time.monotonic() + 5
    while any(pid_alive(cfg["nodes"][c].get("pid")) for c in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed
