"""Both sites as they are now, read-only: the failover's preflight (recovery/runbooks/failover.py).

It changes nothing, so it is a report, not a runbook; the failover and failback runbooks run it as
their first step and act on its verdict.

Each check is a named function; every one is said (``say``) as it is made, and the first refusal is
raised once all have run, so an operator sees the whole picture (recovery/runbooks/failover.py
describes the checks, their exit codes and which ones ``--force`` overrides). Here too live the
options, the two sites and the reads the steps share with it (lag, node state, newest backups).

Nothing here calls the peer region's AWS API or a global control plane (Route 53's API, IAM, STS's
global endpoint): a failover runs while us-east-1 is down. The peer is judged by its data plane
only: its database and its node API answer or not. When neither does, the peer is *unreachable*:
the checks that need it are listed as not made (``Preflight.not_checked``), the mode is
``failover``, and no step tries the peer again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from recovery.adapters import aurora, sql_probe, traffic
from recovery.aws import client, vault_key
from recovery.backups.read import resolve_backup, verify_backup
from recovery.catalog import Catalog
from recovery.errors import (ChainDataError, NodeApiError, NotDrStackError, RecoveryError, ReplicationLagError,
                             SiteNotReadyError, StackOutputsError)
from recovery.node import NodeClient
from recovery.stack import StackOutputs, load_outputs

log = logging.getLogger(__name__)


@dataclass
class FailoverOptions:
    direction: str = "failover"  # failover (target = DR stack) | failback (target = primary stack)
    mode: str | None = None  # None: preflight decides
    force: bool = False
    max_lag_s: float = 60.0
    detach_fallback: bool = False
    take_over_stale: bool = False
    sync_timeout_s: float = 300.0
    dns_timeout_s: float = 180.0  # Route 53 follows a health check within its interval x failure threshold
    lock_ttl_s: int = 900
    resuming: bool = False  # an unfinished run of the same mode exists (its quiesce may have stopped the peer)
    peer_services_config: str | None = None  # None: the peer stack's services_config output
    data_dir: str | None = None  # the target node's data directory; None: the stack's node_data_dir output


@dataclass
class Sites:
    target: StackOutputs
    peer: StackOutputs | None  # None when the peer's outputs cannot be read (its region is gone)
    peer_error: str | None = None
    # False once the preflight found the peer unreachable: no step tries it again (its region may be gone)
    peer_reachable: bool = True

    @property
    def live_peer(self) -> StackOutputs | None:
        """The peer's outputs when it may be asked anything, else None."""
        return self.peer if self.peer_reachable else None


def load_sites(target: StackOutputs, direction: str) -> Sites:
    """The target's outputs and, through ``peer_stack``, the peer's. Refuses a wrong-role target."""
    want = "dr" if direction == "failover" else "primary"
    if target.role != want:
        raise NotDrStackError(
            f"stack '{target.stack}' is a {target.role} stack; {direction} promotes a {want} stack",
            f"aim it at the {want} stack: `recovery {direction} --stack {target.peer_stack}`")
    try:
        peer = load_outputs(target.peer_stack)
        vault_key(peer.backup_bucket_name, peer.backup_kms_key_arn)  # a failback's lock lives in the DR vault
        return Sites(target, peer)
    except StackOutputsError as exc:  # the failed region's state may be unreadable: go on without it
        return Sites(target, None, exc.line())


def measure_lag(sites: Sites) -> dict[str, Any]:
    """Replication lag of the target behind the writer: seconds and bytes, with where it came from.

    Aurora: CloudWatch ``AuroraGlobalDBReplicationLag`` (ms) for the target cluster. PostgreSQL (the
    local environment): the replay position against the writer's WAL (``sql_probe.replay_lag``).
    """
    try:
        lag_s = aurora.cloudwatch_lag_s(sites.target)
        if lag_s is not None:
            return {"lag_s": lag_s, "lag_bytes": None, "source": "cloudwatch AuroraGlobalDBReplicationLag"}
    except Exception as exc:  # noqa: BLE001 - no metric: measure on the database
        log.debug("no CloudWatch replication lag: %s", exc)
    return sql_probe.replay_lag(sites.target, sites.live_peer)


# ----------------------------------------------------------------------------------- node and backups


