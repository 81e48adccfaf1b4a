"""`drill full` scenario for the DR plan's scenario 3 (complete data-center failure), local only.

It imports recovery.local on purpose: losing a region and bringing it back (the old primary
rejoining as a standby, `dr_site.rejoin`) is damage only the local environment can inject.

regional-failover (component postgresql)
    preflight      the primary is the writer, the DR database a streaming standby
    backup         a real `backup chain` and `backup db` on the primary; the emulator replicates both
                   into the DR bucket, where the DR node restores its chain from
    inject         the primary site fails: its node stops (service control) - the health check
                   fails - and no more blocks are written; max(height) in the primary database is
                   counted now (the state at the disaster)
    detect         the primary's Route 53 health check reports Failure
    failover       the failover runbook (preflight picks an unplanned failover: the primary is unhealthy),
                   with its own journal; its step timings join the drill's timeline
    verify         the DR database is writable and the DR node synced and valid (the runbook checked;
                   the drill checks again independently)
    RPO            blocks: max(height) counted on the primary at the disaster - max(height) on the
                   promoted DR database; seconds: the runbook's lag at promotion
    failback       the old primary rejoins as a secondary (`python -m recovery.local.dr_site rejoin`,
                   the region coming back), then the failback runbook (a switchover back, DNS restored)
"""

from __future__ import annotations

from typing import Any

from recovery.adapters import aurora, route53, sql_probe
from recovery.aws import acting_as
from recovery.backups.take import backup_chain, backup_db
from recovery.drills.base import DrillRun, scenario
from recovery.drills.checks import wait_for
from recovery.drills.restore_scenarios import _add_runbook_steps, _journal_summary, _reporter, _store
from recovery.errors import RefusedError, VerificationFailed
from recovery.local import dr_site
from recovery.runbooks import failover as fo
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import StackOutputs, load_outputs, local_dir


def _dr_serving(p: StackOutputs, dr: StackOutputs) -> dict[str, Any]:
    """Checked independently of the runbook: the DR cluster is the writer, its database answers
    (with the runbook's write probe), and its node serves a synced chain."""
    if aurora.is_writer(p) or not aurora.is_writer(dr):
        raise VerificationFailed("the DR cluster is not the writer after the failover")
    after = sql_probe.max_height(dr)
    probe = sql_probe.db_query(dr, "SELECT count(*) FROM recovery_failover_probe")[0][0]
    node = fo.node_state(dr.node_api_url)
    if not (node.get("synced") and node.get("has_chain")):
        raise VerificationFailed(f"the DR node is not serving: {node}")
    return {"dr_max_height": after, "probe_rows": probe, "dr_node_height": node["height"]}


@scenario("regional-failover", component="postgresql", order=40,
          description="the primary site fails; the DR site is promoted with the failover runbook, verified, "
                      "then failed back")
def regional_failover(d: DrillRun) -> None:
    p = d.outputs
    if p.role != "primary":
        d.skip(f"run it on the primary stack (local), not {p.stack}")
        return
    dr = load_outputs(p.peer_stack)

    # The drill reads both sites as the primary's failover job; each run below acts as its own job.
    with acting_as(p, "failover"):
        with d.step("preflight") as st:
            if not aurora.is_writer(p):
                raise RefusedError(f"{p.db_cluster_id} is not the writer before the drill",
                                   f"fail back first: `recovery failback --stack {p.stack}`")
            rows = sql_probe.db_query(dr, "SELECT pg_is_in_recovery()")
            if not rows[0][0]:
                raise RefusedError("the DR database is not a standby before the drill",
                                   "run `python -m recovery.local.dr_site rejoin`")
            st.detail.update(writer=p.db_cluster_id, dr_standby=True)

        with d.step("backup") as st:
            assert p.node_data_dir
            with acting_as(p, "backup"):
                mc = backup_chain(p, p.node_data_dir)
                md = backup_db(p)
            st.detail.update(chain=mc.key, db=md.key, db_max_height=md.db_max_height)
        d.extra["last_good_backup"] = {"db": md.key, "chain": mc.key, "db_max_height": md.db_max_height}

        primary_services = ServiceControl(ServicesConfig.from_file(str(p.services_config)))
        with d.step("inject") as st:
            primary_services.stop_all(rollback=False)  # the site goes dark: no node, no writes
            d.injected()
            at_disaster = sql_probe.max_height(p)
            st.detail.update(node="stopped", primary_max_height=at_disaster)
        def restart_primary() -> None:  # whatever happens next, the primary's node runs again afterwards
            if not primary_services.is_running("xai-node"):
                primary_services.start_all()

        d.cleanup(restart_primary)

        with d.step("detect") as st:
            wait_for("the primary health check to fail", lambda: True if not route53.health_status(p, p.health_check_id) else None, 30)
            st.detail.update(primary_health_check="Failure")
        d.detected(f"Route 53 health check {p.health_check_id} of {p.stack} reports Failure")

        with d.step("failover") as st:
            opts = fo.FailoverOptions(direction="failover", sync_timeout_s=120)
            with acting_as(dr, "failover"):
                journal, _plan, pre = fo.run_failover(dr, opts, _store(d), yes=True, reporter=_reporter(d))
            assert journal is not None
            report = journal.step("report").detail
            st.detail.update(mode=pre.mode, run_id=journal.run_id, rto_s=report.get("rto_s"))
            d.extra["failover_journal"] = _journal_summary(journal)
            d.extra["failover_report"] = report
        _add_runbook_steps(d, journal, "failover")

        with d.step("verify") as st:
            st.detail.update(_dr_serving(p, dr))
            after = st.detail["dr_max_height"]
        d.recovered()
        lost = (at_disaster or 0) - (after or 0)
        if report.get("rpo_blocks_lost") is not None and report["rpo_blocks_lost"] != lost:
            d.extra["rpo_mismatch"] = {"runbook": report["rpo_blocks_lost"], "counted": lost}
        d.lost(blocks=max(0, lost), seconds=float(report.get("rpo_lag_at_promotion_s") or 0.0))

        with d.step("failback") as st:
            st.detail.update(rejoin=dr_site.rejoin(local_dir()))  # the region is back: its database re-seeded
            primary_services.start_all()  # ... and its node
            opts = fo.FailoverOptions(direction="failback", sync_timeout_s=120)
            with acting_as(p, "failover"):
                journal, _plan, _pre = fo.run_failover(p, opts, _store(d), yes=True, reporter=_reporter(d))
            assert journal is not None
            st.detail.update(run_id=journal.run_id, rto_s=journal.step("report").detail.get("rto_s"))
            if not aurora.is_writer(p) or route53.hc_inverted(p, p.health_check_id):
                raise VerificationFailed("failback did not make the primary the writer with DNS restored")
        d.extra["failback_journal"] = _journal_summary(journal)
