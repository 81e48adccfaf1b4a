"""`recovery failover` / `recovery failback`: the DR plan's scenario 3 (complete data-center failure).

One runbook, two directions. ``failover`` promotes the DR site (``--stack production-dr``);
``failback`` promotes the primary site again (``--stack production``). The site named by
``--stack`` is the **target** (it becomes the writer); its ``peer_stack`` is the **peer**.

Preflight (:func:`preflight`) runs before anything else and changes nothing. It refuses, one line and
a distinct exit code each, when the target is the wrong role (31), not ready (32: not a member of the
global cluster, not available, its node unreachable, no chain data and no chain backup), the chain
backup its node needs could not restore it (17), or the replication lag is over the limit (33).
``--force`` overrides only the checks marked forceable (lag, node, chain data, chain backup). It picks the default mode: ``switchover`` when the peer is healthy (its
health check passes and its database answers), else ``failover``.

Steps (journaled in the target's bucket, resumable, timed; crash points via RECOVERY_TEST_CRASH_AT):

1. ``preflight``        record the preflight report (start of the RTO clock).
2. ``restore-chain``    when the target node lacks current chain data (none, or older than the newest
                        replicated chain backup): `restore chain` from that backup (its own journal).
                        First, so that a backup that cannot restore fails before anything irreversible
                        (preflight has already verified that backup when the node has no chain at all).
3. ``quiesce-writers``  switchover only: stop the peer's writers through service control (the
                        peer stack's ``services_config``, or RECOVERY_PEER_SERVICES_CONFIG).
4. ``measure-lag``      replication lag and both databases' max(height) just before promotion (RPO).
5. ``promote``          ``switchover_global_cluster`` (no data loss) or ``failover_global_cluster(AllowDataLoss)``;
                        if that call is unavailable and ``--detach-fallback`` was given, detach the
                        target from the global cluster instead (logged). Check: the target is the writer,
                        so a rerun never promotes twice.
6. ``repoint-clients``  the DB secret's host/port (written in the secret's primary region, or the replica
                        promoted when that region is down) and the SSM parameter
                        ``/xai-dr/<global cluster>/endpoints`` (database and cache group) -> the target site.
7. ``resume-peer``      switchover only: start the peer's services again (it is now a secondary site).
8. ``start-services``   the target site's node runs (a failback starts the primary's node).
9. ``move-traffic``     failover: invert the primary's Route 53 health check so SECONDARY serves - unless
                        the primary's endpoint is already down (inverting would make its check PASS; this
                        is logged with what to do); failback: un-invert it.
10. ``verify-dns``      the PRIMARY/SECONDARY records and the health checks serve the expected site.
11. ``verify-node``     target node synced and valid; its tip hash equals the database's row.
12. ``verify-db``       target database out of recovery; a real write and read-back.
13. ``report``          RTO (preflight start -> verified) and RPO (lag and lost blocks at promotion,
                        newest replicated backups).

The run holds an S3 lock in the **DR site's** bucket (``locks/failover.lock``, shared by failover and
failback; for a failover the primary region may be gone) for its whole length. A stale lock (expired) is taken over only with ``--take-over-stale``; a lock whose holder is
a process on this host that no longer exists (a crashed run) is taken over too, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from recovery.aws import client, error_code, vault_key
from recovery.errors import (ChainDataError, NodeApiError, NotDrStackError, RecoveryError, ReplicationLagError,
                             SiteNotReadyError, StackOutputsError, VerificationFailed)
from recovery.engine.locks import S3Lock
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step, StepContext, Target
from recovery.catalog import Catalog
from recovery.backups.read import resolve_backup, verify_backup
from recovery.engine.runbook import execute
from recovery.stack import StackOutputs

log = logging.getLogger(__name__)

LOCK_KEY = "locks/failover.lock"
MODES = ("switchover", "failover")


@dataclass
class FailoverOptions:
    direction: str = "failover"  # failover (target = DR stack) | failback (target = primary stack)
    mode: str | None = None  # None: preflight decides
    force: bool = False
    max_lag_s: float = 60.0
    detach_fallback: bool = False
    take_over_stale: bool = False
    sync_timeout_s: float = 300.0
    lock_ttl_s: int = 900
    resuming: bool = False  # an unfinished run of the same mode exists (its quiesce may have stopped the peer)


@dataclass
class Sites:
    target: StackOutputs
    peer: StackOutputs | None  # None when the peer's outputs cannot be read (its region is gone)
    peer_error: str | None = None

    @property
    def primary_site(self) -> StackOutputs | None:
        return self.target if self.target.role == "primary" else self.peer


def load_sites(target: StackOutputs, direction: str) -> Sites:
    """The target's outputs and, through ``peer_stack``, the peer's. Refuses a wrong-role target."""
    want = "dr" if direction == "failover" else "primary"
    if target.role != want:
        raise NotDrStackError(
            f"stack '{target.stack}' is a {target.role} stack; {direction} promotes a {want} stack",
            f"aim it at the {want} stack: `recovery {direction} --stack {target.peer_stack}`")
    from recovery.stack import load_outputs

    try:
        peer = load_outputs(target.peer_stack)
        vault_key(peer.backup_bucket_name, peer.backup_kms_key_arn)  # a failback's lock lives in the DR vault
        return Sites(target, peer)
    except StackOutputsError as exc:  # the failed region's state may be unreadable: go on without it
        return Sites(target, None, exc.line())


# ----------------------------------------------------------------------------------- AWS reads


def _rds(outputs: StackOutputs) -> Any:
    return client("rds", outputs.region)


def _r53(outputs: StackOutputs) -> Any:
    return client("route53", outputs.region)


def global_members(target: StackOutputs) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The global cluster and its members by cluster id (``{}`` when it does not exist)."""
    try:
        gcs = _rds(target).describe_global_clusters(GlobalClusterIdentifier=target.global_cluster_id)["GlobalClusters"]
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "GlobalClusterNotFoundFault":
            return {}, {}
        raise
    gc = next((g for g in gcs if g.get("GlobalClusterIdentifier") == target.global_cluster_id), gcs[0] if gcs else {})
    members = {m["DBClusterArn"].split(":")[-1]: m for m in gc.get("GlobalClusterMembers", [])}
    return gc, members