def node_state(url: str) -> dict[str, Any]:
    with NodeClient(url, timeout_s=3, retries=1, backoff_s=0.2) as n:
        try:
            info = n.blockchain_info()
        except NodeApiError as exc:
            return {"reachable": False, "error": exc.problem}
        return {"reachable": True, "height": info.block_height, "synced": info.is_synced,
                "consensus_state": info.consensus_state, "has_chain": info.block_height >= 0}


def newest_backups(outputs: StackOutputs) -> dict[str, Any]:
    cat = Catalog(client("s3", outputs.region), outputs.backup_bucket_name)
    out: dict[str, Any] = {}
    now = time.time()
    for kind in ("db", "chain"):
        e = cat.latest(kind)
        if e is None:
            out[kind] = None
            continue
        m = e.manifest
        out[kind] = {"key": m.key, "ended_at": m.ended_at, "age_s": round(now - m.time.timestamp(), 1),
                     "db_max_height": m.db_max_height, "replicated_from": m.source_bucket}
    return out


def chain_backup_problem(outputs: StackOutputs) -> str | None:
    """Why the newest chain backup could not restore a node (the restore's own verification), or None."""
    cat = Catalog(client("s3", outputs.region), outputs.backup_bucket_name)
    try:
        verify_backup(cat.s3, resolve_backup(cat, "chain", "latest"))
    except RecoveryError as exc:
        return exc.problem
    return None

# ----------------------------------------------------------------------------------- preflight


@dataclass
class Preflight:
    direction: str
    mode: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    promoted: bool = False
    peer_healthy: bool = False
    lag: dict[str, Any] = field(default_factory=dict)
    backups: dict[str, Any] = field(default_factory=dict)
    node: dict[str, Any] = field(default_factory=dict)
    peer_reachable: bool = True
    not_checked: list[dict[str, str]] = field(default_factory=list)
    traffic: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "mode": self.mode, "promoted": self.promoted,
                "peer_healthy": self.peer_healthy, "peer_reachable": self.peer_reachable, "lag": self.lag,
                "backups": self.backups, "node": self.node, "traffic": self.traffic, "checks": self.checks,
                "not_checked": self.not_checked}

class _Checks:
    """The preflight's findings: each check is said as it is made; the first refusal is kept."""

    def __init__(self, opts: FailoverOptions, say: Callable[[str], None]) -> None:
        self.opts, self.say = opts, say
        self.checks: list[dict[str, Any]] = []
        self.refusal: RecoveryError | None = None

    def __call__(self, name: str, ok: bool, detail: str, err: RecoveryError | None = None,
                 forceable: bool = False) -> None:
        forced = not ok and forceable and self.opts.force
        self.checks.append({"check": name, "ok": ok, "detail": detail, "forced": forced})
        self.say(f"preflight {'ok  ' if ok else ('FORCED' if forced else 'FAIL')} {name}: {detail}")
        if not ok and not forced and self.refusal is None and err is not None:
            self.refusal = err


def _check_cluster(t: StackOutputs, check: _Checks) -> bool:
    """global-cluster and cluster-available; returns whether the target already is the writer."""
    gc, members = aurora.global_members(t)
    member = members.get(t.db_cluster_id)
    promoted = bool(member and member.get("IsWriter"))
    check("global-cluster", member is not None,
          f"{t.db_cluster_id} is {'the writer' if promoted else 'a secondary' if member else 'NOT a member'} of "
          f"{t.global_cluster_id}" + (f" ({gc.get('Status')})" if gc else " (global cluster not found)"),
          SiteNotReadyError(f"{t.db_cluster_id} is not a member of global cluster {t.global_cluster_id}",
                            "add it back to the global cluster (or restore from backups: `recovery restore db`)"))
    status = aurora.cluster_status(t)
    check("cluster-available", status == "available", f"{t.db_cluster_id} is {status}",
          SiteNotReadyError(f"{t.db_cluster_id} is {status}", "wait until it is available"))
    return promoted


