"""`recovery failover` / `recovery failback`: the DR plan's scenario 3 (complete data-center failure).

One runbook, two directions. ``failover`` promotes the DR site (``--stack production-dr``);
``failback`` promotes the primary site again (``--stack production``). The site named by
``--stack`` is the **target** (it becomes the writer); its ``peer_stack`` is the **peer**.

The critical path touches only the target's region (and the traffic-control region, the DR
region): regional STS, RDS, S3, Secrets Manager, SSM and CloudWatch there, DNS queries, and the
target's own database and node. Never Route 53's API, IAM's control plane or STS's global endpoint,
all in us-east-1 (docs/traffic-control.md). The peer is asked only when the preflight found it
reachable (its database or node answers).

Preflight (recovery/reports/preflight.py) runs before anything else and changes nothing. It refuses,
one line and a distinct exit code each, when the target is the wrong role (31), not ready (32: not a
member of the global cluster, not available, its node unreachable, no chain data and no chain
backup), the chain backup its node needs could not restore it (17), or the replication lag is over
the limit (33). ``--force`` overrides only the checks marked forceable (lag, node, chain data, chain
backup). It picks the mode: ``switchover`` when the peer is healthy (its database and node answer),
else ``failover``; an unreachable peer forces ``failover`` and the checks it could not make are
listed (``not_checked``).

Steps (journaled in the target's bucket, resumable, timed; crash points via RECOVERY_TEST_CRASH_AT),
over the adapters in recovery/adapters (aurora, traffic, endpoints, sql_probe) and the node API:

1. ``preflight``        record the preflight report (start of the RTO clock).
   ``count-divergence`` failback only: what the old primary wrote after the failover's last
                        replicated block, in blocks and seconds (that failover's data loss), before the
                        rejoin rebuilds it as a secondary.
2. ``restore-chain``    when the target node lacks current chain data (none, or older than the newest
                        replicated chain backup): `restore chain` from that backup (its own journal).
                        First, so that a backup that cannot restore fails before anything irreversible
                        (preflight has already verified that backup when the node has no chain at all).
3. ``quiesce-writers``  switchover only: stop the peer's writers through service control (the
                        peer stack's ``services_config``, or ``--peer-services-config``).
4. ``measure-lag``      replication lag, the last replicated block (height, time) on the target and,
                        when the peer answers, its max(height): the RPO.
5. ``promote``          ``switchover_global_cluster`` (no data loss) or ``failover_global_cluster(AllowDataLoss)``;
                        if that call is unavailable and ``--detach-fallback`` was given, detach the
                        target from the global cluster instead (logged). A failback's switchover first
                        has Aurora rebuild the old primary as a secondary of the writer (the rejoin).
                        Check: the target is the writer, so a rerun never promotes twice.
6. ``repoint-clients``  the DB secret's host/port (written in the secret's primary region; the replica
                        here is promoted when that region is down or the peer unreachable) and the SSM
                        parameter ``/xai-dr/<global cluster>/endpoints`` -> the target site.
7. ``resume-peer``      switchover only: start the peer's services again (it is now a secondary site).
8. ``start-services``   the target site's node runs (a failback starts the primary's node).
9. ``move-traffic``     the traffic flag (a CloudWatch alarm in the DR region that the PRIMARY record's
                        health check follows): ALARM for a failover, OK for a failback.
10. ``verify-dns``      the flag's state, and DNS (its data plane, asked directly) answers the target's
                        node API host name.
11. ``verify-node``     target node synced and valid; its tip hash equals the database's row.
12. ``verify-db``       target database out of recovery; a real write and read-back.
13. ``verify-fence``    the old writer accepts no write: its database refuses them and its node does not
                        mine. With the peer unreachable the fence is armed (the global writer, the flag,
                        the node's rule), and `recovery sites` shows it once the peer is back.
14. ``report``          RTO (preflight start -> verified) and RPO (lag, last replicated block, lost blocks
                        when the peer answers, the window since the last replicated block when it does
                        not; a failback adds the counted divergence), newest replicated backups.

The run holds an S3 lock in the **DR site's** bucket (``locks/failover.lock``, shared by failover and
failback; for a failover the primary region may be gone) for its whole length. A stale lock
(expired) is taken over only with ``--take-over-stale``; a lock whose holder is a process on this
host that no longer exists (a crashed run) is taken over too, with a warning.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from recovery import notify
from recovery.adapters import aurora, endpoints, sql_probe, traffic
from recovery.adapters.sql_probe import db_reachable, max_height
from recovery.aws import client
from recovery.engine.console import ConsoleReporter
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.locks import S3Lock
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
from recovery.errors import NodeApiError, RecoveryError, SiteNotReadyError, VerificationFailed
from recovery.node import NodeClient
from recovery.reports.preflight import (FailoverOptions, Preflight, Sites, load_sites, measure_lag,
                                       newest_backups, node_state, preflight)
from recovery.reports.failover_line import report_line
from recovery.reports.sites import LOCK_KEY
from recovery.runbooks.restore_chain import ChainRestoreOptions, build, default_owner
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import StackOutputs

log = logging.getLogger(__name__)

MODES = ("switchover", "failover")


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
                "peer_healthy": self.pre.peer_healthy, "peer_reachable": self.pre.peer_reachable,
                "not_checked": [n["check"] for n in self.pre.not_checked],
                "newest_db_backup": (self.pre.backups.get("db") or {}).get("key"),
                "newest_chain_backup": (self.pre.backups.get("chain") or {}).get("key")}

    # 2
    def _peer_services(self) -> ServiceControl | None:
        p = self.sites.peer
        path = self.opts.peer_services_config or (p.services_config if p is not None else None)
        return ServiceControl(ServicesConfig.from_file(path)) if path else None

    def _target_services(self) -> ServiceControl:
        return ServiceControl(ServicesConfig.for_stack(self.t))

    def quiesce_held(self, ctx: StepContext) -> bool | dict[str, Any]:
        if self.mode != "switchover":
            return {"note": "unplanned failover: the peer is presumed lost; its database is fenced at promotion"}
        sc = self._peer_services()
        if sc is None or aurora.is_writer(self.t):
            return aurora.is_writer(self.t)
        return all(sc.is_running(n) is False for n in sc.config.stop_order)

    def quiesce(self, ctx: StepContext) -> dict[str, Any]:
        sc = self._peer_services()
        if sc is None:
            msg = (f"no service control for {self.t.peer_stack}'s writers: stop them yourself "
                   "(pass --peer-services-config FILE to let the runbook do it)")
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
    def lag_measured(self, ctx: StepContext) -> bool:
        # measured again on a rerun until the promotion has happened, then kept as measured
        return bool(ctx.results.get("measure-lag")) and aurora.is_writer(self.t)

    def measure(self, ctx: StepContext) -> dict[str, Any]:
        lag = (measure_lag(self.sites) if not aurora.is_writer(self.t)
               else {"lag_s": 0.0, "lag_bytes": 0, "source": "already writer"})
        peer = self.sites.live_peer
        peer_h = max_height(peer) if db_reachable(peer) else None
        # The last replicated point, measured on the target alone: what an unreachable old writer
        # wrote after it is the data loss, counted when it returns (`recovery sites`, failback).
        last_h, last_at = sql_probe.tip_block(self.t)
        return {"at": time.time(), "lag_s": lag.get("lag_s"), "lag_bytes": lag.get("lag_bytes"),
                "lag_source": lag.get("source"), "peer_db_height": peer_h, "target_db_height_before": last_h,
                "last_replicated_height": last_h, "last_replicated_at": last_at}

    # 4
    def promoted(self, ctx: StepContext) -> bool | dict[str, Any]:
        if aurora.is_writer(self.t):
            return {"writer": self.t.db_cluster_id}
        if self.opts.detach_fallback and aurora.is_detached_writer(self.t):
            return {"writer": self.t.db_cluster_id, "detached": True}
        return False

    def promote(self, ctx: StepContext) -> dict[str, Any]:
        target = self.t.db_cluster_id

        def say_detach() -> None:
            log.warning("failover_global_cluster unavailable; DETACHING %s from %s (detach-and-promote)",
                        target, self.t.global_cluster_id)
            ctx.info(f"failover_global_cluster unavailable: detach-and-promote of {target} (explicit --detach-fallback)")

        t0 = time.monotonic()
        how = aurora.promote(self.t, self.mode, detach_fallback=self.opts.detach_fallback, on_detach=say_detach)
        aurora.wait_for_writer(self.t, lambda: self.promoted(ctx))
        return {"call": how, "target": target, "promotion_s": round(time.monotonic() - t0, 3)}

    # 5
    def _endpoint_doc(self) -> dict[str, Any]:
        return {"site": self.t.stack, "db_host": self.t.db_endpoint, "db_port": self.t.db_port,
                "cache_replication_group_id": self.t.cache_replication_group_id,
                "cache_host": self.t.cache_endpoint, "cache_port": self.t.cache_port}

    def _param_name(self) -> str:
        return self.t.endpoint_parameter_name

    def repointed(self, ctx: StepContext) -> bool:
        try:
            doc = endpoints.read_secret_doc(self.t)
            param = endpoints.read_parameter(self.t)
        except Exception:  # noqa: BLE001 - not there yet
            return False
        return (doc.get("host") == self.t.db_endpoint and int(doc.get("port", 0)) == self.t.db_port
                and param.get("site") == self.t.stack and self._replica_region() is None)

    def _replica_region(self) -> str | None:
        """Failback: the DR region, when the DB secret no longer replicates there (a failover with
        the primary down promoted its replica); else None."""
        peer = self.sites.live_peer
        if self.t.role != "primary" or peer is None or not endpoints.replica_missing(self.t, peer.region):
            return None
        return peer.region

    def repoint(self, ctx: StepContext) -> dict[str, Any]:
        doc = endpoints.read_secret_doc(self.t)
        doc.update(host=self.t.db_endpoint, port=self.t.db_port)
        how = endpoints.write_secret_doc(self.t, doc, on_primary_down=ctx.info,
                                         primary_region_reachable=self.sites.peer_reachable)
        endpoints.write_parameter(self.t, self._endpoint_doc())
        region = self._replica_region()
        if region:
            how += "; " + endpoints.rejoin_replica(self.t, region)
        return {"db_secret": how, "db_endpoint": f"{self.t.db_endpoint}:{self.t.db_port}",
                "cache": self.t.cache_replication_group_id, "parameter": self._param_name()}

    # 6
    def _on_dr(self) -> bool:
        return self.t.role == "dr"

    def traffic_moved(self, ctx: StepContext) -> bool:
        return traffic.traffic_on_dr(traffic.flag(self.t)) == self._on_dr()

    def move_traffic(self, ctx: StepContext) -> dict[str, Any]:
        tc = self.t.traffic_control
        traffic.set_traffic(self.t, self._on_dr(), f"recovery {self.name} {ctx.run_id}: traffic to {self.t.stack}",
                            say=ctx.info)
        return {"flag": tc.get("alarm_name"), "region": tc.get("region"),
                "state": "ALARM" if self._on_dr() else "OK", "serving": self.t.stack}

    # 7
    def verify_dns(self, ctx: StepContext) -> dict[str, Any]:
        state = traffic.flag(self.t)
        want = self.t.node_api_fqdn.rstrip(".")
        # Route 53 follows the flag within its health checkers' interval x failure threshold.
        answer = traffic.wait_for_answer(self.t, want, timeout_s=self.opts.dns_timeout_s)
        problems = []
        if traffic.traffic_on_dr(state) != self._on_dr():
            problems.append(f"the traffic flag is {state}")
        if answer != want:
            problems.append(f"{self.t.dns_record_name} answers {answer or 'nothing'}, expected {want}")
        if problems:
            raise VerificationFailed("traffic did not move: " + "; ".join(problems),
                                     f"check the Route 53 health checks of {self.t.dns_record_name} "
                                     f"and the alarm {self.t.traffic_control.get('alarm_name')}, then rerun")
        return {"flag": state, "dns_answer": answer, "serving": self.t.stack}

    # 8
    def target_services_running(self, ctx: StepContext) -> bool:
        sc = self._target_services()
        return all(sc.is_running(n) is not False for n in sc.config.restart_order)

    def start_target_services(self, ctx: StepContext) -> dict[str, Any]:
        sc = self._target_services()
        sc.start_all()
        return {"started": list(sc.config.restart_order)}

    # 9
    @staticmethod
    def _node_tip_time(n: NodeClient, height: int) -> float | None:
        try:
            blocks = n.blocks(height, limit=1)
            return float(blocks[0]["timestamp"]) if blocks else None
        except (RecoveryError, KeyError, ValueError, TypeError):
            return None

    def chain_current(self, ctx: StepContext) -> bool | dict[str, Any]:
        """The node has a valid chain at least as new as the newest replicated chain backup."""
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
        data_dir = self.opts.data_dir or self.t.node_data_dir
        if not data_dir:
            raise SiteNotReadyError(
                f"the {self.t.role} node lacks current chain data and its data directory is not known here",
                f"on the node's host run `recovery restore chain --stack {self.t.stack} --data-dir /var/lib/xai/blockchain`,"
                " then rerun this command")
        # a stack that names its node's data dir (the local environment) owns it as this user
        opts = ChainRestoreOptions(data_dir=data_dir, backup="latest", owner=default_owner(self.t),
                                   node_url=self.t.node_api_url, sync_timeout_s=self.opts.sync_timeout_s,
                                   sync_interval_s=1.0)
        r = build(self.t, opts, services=self._target_services())
        # journaled beside the failover's own journal (the target's bucket; a drill's work dir)
        j = r.runbook().run(self.store, ctx.reporter, yes=True)
        key = j.step("check-backup").detail.get("key")
        return {"restored": True, "backup": key, "restore_run": j.run_id}

    # 10
    def verify_node(self, ctx: StepContext) -> dict[str, Any]:
        with NodeClient(self.t.node_api_url, timeout_s=5, retries=2) as n:
            info = n.wait_for_sync(self.opts.sync_timeout_s, interval_s=1.0,
                                   progress=lambda p: ctx.progress(f"waiting for {self.t.role} node: height {p.height}, "
                                                               f"synced={p.is_synced}") if p.elapsed_s > 0 else None)
            report = n.verify_report()
            if not report.get("is_valid"):
                raise VerificationFailed(f"the {self.t.role} node's chain is not valid: {report.get('reason')}",
                                         "restore its chain data (`recovery restore chain`) and rerun")
            # one read: height and tip hash of the same block; a node that has just been promoted
            # may still be rolling back a fork onto the database's chain: give it its sync timeout
            deadline = time.monotonic() + self.opts.sync_timeout_s
            while True:
                tip_height, tip = n.tip()
                matches = sql_probe.block_hash_matches(self.t, tip_height, tip)
                if matches is not False or time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
        if matches is False:
            raise VerificationFailed(f"the {self.t.role} node's block {tip_height} differs from the database's",
                                     "the node and the database disagree: check which one is current")
        return {"node_height": info.block_height, "valid": True, "synced": info.is_synced,
                "tip_matches_db": matches, "checked_blocks": report.get("checked_blocks")}

    # 11
    def verify_db(self, ctx: StepContext) -> dict[str, Any]:
        token = f"{ctx.run_id}:{time.time():.6f}"
        height = sql_probe.write_probe(self.t, ctx.run_id, token)
        return {"writable": True, "probe": token, "db_height_after": height}

    # fencing
    def _fence_detail(self) -> dict[str, Any]:
        """What keeps the old writer from writing when it comes back, as armed by this run."""
        return {"global_writer": self.t.db_cluster_id,
                "traffic_flag": "ALARM" if self._on_dr() else "OK",
                "node_rule": "a node mines and indexes only while its own database accepts writes"}

    def verify_fence(self, ctx: StepContext) -> dict[str, Any]:
        """The old writer accepts no write: its database refuses them and its node does not mine.
        With the old writer unreachable this is armed, not observed: Aurora brings an old primary
        back as a secondary of the new writer, DNS stays on the flag, and `recovery sites` shows the
        fence once it is back."""
        detail = self._fence_detail()
        old = self.sites.live_peer
        if old is None:
            ctx.info(f"{self.t.peer_stack} is unreachable: fence armed, not observed (see `recovery sites "
                     f"--stack {self.t.stack}` when it is back)")
            return {**detail, "observed": False, "peer": self.t.peer_stack}
        refuses = sql_probe.in_recovery_or_read_only(old)
        if refuses is False:
            raise VerificationFailed(f"{self.t.peer_stack}'s database still accepts writes after the promotion",
                                     "fence it (read-only) before clients reach it, then rerun")
        mining = self._peer_mining(old)
        if mining:
            raise VerificationFailed(f"{self.t.peer_stack}'s node is still mining on a database that is not the writer",
                                     "stop it (`--peer-services-config`), then rerun")
        return {**detail, "observed": True, "peer_db_refuses_writes": refuses, "peer_node_mining": mining}

    def _peer_mining(self, old: StackOutputs, wait_s: float = 10.0) -> bool | None:
        """Whether the old writer's node mines, given a few of its intervals to notice its fence."""
        deadline = time.monotonic() + wait_s
        with NodeClient(old.node_api_url, timeout_s=3, retries=1, backoff_s=0.2) as n:
            while True:
                try:
                    mining = n.is_mining()
                except RecoveryError:
                    return None  # not answering: it writes nothing either
                if not mining or time.monotonic() >= deadline:
                    return mining
                time.sleep(0.5)

    def count_divergence(self, ctx: StepContext) -> dict[str, Any]:
        """Failback: before the old primary is rebuilt as a secondary, count what it wrote after the
        last point the DR site replicated (the failover's data loss), in blocks and seconds. The
        rebuild keeps those writes aside (Aurora: its snapshot before the rejoin; the local mode: a
        ``.diverged-`` copy of the data directory), never in the live chain."""
        writer = self.sites.live_peer
        if writer is None or not db_reachable(self.t) or not db_reachable(writer):
            return {"counted": False, "why": "a site's database does not answer"}
        d = sql_probe.divergence(self.t, writer)
        if d["blocks"]:
            ctx.info(f"{self.t.stack} holds {d['blocks']} block(s) ({d['seconds']:g}s) written after the last "
                     f"replicated block {d['common_height']}: they are the failover's data loss, kept aside by the rejoin")
        return {"counted": True, **d}

    # 12
    def peer_resumed(self, ctx: StepContext) -> bool | dict[str, Any]:
        if self.mode != "switchover":
            return {"note": "unplanned failover: the peer site stays as it is until failback"}
        sc = self._peer_services()
        return sc is None or all(sc.is_running(n) is not False for n in sc.config.restart_order)

    def resume_peer(self, ctx: StepContext) -> dict[str, Any]:
        sc = self._peer_services()
        if sc is None:
            return {"started": []}
        try:
            sc.start_all()
        except RecoveryError as exc:
            ctx.info(f"could not start {self.t.peer_stack}'s services again: {exc.line()}")
            return {"started": [], "error": exc.line()}
        return {"started": list(sc.config.restart_order)}

    # 13
    def report(self, ctx: StepContext) -> dict[str, Any]:
        r = ctx.results
        start = r.get("preflight", {}).get("clock_start")
        m = r.get("measure-lag", {})
        v = r.get("verify-db", {})
        rto = round(time.time() - start, 3) if start else None
        lost = None
        # against the target's height at promotion: after it the new writer's node adds blocks of its own
        at_promotion = m.get("target_db_height_before")
        if at_promotion is None:
            at_promotion = v.get("db_height_after")
        if m.get("peer_db_height") is not None and at_promotion is not None:
            lost = max(0, int(m["peer_db_height"]) - int(at_promotion))
        backups = newest_backups(self.t)
        chain_rpo = None
        if r.get("restore-chain", {}).get("restored") and backups.get("chain"):
            chain_rpo = backups["chain"]["age_s"]
        objective = (self.t.objectives or {}).get("postgresql", {})
        rpo_window = None
        if not self.sites.peer_reachable and start and m.get("last_replicated_at") is not None:
            # the old writer was unreachable: at most everything since the last replicated block
            rpo_window = round(max(0.0, float(start) - float(m["last_replicated_at"])), 3)
        # failback: what the old primary wrote after the failover's last replicated block (that
        # failover's data loss, known only now that both databases answer)
        d = r.get("count-divergence") or {}
        return {
            "mode": self.mode, "writer": self.t.stack, "peer_reachable": self.sites.peer_reachable,
            "not_checked": [n["check"] for n in self.pre.not_checked],
            "rto_s": rto, "rto_objective_min": objective.get("rto_minutes"),
            "rpo_last_replicated_height": m.get("last_replicated_height"),
            "rpo_last_replicated_at": m.get("last_replicated_at"),
            "rpo_window_s": rpo_window,
            "rpo_counted_when": ("now" if lost is not None else
                                 f"when {self.t.peer_stack} returns (`recovery sites --stack {self.t.stack}`, "
                                 f"`recovery failback --stack {self.t.peer_stack}`)"),
            "diverged_blocks": d.get("blocks") if d.get("counted") else None,
            "diverged_seconds": d.get("seconds") if d.get("counted") else None,
            "diverged_heights": d.get("heights") if d.get("counted") else None,
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

    def stakes(self) -> dict[str, Any]:
        """For the plan and the prompt: the mode, the new writer, where DNS goes and the data it may
        lose, from the preflight's lag and the two databases' heights now (read-only)."""
        t, peer = self.t, self.sites.live_peer
        if self.mode == "switchover":
            loss = "none: a switchover promotes only once everything is replicated"
        else:
            lag = self.pre.lag.get("lag_s")
            peer_h = max_height(peer) if db_reachable(peer) else None
            tip_h, _ = sql_probe.tip_block(t)
            if peer_h is not None and tip_h is not None:
                loss = f"{max(0, peer_h - tip_h)} block(s) ({t.peer_stack} at {peer_h}, {t.stack} at {tip_h}); lag {lag}s"
            else:
                loss = (f"unknown: {t.peer_stack} does not answer; what it wrote after block {tip_h} is counted "
                        f"when it returns (lag at preflight {lag}s)")
        return {"mode": self.mode, "new writer": f"{t.db_cluster_id} ({t.stack})",
                "DNS": f"{t.dns_record_name} -> {t.node_api_fqdn}", "expected loss": loss}

    def runbook(self) -> Runbook:
        steps = [
            Step("preflight", self.record_preflight, touches="nothing (records the preflight report)"),
            *([Step("count-divergence", self.count_divergence,
                    touches=f"nothing (counts what {self.t.stack} wrote after the last replicated block)")]
              if self.opts.direction == "failback" else []),
            # before anything irreversible: a chain restore that fails must fail while the old
            # writer still serves, not after the promotion and the DNS move
            Step("restore-chain", self.restore_chain, check=self.chain_current,
                 touches=f"restores the {self.t.role} node's chain data from s3://{self.t.backup_bucket_name}"),
            Step("quiesce-writers", self.quiesce, check=self.quiesce_held,
                 touches=f"switchover: stops {self.t.peer_stack}'s writers (service control)"),
            Step("measure-lag", self.measure, check=self.lag_measured,
                 touches="nothing (reads replication lag and heights)"),
            Step("promote", self.promote, check=self.promoted,
                 touches=f"{self.mode}_global_cluster -> {self.t.db_cluster_id} becomes the writer"),
            Step("repoint-clients", self.repoint, check=self.repointed,
                 touches=f"DB secret host/port and SSM {self._param_name()} -> {self.t.stack}"),
            Step("resume-peer", self.resume_peer, check=self.peer_resumed, undone_by=("quiesce-writers",),
                 touches=f"switchover: starts {self.t.peer_stack}'s services again, now a secondary site"),
            Step("start-services", self.start_target_services, check=self.target_services_running,
                 touches=f"starts {self.t.stack}'s node if it is down"),
            Step("move-traffic", self.move_traffic, check=self.traffic_moved,
                 touches=f"the traffic flag {self.t.traffic_control.get('alarm_name')} in "
                         f"{self.t.traffic_control.get('region')} -> {'ALARM' if self._on_dr() else 'OK'}"
                         f" ({self.t.stack} serves)"),
            Step("verify-dns", self.verify_dns, touches="nothing (reads the flag and asks DNS)"),
            Step("verify-node", self.verify_node, touches="nothing (node sync and verify)"),
            Step("verify-db", self.verify_db, touches="writes one row to recovery_failover_probe"),
            Step("verify-fence", self.verify_fence,
                 touches=f"nothing (checks that {self.t.peer_stack} accepts no write)"),
            Step("report", self.report, touches="nothing (RTO/RPO)"),
        ]
        rb = Runbook(self.name, steps,
                     Target(self.t.stack, production=self.t.production), destructive=True,
                     params={"mode": self.mode, "target": self.t.stack, "peer": self.t.peer_stack},
                     stakes=self.stakes())
        return rb

    def lock(self) -> S3Lock:
        # One lock for both directions, in the DR site's bucket: for a failover the primary region may
        # be gone, and for a failback the DR site is the live one. (Never in the primary bucket: its
        # replication would copy the lock into the DR bucket, where no release ever deletes it.)
        # An expired lock is taken over only with --take-over-stale (a failover must not race a slow
        # run); a holder provably dead on this host is taken over always (S3Lock).
        dr = self.t if self.t.role == "dr" else (self.sites.peer or self.t)
        return S3Lock(client("s3", dr.region), dr.backup_bucket_name, LOCK_KEY,
                      ttl_seconds=self.opts.lock_ttl_s, purpose=f"{self.name} lock",
                      take_over_expired=self.opts.take_over_stale)


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
    pre = preflight(sites, opts, _preflight_say(reporter))
    f = Failover(sites, opts, pre, store)
    rb = f.runbook()
    if dry_run:
        journal, plan = execute(rb, store, yes=yes, dry_run=True, reporter=reporter)
        assert plan is not None
        plan["preflight"] = pre.to_dict()
        return journal, plan, pre
    what = f"{opts.direction} ({opts.mode or 'planned'}) onto {target.stack}"
    notify.announce(target, "failover-started", "site", f"{what} started", details={"mode": opts.mode})
    with notify.on_failure(target, "failover-finished", "site", "critical", direction=opts.direction, mode=opts.mode):
        journal, plan = execute(rb, store, yes=yes, dry_run=False, reporter=reporter, lock=f.lock())
    if journal is not None:
        rep = journal.step("report").detail
        reporter.message(report_line(opts.direction, rep))
        notify.announce(target, "failover-finished", "site", f"{what} finished: {report_line(opts.direction, rep)}")
    return journal, plan, pre


def _preflight_say(reporter: Any) -> Any:
    """Preflight's lines: the checks that passed and the facts it noted are detail (a terminal
    shows them with -v; a log keeps them); a failure, a skip, a note and the mode always show."""
    detail = getattr(reporter, "detail", reporter.message)

    def say(line: str) -> None:
        (detail if line.startswith(("preflight ok ", "preflight info ")) else reporter.message)(line)

    return say


__all__ = ["FailoverOptions", "Preflight", "preflight", "run_failover", "load_sites", "measure_lag", "node_state",
           "LOCK_KEY"]