def is_writer(target: StackOutputs) -> bool:
    gc, members = global_members(target)
    m = members.get(target.db_cluster_id)
    if m is not None:
        return bool(m.get("IsWriter")) and gc.get("Status", "available") == "available"
    return False


def health_status(outputs: StackOutputs, hc_id: str) -> bool:
    obs = _r53(outputs).get_health_check_status(HealthCheckId=hc_id)["HealthCheckObservations"]
    texts = [o.get("StatusReport", {}).get("Status", "") for o in obs]
    return sum(t.startswith("Success") for t in texts) * 2 > len(texts)


def failover_records(outputs: StackOutputs) -> dict[str, dict[str, Any]]:
    """PRIMARY / SECONDARY record sets of ``dns_record_name``."""
    name = outputs.dns_record_name.rstrip(".") + "."
    resp = _r53(outputs).list_resource_record_sets(HostedZoneId=outputs.dns_zone_id, StartRecordName=name)
    return {r["Failover"]: r for r in resp["ResourceRecordSets"]
            if r.get("Name", "").rstrip(".") == name.rstrip(".") and r.get("Failover")}


def primary_health_check_id(sites: Sites) -> str:
    p = sites.primary_site
    if p is not None:
        return p.health_check_id
    rec = failover_records(sites.target).get("PRIMARY")
    if not rec or not rec.get("HealthCheckId"):
        raise SiteNotReadyError(f"no PRIMARY failover record with a health check for {sites.target.dns_record_name}",
                                "check the hosted zone's failover records")
    return str(rec["HealthCheckId"])


def hc_inverted(outputs: StackOutputs, hc_id: str) -> bool:
    return bool(_r53(outputs).get_health_check(HealthCheckId=hc_id)["HealthCheck"]["HealthCheckConfig"].get("Inverted"))


# ----------------------------------------------------------------------------------- databases


def _db_params(outputs: StackOutputs) -> Any:
    from recovery import postgres

    return postgres.resolve(outputs)


def db_query(outputs: StackOutputs, sql: str, args: Any = None, *, timeout: int = 5) -> list[tuple[Any, ...]]:
    from recovery import postgres

    cp = _db_params(outputs)
    cp.params["connect_timeout"] = str(timeout)
    with postgres.connect(cp, autocommit=True) as conn:
        return list(conn.execute(sql, args).fetchall())


def db_reachable(outputs: StackOutputs | None) -> bool:
    if outputs is None:
        return False
    try:
        db_query(outputs, "SELECT 1", timeout=3)
        return True
    except RecoveryError:
        return False


def max_height(outputs: StackOutputs | None) -> int | None:
    if outputs is None:
        return None
    try:
        row = db_query(outputs, "SELECT max(height) FROM blockchain")[0]
    except RecoveryError:
        return None
    except Exception:  # noqa: BLE001 - no blockchain table yet
        return None
    return None if row[0] is None else int(row[0])