def _unreachable_target_error(t: StackOutputs) -> SiteNotReadyError:
    return SiteNotReadyError(
        f"{t.db_cluster_id}'s database does not answer, so it cannot be promoted yet: " + (
            "it must first rejoin as a secondary of the current writer, run `python -m recovery.local.dr_site "
            "rejoin` (the local region coming back)" if t.local else
            "when its region is back Aurora rebuilds it as a secondary; if it was detached, re-add it with `aws rds "
            f"create-db-cluster --db-cluster-identifier {t.db_cluster_id} --global-cluster-identifier "
            f"{t.global_cluster_id} --engine aurora-postgresql --region {t.region}`, wait until "
            "AuroraGlobalDBReplicationLag is low"),
        "then rerun this command")


def _check_lag(sites: Sites, promoted: bool, check: _Checks) -> dict[str, Any]:
    """target-database (it answers) and replication-lag (within --max-lag; forceable)."""
    max_lag_s = check.opts.max_lag_s
    lag: dict[str, Any] = ({"lag_s": 0.0, "lag_bytes": 0, "source": "already promoted"} if promoted
                           else measure_lag(sites))
    if lag.get("lag_s") is None and lag["source"].startswith("target database unreachable"):
        check("target-database", False, lag["source"], _unreachable_target_error(sites.target))
    lag_s = lag.get("lag_s")
    window = "unknown" if lag_s is None else f"{lag_s:g}s"
    check("replication-lag", lag_s is not None and lag_s <= max_lag_s,
          f"{window} ({lag.get('lag_bytes')} bytes behind; {lag['source']}); data-loss window about {window}"
          f", limit {max_lag_s:g}s",
          ReplicationLagError(f"replication lag {window} is over the {max_lag_s:g}s limit "
                              f"(a failover now could lose that much)",
                              "wait for it to drop, or pass --max-lag / --force to accept the loss"),
          forceable=True)
    return lag


def _check_node(t: StackOutputs, backups: dict[str, Any], check: _Checks) -> dict[str, Any]:
    """target-node (it answers), chain-data (it has a chain, or a backup can give it one) and
    chain-backup (that backup restores); all forceable."""
    node = node_state(t.node_api_url)
    check("target-node", node["reachable"],
          f"{t.node_api_url}: " + (f"height {node['height']}, synced={node['synced']}, {node['consensus_state']}"
                                   if node["reachable"] else node["error"]),
          SiteNotReadyError(f"the {t.role} node {t.node_api_url} is unreachable", "start it, or --force to go on without it"),
          forceable=True)
    if node.get("reachable") and not node.get("has_chain"):
        check("chain-data", backups.get("chain") is not None,
              "node has no chain data; " + ("it will be restored from the newest replicated chain backup"
                                            if backups.get("chain") else "and there is no chain backup to restore"),
              SiteNotReadyError(f"the {t.role} node has no chain data and s3://{t.backup_bucket_name} has no chain backup",
                                "take a chain backup on the primary (replication copies it), or --force"),
              forceable=True)
    if backups.get("chain") and not (node.get("reachable") and node.get("has_chain")):
        # the node will need the backup: prove it restores before anything is promoted or moved
        problem = chain_backup_problem(t)
        key = backups["chain"]["key"]
        check("chain-backup", problem is None,
              f"{key}: " + (problem or "restorable (sha256, archive, chain.db integrity_check)"),
              ChainDataError(f"the chain backup the {t.role} node needs, {key}, could not restore it: {problem}",
                             "take a new chain backup on the primary (replication copies it), or --force"),
              forceable=True)
    return node


def _peer_state(sites: Sites, say: Callable[[str], None]) -> tuple[bool, bool]:
    """(reachable, healthy) of the peer, by its data plane only: its database and its node API."""
    t, p = sites.target, sites.peer
    if p is None:
        say(f"preflight info peer site {t.peer_stack}: outputs unreadable, so unreachable from here")
        return False, False
    peer_db = sql_probe.db_answers(p)
    peer_node = node_state(p.node_api_url).get("reachable", False)
    say(f"preflight info peer site {t.peer_stack}: database {'answers' if peer_db else 'does not answer'}, "
        f"node API {'answers' if peer_node else 'does not answer'}")
    return bool(peer_db or peer_node), bool(peer_db and peer_node)


# What the preflight does not ask an unreachable peer (its region may be gone), said as such.
PEER_CHECKS = (
    ("peer-writer-position", "replication lag against the writer's WAL (measured on the target alone)"),
    ("peer-database-height", "the old writer's max(height), for the blocks lost (counted when it returns)"),
    ("peer-services", "stopping the old writer's services (it is presumed down; fenced when it returns)"),
    ("peer-db-secret-region", "writing the DB secret through its primary region (the replica here is promoted)"),
)


def _check_traffic(t: StackOutputs, say: Callable[[str], None]) -> dict[str, Any]:
    """The traffic flag and what DNS answers now (both data planes; information, never a refusal)."""
    out: dict[str, Any] = {}
    try:
        state = traffic.flag(t)
        out["flag"] = state
        out["on_dr"] = traffic.traffic_on_dr(state)
    except RecoveryError as exc:
        out["flag_error"] = exc.problem
    try:
        out["dns_answer"] = traffic.dns_answer(t)
    except RecoveryError as exc:
        out["dns_error"] = exc.problem
    say(f"preflight info traffic: flag {out.get('flag', 'unreadable: ' + str(out.get('flag_error')))}, "
        f"{t.dns_record_name} answers {out.get('dns_answer', 'nothing: ' + str(out.get('dns_error')))}")
    return out


def _choose_mode(t: StackOutputs, opts: FailoverOptions, peer_healthy: bool, promoted: bool, check: _Checks,
                 peer_reachable: bool = True) -> str:
    """--mode, else switchover when the peer is healthy (or the target already promoted), else failover.
    An unreachable peer forces failover: a switchover needs the old writer to hand over."""
    mode = opts.mode or ("switchover" if peer_healthy or (promoted and peer_reachable) else "failover")
    if not peer_reachable and opts.mode == "switchover" and not opts.resuming:
        check("switchover-needs-reachable-peer", False, f"{t.peer_stack} is unreachable",
              SiteNotReadyError(f"a switchover needs {t.peer_stack}, and it is unreachable (its region may be down)",
                                "use --mode failover (unplanned, may lose the replication lag)"))
    elif opts.mode == "switchover" and not peer_healthy and not promoted and not opts.resuming:
        check("switchover-needs-healthy-peer", False, f"{t.peer_stack} is not healthy",
              SiteNotReadyError(f"a switchover needs a healthy {t.peer_stack}, and it is not",
                                "use --mode failover (unplanned, may lose the replication lag)"))
    check.say(f"preflight mode: {mode}" + ("" if opts.mode else " (chosen by preflight; override with --mode)"))
    return mode


def preflight(sites: Sites, opts: FailoverOptions, say: Callable[[str], None] = lambda _m: None) -> Preflight:
    """Read-only checks; raises the first refusal (after logging every check through ``say``).
    Marks ``sites.peer_reachable`` for the steps."""
    t = sites.target
    check = _Checks(opts, say)
    if sites.peer is None:
        say(f"preflight note: peer stack {t.peer_stack} outputs unreadable ({sites.peer_error}); going on without them")
    # First, so that nothing below asks an unreachable peer anything.
    reachable, peer_healthy = _peer_state(sites, say)
    sites.peer_reachable = reachable
    not_checked = [] if reachable else [{"check": name, "why": f"{t.peer_stack} unreachable", "instead": what}
                                        for name, what in PEER_CHECKS]
    for n in not_checked:
        say(f"preflight SKIP {n['check']}: {n['why']}; {n['instead']}")
    promoted = _check_cluster(t, check)
    lag = _check_lag(sites, promoted, check)
    backups = newest_backups(t)
    for kind in ("db", "chain"):
        b = backups.get(kind)
        say(f"preflight info newest {kind} backup in s3://{t.backup_bucket_name}: "
            + (f"{b['key']} ({b['age_s']:.0f}s old)" if b else "none"))
    node = _check_node(t, backups, check)
    flow = _check_traffic(t, say)
    mode = _choose_mode(t, opts, peer_healthy, promoted, check, reachable)
    if not reachable:
        say(f"preflight mode forced: {mode} ({t.peer_stack} is unreachable, so nothing is handed over)")
    if check.refusal is not None:
        raise check.refusal
    return Preflight(opts.direction, mode, check.checks, promoted, peer_healthy, lag, backups, node,
                     reachable, not_checked, flow)