def measure_lag(sites: Sites) -> dict[str, Any]:
    """Replication lag of the target behind the writer: seconds and bytes, with where it came from.

    Aurora: CloudWatch ``AuroraGlobalDBReplicationLag`` (ms) for the target cluster. PostgreSQL (the
    local environment): with the writer reachable, the WAL the target has not replayed
    (``pg_current_wal_lsn()`` there minus ``pg_last_wal_replay_lsn()`` here) and, when that is not
    zero, the age of the last replayed commit; without the writer, only what the target received
    but has not replayed yet (that is replayed at promotion; anything never received is the loss).
    """
    t = sites.target
    try:
        cw = client("cloudwatch", t.region)
        now = datetime.now(timezone.utc)
        pts = cw.get_metric_statistics(
            Namespace="AWS/RDS", MetricName="AuroraGlobalDBReplicationLag",
            Dimensions=[{"Name": "DBClusterIdentifier", "Value": t.db_cluster_id}],
            StartTime=datetime.fromtimestamp(now.timestamp() - 300, timezone.utc), EndTime=now,
            Period=60, Statistics=["Maximum"]).get("Datapoints", [])
        if pts:
            latest = max(pts, key=lambda p: p["Timestamp"])
            return {"lag_s": float(latest["Maximum"]) / 1000.0, "lag_bytes": None,
                    "source": "cloudwatch AuroraGlobalDBReplicationLag"}
    except Exception as exc:  # noqa: BLE001 - no metric: measure on the database
        log.debug("no CloudWatch replication lag: %s", exc)
    try:
        row = db_query(t, "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
                          " extract(epoch FROM now() - pg_last_xact_replay_timestamp()),"
                          " pg_last_xact_replay_timestamp()::text")[0]
    except RecoveryError as exc:
        return {"lag_s": None, "lag_bytes": None, "source": f"target database unreachable: {exc.problem}"}
    in_rec, received, replayed, age, last_ts = row
    if not in_rec:
        return {"lag_s": 0.0, "lag_bytes": 0, "source": "target is already a writer"}
    writer_lsn = None
    if db_reachable(sites.peer):
        assert sites.peer is not None
        try:
            r = db_query(sites.peer, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                                     " ELSE pg_current_wal_lsn() END::text")[0]
            writer_lsn = r[0]
        except RecoveryError:
            writer_lsn = None
    ref = writer_lsn or received
    behind = 0
    if ref and replayed:
        behind = int(db_query(t, "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (ref, replayed))[0][0])
    lag_s = float(age or 0.0) if behind > 0 else 0.0
    return {"lag_s": round(max(lag_s, 0.0), 3), "lag_bytes": max(behind, 0), "last_replayed_commit": last_ts,
            "source": "postgresql replay position vs " + ("the writer's WAL" if writer_lsn else "WAL received (writer unreachable)")}


# ----------------------------------------------------------------------------------- node


def node_state(url: str) -> dict[str, Any]:
    from recovery.node import NodeClient

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

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "mode": self.mode, "promoted": self.promoted,
                "peer_healthy": self.peer_healthy, "lag": self.lag, "backups": self.backups, "node": self.node,
                "checks": self.checks}


def preflight(sites: Sites, opts: FailoverOptions, say: Any = lambda _m: None) -> Preflight:
    """Read-only checks; raises the first refusal (after logging every check through ``say``)."""
    t = sites.target
    checks: list[dict[str, Any]] = []
    refusal: RecoveryError | None = None

    def check(name: str, ok: bool, detail: str, err: RecoveryError | None = None, forceable: bool = False) -> None:
        nonlocal refusal
        forced = not ok and forceable and opts.force
        checks.append({"check": name, "ok": ok, "detail": detail, "forced": forced})
        say(f"preflight {'ok  ' if ok else ('FORCED' if forced else 'FAIL')} {name}: {detail}")
        if not ok and not forced and refusal is None and err is not None:
            refusal = err

    if sites.peer is None:
        say(f"preflight note: peer stack {t.peer_stack} outputs unreadable ({sites.peer_error}); going on without them")
    gc, members = global_members(t)
    member = members.get(t.db_cluster_id)
    promoted = bool(member and member.get("IsWriter"))
    check("global-cluster", member is not None,
          f"{t.db_cluster_id} is {'the writer' if promoted else 'a secondary' if member else 'NOT a member'} of "
          f"{t.global_cluster_id}" + (f" ({gc.get('Status')})" if gc else " (global cluster not found)"),
          SiteNotReadyError(f"{t.db_cluster_id} is not a member of global cluster {t.global_cluster_id}",
                            "add it back to the global cluster (or restore from backups: `recovery restore db`)"))
    try:
        cl = _rds(t).describe_db_clusters(DBClusterIdentifier=t.db_cluster_id)["DBClusters"][0]
        status = cl.get("Status", "?")
    except Exception as exc:  # noqa: BLE001
        status = f"not found ({error_code(exc) or exc})"
    check("cluster-available", status == "available", f"{t.db_cluster_id} is {status}",
          SiteNotReadyError(f"{t.db_cluster_id} is {status}", "wait until it is available"))

    lag: dict[str, Any] = ({"lag_s": 0.0, "lag_bytes": 0, "source": "already promoted"} if promoted
                           else measure_lag(sites))
    if lag.get("lag_s") is None and lag["source"].startswith("target database unreachable"):
        check("target-database", False, lag["source"], SiteNotReadyError(
            f"{t.db_cluster_id}'s database does not answer, so it cannot be promoted yet: " + (
                "it must first rejoin as a secondary of the current writer, run `python -m recovery.local.dr_site "
                "rejoin` (the local region coming back)" if t.local else
                "when its region is back Aurora rebuilds it as a secondary; if it was detached, re-add it with `aws rds "
                f"create-db-cluster --db-cluster-identifier {t.db_cluster_id} --global-cluster-identifier "
                f"{t.global_cluster_id} --engine aurora-postgresql --region {t.region}`, wait until "
                "AuroraGlobalDBReplicationLag is low"),
            "then rerun this command"))
    lag_s = lag.get("lag_s")
    window = "unknown" if lag_s is None else f"{lag_s:g}s"
    check("replication-lag", lag_s is not None and lag_s <= opts.max_lag_s,
          f"{window} ({lag.get('lag_bytes')} bytes behind; {lag['source']}); data-loss window about {window}"
          f", limit {opts.max_lag_s:g}s",
          ReplicationLagError(f"replication lag {window} is over the {opts.max_lag_s:g}s limit "
                              f"(a failover now could lose that much)",
                              "wait for it to drop, or pass --max-lag / --force to accept the loss"),
          forceable=True)

    backups = newest_backups(t)
    for kind in ("db", "chain"):
        b = backups.get(kind)
        say(f"preflight info newest {kind} backup in s3://{t.backup_bucket_name}: "
            + (f"{b['key']} ({b['age_s']:.0f}s old)" if b else "none"))

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

    hc = primary_health_check_id(sites)
    peer_db = db_reachable(sites.peer)
    if sites.peer is not None and sites.peer.role == "primary":
        # failover: the peer is the primary; its own health check says whether it serves
        peer_hc_ok = health_status(t, hc) and not hc_inverted(t, hc)
    else:
        peer_hc_ok = sites.peer is not None and health_status(t, sites.peer.health_check_id)
    peer_healthy = bool(peer_hc_ok and peer_db)
    say(f"preflight info peer site {t.peer_stack}: health check {'passing' if peer_hc_ok else 'failing'}, "
        f"database {'reachable' if peer_db else 'unreachable'}")
    mode = opts.mode or ("switchover" if peer_healthy or promoted else "failover")
    if opts.mode == "switchover" and not peer_healthy and not promoted and not opts.resuming:
        check("switchover-needs-healthy-peer", False, f"{t.peer_stack} is not healthy",
              SiteNotReadyError(f"a switchover needs a healthy {t.peer_stack}, and it is not",
                                "use --mode failover (unplanned, may lose the replication lag)"))
    say(f"preflight mode: {mode}" + ("" if opts.mode else " (chosen by preflight; override with --mode)"))
    if refusal is not None:
        raise refusal
    return Preflight(opts.direction, mode, checks, promoted, peer_healthy, lag, backups, node)


# ----------------------------------------------------------------------------------- the lock


class FailoverLock(S3Lock):
    """S3Lock that takes over an expired lock only when told to (--take-over-stale: a failover must
    not race a slow run); a holder provably dead on this host is taken over always (S3Lock)."""

    def __init__(self, *args: Any, allow_takeover: bool = False, **kw: Any) -> None:
        super().__init__(*args, take_over_expired=allow_takeover, **kw)


# ----------------------------------------------------------------------------------- the runbook


class Failover:
    def __init__(self, sites: Sites, opts: FailoverOptions, pre: Preflight, store: JournalStore) -> None:
        self.sites = sites
        self.opts = opts
        self.pre = pre
        self.store = store
        self.t = sites.target
        self.mode = pre.mode

    @property
    def name(self) -> str:
        return self.opts.direction

    # 1
    def record_preflight(self, ctx: StepContext) -> dict[str, Any]:
        return {"clock_start": time.time(), "mode": self.mode, "lag_s": self.pre.lag.get("lag_s"),
                "peer_healthy": self.pre.peer_healthy,
                "newest_db_backup": (self.pre.backups.get("db") or {}).get("key"),
                "newest_chain_backup": (self.pre.backups.get("chain") or {}).get("key")}

    # 2
    def _peer_services(self) -> Any:
        from recovery.services import ServiceControl, ServicesConfig

        p = self.sites.peer
        path = (p.services_config if p is not None else None) or os.environ.get("RECOVERY_PEER_SERVICES_CONFIG")
        return ServiceControl(ServicesConfig.from_file(path)) if path else None

    def _target_services(self) -> Any:
        from recovery.services import ServiceControl, ServicesConfig

        return ServiceControl(ServicesConfig.for_stack(self.t))

    def quiesce_held(self, ctx: StepContext) -> bool | dict[str, Any]:
        if self.mode != "switchover":
            return {"note": "unplanned failover: the peer is presumed lost; its database is fenced at promotion"}
        sc = self._peer_services()
        if sc is None or is_writer(self.t):
            return is_writer(self.t)
        return all(sc.is_running(n) is False for n in sc.config.stop_order)

    def quiesce(self, ctx: StepContext) -> dict[str, Any]:
        sc = self._peer_services()
        if sc is None:
            msg = (f"no service control for {self.t.peer_stack}'s writers: stop them yourself "
                   "(set RECOVERY_PEER_SERVICES_CONFIG to let the runbook do it)")
            ctx.info(msg)
            return {"stopped": [], "note": msg}
        try:
            sc.stop_all(rollback=False)
        except RecoveryError as exc:
            if self.mode == "switchover":
                raise
            ctx.info(f"could not stop {self.t.peer_stack}'s writers (unplanned failover goes on): {exc.line()}")
            return {"stopped": [], "unreachable": exc.line()}
        return {"stopped": list(sc.config.stop_order)}

    # 3
    def measure(self, ctx: StepContext) -> dict[str, Any]:
        lag = measure_lag(self.sites) if not is_writer(self.t) else {"lag_s": 0.0, "lag_bytes": 0, "source": "already writer"}
        peer_h = max_height(self.sites.peer) if db_reachable(self.sites.peer) else None
        return {"at": time.time(), "lag_s": lag.get("lag_s"), "lag_bytes": lag.get("lag_bytes"),
                "lag_source": lag.get("source"), "peer_db_height": peer_h, "target_db_height_before": max_height(self.t)}

    # 4
    def promoted(self, ctx: StepContext) -> bool | dict[str, Any]:
        if is_writer(self.t):
            return {"writer": self.t.db_cluster_id}
        _gc, members = global_members(self.t)
        if self.opts.detach_fallback and self.t.db_cluster_id not in members:
            cl = _rds(self.t).describe_db_clusters(DBClusterIdentifier=self.t.db_cluster_id)["DBClusters"][0]
            if not cl.get("ReplicationSourceIdentifier"):
                return {"writer": self.t.db_cluster_id, "detached": True}
        return False

    def promote(self, ctx: StepContext) -> dict[str, Any]:
        from botocore.parsers import ResponseParserError

        rds = _rds(self.t)
        gid, target = self.t.global_cluster_id, self.t.db_cluster_id
        t0 = time.monotonic()
        try:
            if self.mode == "switchover":
                rds.switchover_global_cluster(GlobalClusterIdentifier=gid, TargetDbClusterIdentifier=target)
            else:
                rds.failover_global_cluster(GlobalClusterIdentifier=gid, TargetDbClusterIdentifier=target,
                                            AllowDataLoss=True)
            how = f"{self.mode}_global_cluster"
        except Exception as exc:  # noqa: BLE001
            unavailable = isinstance(exc, ResponseParserError) or error_code(exc) in (
                "NotImplemented", "InvalidAction", "UnsupportedOperation")
            if not (unavailable and self.mode == "failover"):
                raise
            if not self.opts.detach_fallback:
                raise SiteNotReadyError(
                    f"failover_global_cluster is unavailable here ({type(exc).__name__})",
                    "rerun with --detach-fallback to detach the DR cluster from the global cluster instead") from None
            log.warning("failover_global_cluster unavailable; DETACHING %s from %s (detach-and-promote)", target, gid)
            ctx.info(f"failover_global_cluster unavailable: detach-and-promote of {target} (explicit --detach-fallback)")
            rds.remove_from_global_cluster(GlobalClusterIdentifier=gid, DbClusterIdentifier=self.t.db_cluster_arn)
            how = "remove_from_global_cluster (detach-and-promote fallback)"
        deadline = time.monotonic() + 600
        while not self.promoted(ctx):
            if time.monotonic() > deadline:
                raise SiteNotReadyError(f"{target} did not become the writer within 600s", "check the RDS console")
            time.sleep(2)
        return {"call": how, "target": target, "promotion_s": round(time.monotonic() - t0, 3)}

    # 5
    def _endpoint_doc(self) -> dict[str, Any]:
        return {"site": self.t.stack, "db_host": self.t.db_endpoint, "db_port": self.t.db_port,
                "cache_replication_group_id": self.t.cache_replication_group_id,
                "cache_host": self.t.cache_endpoint, "cache_port": self.t.cache_port}

    def _param_name(self) -> str:
        return self.t.endpoint_parameter_name

    def _secret(self) -> dict[str, Any]:
        from recovery import redact

        sm = client("secretsmanager", self.t.region)
        raw = sm.get_secret_value(SecretId=self.t.db_secret_arn, VersionStage="AWSCURRENT")["SecretString"]
        redact.register(raw)
        doc = json.loads(raw)
        if isinstance(doc, dict) and "password" in doc:
            redact.register(str(doc["password"]))
        return dict(doc)

    def repointed(self, ctx: StepContext) -> bool:
        try:
            doc = self._secret()
            value = client("ssm", self.t.region).get_parameter(Name=self._param_name())["Parameter"]["Value"]
        except Exception:  # noqa: BLE001 - not there yet
            return False
        return (doc.get("host") == self.t.db_endpoint and int(doc.get("port", 0)) == self.t.db_port
                and json.loads(value).get("site") == self.t.stack)

    def repoint(self, ctx: StepContext) -> dict[str, Any]:
        doc = self._secret()
        doc.update(host=self.t.db_endpoint, port=self.t.db_port)
        text = json.dumps(doc, sort_keys=True)
        sm = client("secretsmanager", self.t.region)
        desc = sm.describe_secret(SecretId=self.t.db_secret_arn)
        primary_region = desc.get("PrimaryRegion") or self.t.region
        how = "updated"
        try:
            # A replica is read-only: write through the secret's primary region (replication brings it here).
            client("secretsmanager", primary_region).put_secret_value(
                SecretId=self.t.db_secret_arn.replace(f":{self.t.region}:", f":{primary_region}:"), SecretString=text)
            how = f"updated in {primary_region}"
        except Exception as exc:  # noqa: BLE001 - that region is down: promote the replica, then write here
            ctx.info(f"the DB secret's primary region {primary_region} is unreachable ({error_code(exc) or exc}); "
                     f"promoting the replica in {self.t.region}")
            sm.stop_replication_to_replica(SecretId=self.t.db_secret_arn)
            sm.put_secret_value(SecretId=self.t.db_secret_arn, SecretString=text)
            how = f"replica promoted and updated in {self.t.region}"
        client("ssm", self.t.region).put_parameter(Name=self._param_name(), Type="String", Overwrite=True,
                                                   Value=json.dumps(self._endpoint_doc(), sort_keys=True))
        return {"db_secret": how, "db_endpoint": f"{self.t.db_endpoint}:{self.t.db_port}",
                "cache": self.t.cache_replication_group_id, "parameter": self._param_name()}

    # 6
    def _want_inverted(self) -> bool:
        return self.t.role == "dr"

    def traffic_moved(self, ctx: StepContext) -> bool:
        hc = primary_health_check_id(self.sites)
        return hc_inverted(self.t, hc) == self._want_inverted() and (
            health_status(self.t, hc) != self._want_inverted())

    def move_traffic(self, ctx: StepContext) -> dict[str, Any]:
        hc = primary_health_check_id(self.sites)
        want = self._want_inverted()
        if want and not hc_inverted(self.t, hc) and not health_status(self.t, hc):
            # The primary's endpoint is down: its check already fails and SECONDARY serves. Inverting
            # it now would make it PASS and send traffic to the dead site.
            msg = ("the primary's endpoint is down, so its health check already fails and SECONDARY serves; "
                   f"NOT inverting it. When the primary comes back, invert health check {hc} before it "
                   "answers, or run `recovery failback`")
            log.warning(msg)
            ctx.info(msg)
            return {"primary_health_check": hc, "inverted": False, "reason": "primary endpoint down"}
        _r53(self.t).update_health_check(HealthCheckId=hc, Inverted=want)
        return {"primary_health_check": hc, "inverted": want}

    # 7
    def verify_dns(self, ctx: StepContext) -> dict[str, Any]:
        recs = failover_records(self.t)
        hc = primary_health_check_id(self.sites)
        problems = []
        if set(recs) != {"PRIMARY", "SECONDARY"}:
            problems.append(f"failover records for {self.t.dns_record_name}: {sorted(recs)}")
        if recs.get("PRIMARY", {}).get("HealthCheckId") != hc:
            problems.append("the PRIMARY record is not tied to the primary health check")
        primary_ok = health_status(self.t, hc)
        secondary_hc = recs.get("SECONDARY", {}).get("HealthCheckId")
        secondary_ok = health_status(self.t, secondary_hc) if secondary_hc else True
        serving = "PRIMARY" if primary_ok else "SECONDARY"
        want = "SECONDARY" if self._want_inverted() else "PRIMARY"
        if serving != want:
            problems.append(f"the {serving} record serves, expected {want}")
        if want == "SECONDARY" and not secondary_ok:
            problems.append("the SECONDARY record's health check is failing")
        if problems:
            raise VerificationFailed("DNS failover not as expected: " + "; ".join(problems),
                                     "check the Route 53 health checks and records, then rerun")
        return {"serving": serving, "primary_hc_healthy": primary_ok, "secondary_hc_healthy": secondary_ok}

    # 8
    def target_services_running(self, ctx: StepContext) -> bool:
        sc = self._target_services()
        return all(sc.is_running(n) is not False for n in sc.config.start_order)

    def start_target_services(self, ctx: StepContext) -> dict[str, Any]:
        sc = self._target_services()
        sc.start_all()
        return {"started": list(sc.config.start_order)}

    # 9
    def _node_tip_time(self, n: Any, height: int) -> float | None:
        try:
            blocks = n._get(f"/api/v1/blocks?from={height}&limit=1").get("blocks") or []
            return float(blocks[0]["timestamp"]) if blocks else None
        except (RecoveryError, KeyError, ValueError, TypeError):
            return None

    def chain_current(self, ctx: StepContext) -> bool | dict[str, Any]:
        """The node has a valid chain at least as new as the newest replicated chain backup."""
        from recovery.node import NodeClient

        with NodeClient(self.t.node_api_url, timeout_s=5, retries=2) as n:
            try:
                info = n.blockchain_info()
            except NodeApiError:
                return False
            if info.block_height < 0 or not n.verify():
                return False
            newest = newest_backups(self.t).get("chain")
            tip = self._node_tip_time(n, info.block_height)
            if newest and tip is not None and tip < datetime.fromisoformat(
                    newest["ended_at"].replace("Z", "+00:00")).timestamp() - 60:
                return False  # the backup is newer than the node's chain (by more than a minute)
            return {"node_height": info.block_height, "restored": False}

    def restore_chain(self, ctx: StepContext) -> dict[str, Any]:
        from recovery.runbooks.restore_chain import ChainRestoreOptions, build

        if not self.t.node_data_dir and not os.environ.get("RECOVERY_TARGET_NODE_DATA_DIR"):
            raise SiteNotReadyError(
                f"the {self.t.role} node lacks current chain data and its data directory is not known here",
                f"on the node's host run `recovery restore chain --stack {self.t.stack} --data-dir /var/lib/xai/blockchain`,"
                " then rerun this command")
        data_dir = self.t.node_data_dir or os.environ["RECOVERY_TARGET_NODE_DATA_DIR"]
        opts = ChainRestoreOptions(data_dir=data_dir, backup="latest", owner="" if self.t.node_data_dir else "xai:xai",
                                   node_url=self.t.node_api_url, sync_timeout_s=self.opts.sync_timeout_s,
                                   sync_interval_s=1.0)
        r = build(self.t, opts, services=self._target_services())
        # journaled beside the failover's own journal (the target's bucket; a drill's work dir)
        j = r.runbook().run(self.store, ctx.reporter, yes=True)
        key = j.step("verify-backup").detail.get("key")
        return {"restored": True, "backup": key, "restore_run": j.run_id}

    # 10
    def verify_node(self, ctx: StepContext) -> dict[str, Any]:
        from recovery.node import NodeClient

        with NodeClient(self.t.node_api_url, timeout_s=5, retries=2) as n:
            info = n.wait_for_sync(self.opts.sync_timeout_s, interval_s=1.0,
                                   progress=lambda p: ctx.info(f"waiting for {self.t.role} node: height {p.height}, "
                                                               f"synced={p.is_synced}") if p.elapsed_s > 0 else None)
            report = n.verify_report()
            if not report.get("is_valid"):
                raise VerificationFailed(f"the {self.t.role} node's chain is not valid: {report.get('reason')}",
                                         "restore its chain data (`recovery restore chain`) and rerun")
            now = n._get("/api/v1/blockchain/info")  # one read: height and tip hash of the same block
            tip, tip_height = now.get("tip_hash"), int(now.get("block_height", info.block_height))
        matches = None
        try:
            row = db_query(self.t, "SELECT hash FROM blockchain WHERE height = %s", (tip_height,))
            matches = (row[0][0] == tip) if row else None  # None: that block is not indexed (yet)
        except Exception:  # noqa: BLE001 - no such table/row: nothing to compare
            matches = None
        if matches is False:
            raise VerificationFailed(f"the {self.t.role} node's block {tip_height} differs from the database's",
                                     "the node and the database disagree: check which one is current")
        return {"node_height": info.block_height, "valid": True, "synced": info.is_synced,
                "tip_matches_db": matches, "checked_blocks": report.get("checked_blocks")}

    # 11
    def verify_db(self, ctx: StepContext) -> dict[str, Any]:
        from recovery import postgres

        cp = _db_params(self.t)
        token = f"{ctx.run_id}:{time.time():.6f}"
        with postgres.connect(cp, autocommit=True) as conn:
            in_rec = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if in_rec and in_rec[0]:
                raise VerificationFailed(f"{self.t.db_cluster_id} is still read-only (in recovery)",
                                         "check the promotion, then rerun")
            conn.execute("CREATE TABLE IF NOT EXISTS recovery_failover_probe (run_id text, token text PRIMARY KEY,"
                         " written_at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO recovery_failover_probe (run_id, token) VALUES (%s, %s)", (ctx.run_id, token))
            back = conn.execute("SELECT token FROM recovery_failover_probe WHERE token = %s", (token,)).fetchone()
            height = conn.execute("SELECT max(height) FROM blockchain").fetchone()
        if not back or back[0] != token:
            raise VerificationFailed("the write probe did not read back", "check the database")
        return {"writable": True, "probe": token, "db_height_after": height[0] if height else None}

    # 12
    def peer_resumed(self, ctx: StepContext) -> bool | dict[str, Any]:
        if self.mode != "switchover":
            return {"note": "unplanned failover: the peer site stays as it is until failback"}
        sc = self._peer_services()
        return sc is None or all(sc.is_running(n) is not False for n in sc.config.start_order)

    def resume_peer(self, ctx: StepContext) -> dict[str, Any]:
        sc = self._peer_services()
        if sc is None:
            return {"started": []}
        try:
            sc.start_all()
        except RecoveryError as exc:
            ctx.info(f"could not start {self.t.peer_stack}'s services again: {exc.line()}")
            return {"started": [], "error": exc.line()}
        return {"started": list(sc.config.start_order)}

    # 13
    def report(self, ctx: StepContext) -> dict[str, Any]:
        r = ctx.results
        start = r.get("preflight", {}).get("clock_start")
        m = r.get("measure-lag", {})
        v = r.get("verify-db", {})
        rto = round(time.time() - start, 3) if start else None
        lost = None
        if m.get("peer_db_height") is not None and v.get("db_height_after") is not None:
            lost = max(0, int(m["peer_db_height"]) - int(v["db_height_after"]))
        backups = newest_backups(self.t)
        chain_rpo = None
        if r.get("restore-chain", {}).get("restored") and backups.get("chain"):
            chain_rpo = backups["chain"]["age_s"]
        objective = (self.t.objectives or {}).get("postgresql", {})
        return {
            "mode": self.mode, "rto_s": rto, "rto_objective_min": objective.get("rto_minutes"),
            "rpo_lag_at_promotion_s": m.get("lag_s"), "rpo_lag_bytes": m.get("lag_bytes"),
            "rpo_blocks_lost": lost, "peer_db_height_at_promotion": m.get("peer_db_height"),
            "target_db_height_after": v.get("db_height_after"),
            "newest_db_backup": (backups.get("db") or {}).get("key"),
            "newest_db_backup_age_s": (backups.get("db") or {}).get("age_s"),
            "newest_chain_backup": (backups.get("chain") or {}).get("key"),
            "newest_chain_backup_age_s": (backups.get("chain") or {}).get("age_s"),
            "chain_restored_from_backup": bool(r.get("restore-chain", {}).get("restored")),
            "chain_rpo_s": chain_rpo,
        }

    def runbook(self) -> Runbook:
        steps = [
            Step("preflight", self.record_preflight, touches="nothing (records the preflight report)"),
            # before anything irreversible: a chain restore that fails must fail while the old
            # writer still serves, not after the promotion and the DNS move
            Step("restore-chain", self.restore_chain, check=self.chain_current,
                 touches=f"restores the {self.t.role} node's chain data from s3://{self.t.backup_bucket_name}"),
            Step("quiesce-writers", self.quiesce, check=self.quiesce_held,
                 touches=f"switchover: stops {self.t.peer_stack}'s writers (service control)"),
            # measured again on a rerun until the promotion has happened, then kept as measured
            Step("measure-lag", self.measure, check=lambda ctx: bool(ctx.results.get("measure-lag")) and is_writer(self.t),
                 touches="nothing (reads replication lag and heights)"),
            Step("promote", self.promote, check=self.promoted,
                 touches=f"{self.mode}_global_cluster -> {self.t.db_cluster_id} becomes the writer"),
            Step("repoint-clients", self.repoint, check=self.repointed,
                 touches=f"DB secret host/port and SSM {self._param_name()} -> {self.t.stack}"),
            Step("resume-peer", self.resume_peer, check=self.peer_resumed,
                 touches=f"switchover: starts {self.t.peer_stack}'s services again, now a secondary site"),
            Step("start-services", self.start_target_services, check=self.target_services_running,
                 touches=f"starts {self.t.stack}'s node if it is down"),
            Step("move-traffic", self.move_traffic, check=self.traffic_moved,
                 touches=("inverts" if self._want_inverted() else "un-inverts") + " the primary's Route 53 health check"),
            Step("verify-dns", self.verify_dns, touches="nothing (reads records and health checks)"),
            Step("verify-node", self.verify_node, touches="nothing (node sync and verify)"),
            Step("verify-db", self.verify_db, touches="writes one row to recovery_failover_probe"),
            Step("report", self.report, touches="nothing (RTO/RPO)"),
        ]
        rb = Runbook(self.name, steps,
                     Target(self.t.stack, production=self.t.production), destructive=True,
                     params={"mode": self.mode, "target": self.t.stack, "peer": self.t.peer_stack})
        return rb

    def lock(self) -> FailoverLock:
        # One lock for both directions, in the DR site's bucket: for a failover the primary region may
        # be gone, and for a failback the DR site is the live one. (Never in the primary bucket: its
        # replication would copy the lock into the DR bucket, where no release ever deletes it.)
        dr = self.t if self.t.role == "dr" else (self.sites.peer or self.t)
        return FailoverLock(client("s3", dr.region), dr.backup_bucket_name, LOCK_KEY,
                            ttl_seconds=self.opts.lock_ttl_s, purpose=f"{self.name} lock",
                            allow_takeover=self.opts.take_over_stale)


def unfinished_mode(store: JournalStore, name: str, stack: str) -> str | None:
    """The mode of an unfinished run to resume, so a rerun without --mode resumes it."""
    prev = store.latest(name, stack)
    if prev is not None and prev.status != "ok":
        mode = prev.params.get("mode")
        return str(mode) if mode in MODES else None
    return None


def run_failover(target: StackOutputs, opts: FailoverOptions, store: JournalStore, *, yes: bool = False,
                 dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None, Preflight]:
    """Preflight, then dry run or run. Returns (journal, plan, preflight)."""
    from recovery.engine.console import ConsoleReporter

    reporter = reporter or ConsoleReporter()
    sites = load_sites(target, opts.direction)
    if opts.mode is None:
        resumed = unfinished_mode(store, opts.direction, target.stack)
        if resumed:
            reporter.message(f"an unfinished {opts.direction} run exists: resuming it in {resumed} mode")
            opts.mode = resumed
            opts.resuming = True
    elif unfinished_mode(store, opts.direction, target.stack) == opts.mode:
        opts.resuming = True
    pre = preflight(sites, opts, reporter.message)
    f = Failover(sites, opts, pre, store)
    rb = f.runbook()
    if dry_run:
        journal, plan = execute(rb, store, yes=yes, dry_run=True, reporter=reporter)
        assert plan is not None
        plan["preflight"] = pre.to_dict()
        return journal, plan, pre
    journal, plan = execute(rb, store, yes=yes, dry_run=False, reporter=reporter, lock=f.lock())
    if journal is not None:
        rep = journal.step("report").detail
        reporter.message(report_line(opts.direction, rep))
    return journal, plan, pre


def report_line(direction: str, rep: dict[str, Any]) -> str:
    def s(v: Any, unit: str = "s") -> str:
        return "unknown" if v is None else f"{v:g}{unit}" if isinstance(v, (int, float)) else str(v)

    return (f"{direction} ({rep.get('mode')}) done: RTO {s(rep.get('rto_s'))}"
            f" (objective {s(rep.get('rto_objective_min'), ' min')}); RPO: lag at promotion "
            f"{s(rep.get('rpo_lag_at_promotion_s'))}, {s(rep.get('rpo_blocks_lost'), '')} blocks lost; newest replicated "
            f"backups: db {s(rep.get('newest_db_backup_age_s'))} old, chain {s(rep.get('newest_chain_backup_age_s'))} old"
            + ("; chain data restored from backup" if rep.get("chain_restored_from_backup") else ""))


__all__ = ["FailoverOptions", "Preflight", "preflight", "run_failover", "load_sites", "measure_lag", "LOCK_KEY"]
