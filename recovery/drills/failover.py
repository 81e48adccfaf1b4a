"""`drill full` scenario for the DR plan's scenario 3 (complete data-center failure), local only.

It imports recovery.local on purpose: losing a region and bringing it back is damage only the local
environment can inject (`recovery local outage`, recovery/local/outage.py).

region-outage (component postgresql)
    preflight      the primary is the writer, the DR database a streaming standby
    backup         a real `backup chain` and `backup db` on the primary; the emulator replicates both
                   into the DR bucket, where the DR node restores its chain from
    inject         us-east-1 goes dark: the emulator refuses every request signed for it (and so Route
                   53's API, IAM and STS's global endpoint), and the primary site's PostgreSQL, node
                   and Redis stop. max(height) on the DR standby is the last replicated block.
    detect         DNS (its data plane, still answering) sends the failover record to the DR site:
                   the primary's endpoint health check fails
    failover       the failover runbook (preflight finds the primary unreachable: unplanned failover),
                   with its own journal; its step timings join the drill's timeline. Then the
                   emulator's record of refused requests proves the run asked nothing of us-east-1.
    verify         the DR database is writable and the DR node synced and valid, checked again here
    heal           the region comes back: the old primary's database returns fenced (no write
                   accepted) and its node does not mine
    RPO            blocks and seconds the old primary wrote after the last replicated block, counted
                   on both databases here, and compared with the failback's own count
    failback       the failback runbook: it counts the same, rejoins the old primary as a secondary
                   (the switchover rebuilds it) and moves traffic back
"""

from __future__ import annotations

import time
from typing import Any

from recovery.adapters import aurora, sql_probe, traffic
from recovery.aws import acting_as
from recovery.backups.take import backup_chain, backup_db
from recovery.drills.base import DrillRun, scenario
from recovery.drills.checks import wait_for
from recovery.drills.restore_scenarios import _add_runbook_steps, _journal_summary, _reporter, _store
from recovery.errors import RefusedError, VerificationFailed
from recovery.local import outage
from recovery.local.paths import read_state
from recovery.runbooks import failover as fo
from recovery.stack import StackOutputs, load_outputs, local_dir


def _dr_serving(dr: StackOutputs) -> dict[str, Any]:
    """Checked independently of the runbook, in the DR region only: the DR cluster is the writer, its
    database answers (with the runbook's write probe), and its node serves a synced chain."""
    if not aurora.is_writer(dr):
        raise VerificationFailed("the DR cluster is not the writer after the failover")
    after = sql_probe.max_height(dr)
    probe = sql_probe.db_query(dr, "SELECT count(*) FROM recovery_failover_probe")[0][0]
    node = fo.node_state(dr.node_api_url)
    if not (node.get("synced") and node.get("has_chain")):
        raise VerificationFailed(f"the DR node is not serving: {node}")
    return {"dr_max_height": after, "probe_rows": probe, "dr_node_height": node["height"]}


def _settled(site: StackOutputs) -> Any:
    seen: list[int | None] = []

    def probe() -> int | None:
        seen.append(sql_probe.tip_block(site)[0])
        time.sleep(0.3)
        return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] and seen[-1] is not None else None

    return probe


def _fenced(p: StackOutputs, wait_s: float = 3.0) -> dict[str, Any]:
    """The old primary, back: its database refuses writes and its node's height stays put."""
    refuses = sql_probe.in_recovery_or_read_only(p)
    if refuses is not True:
        raise VerificationFailed(f"{p.stack}'s database accepts writes after the region came back",
                                 "fence it before clients reach it")
    h0 = fo.node_state(p.node_api_url).get("height")
    time.sleep(wait_s)
    h1 = fo.node_state(p.node_api_url).get("height")
    if h0 is not None and h1 is not None and h1 > h0:
        raise VerificationFailed(f"{p.stack}'s node went on mining ({h0} -> {h1}) on a fenced database",
                                 "its node must mine only while its database accepts writes")
    return {"db_refuses_writes": True, "node_height": h1}


@scenario("region-outage", component="postgresql", order=40,
          description="us-east-1 goes dark (its API, the global control planes and the primary's services); "
                      "the DR site is promoted without it, verified, then failed back")
def region_outage(d: DrillRun) -> None:
    p = d.outputs
    if p.role != "primary":
        d.skip(f"run it on the primary stack (local), not {p.stack}")
        return
    dr = load_outputs(p.peer_stack)
    env_dir = local_dir()

    with acting_as(p, "failover"):
        with d.step("preflight") as st:
            if not aurora.is_writer(p):
                raise RefusedError(f"{p.db_cluster_id} is not the writer before the drill",
                                   f"fail back first: `recovery failback --stack {p.stack}`")
            if not sql_probe.db_query(dr, "SELECT pg_is_in_recovery()")[0][0]:
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

    last = _lose_the_region_and_fail_over(d, p, dr, env_dir)
    _heal_count_and_fail_back(d, p, dr, env_dir, last)


def _lose_the_region_and_fail_over(d: DrillRun, p: StackOutputs, dr: StackOutputs, env_dir: Any) -> int:
    """inject, detect, failover (asking nothing of the lost region), verify; the last replicated height."""
    with d.step("inject") as st:
        began = outage.begin(p.region, env_dir)
        d.injected()
        def heal_if_held() -> None:  # whatever happens next, the region comes back afterwards
            if outage.outage_status(read_state(env_dir)):
                outage.heal(env_dir)

        d.cleanup(heal_if_held)
        with acting_as(dr, "failover"):
            # the last replicated block: the standby has replayed all it received once two reads agree
            last = wait_for("the DR standby to finish replaying", _settled(dr), 30)
        st.detail.update(region=p.region, stopped=began.get("stopped"), last_replicated_height=last)

    with acting_as(dr, "failover"):
        with d.step("detect") as st:
            want = dr.node_api_fqdn.rstrip(".")
            wait_for("DNS to answer the DR site", lambda: True if traffic.dns_answer(dr) == want else None, 60)
            st.detail.update(dns_answer=want)
        d.detected(f"{dr.dns_record_name} answers {want}: the primary's endpoint health check fails")

        with d.step("failover") as st:
            opts = fo.FailoverOptions(direction="failover", sync_timeout_s=120)
            journal, _plan, pre = fo.run_failover(dr, opts, _store(d), yes=True, reporter=_reporter(d))
            assert journal is not None
            done_at = time.time()
            report = journal.step("report").detail
            refused = outage.refused_between(env_dir, began["since"], done_at)
            st.detail.update(mode=pre.mode, run_id=journal.run_id, rto_s=report.get("rto_s"),
                             not_checked=report.get("not_checked"), requests_to_lost_region=len(refused))
            d.extra["failover_journal"] = _journal_summary(journal)
            d.extra["failover_report"] = report
            if pre.mode != "failover" or pre.peer_reachable:
                raise VerificationFailed(f"preflight chose {pre.mode} with the primary "
                                         f"{'reachable' if pre.peer_reachable else 'unreachable'}",
                                         "an unreachable primary must force an unplanned failover")
            if refused:
                first = refused[0]
                raise VerificationFailed(f"the failover sent {len(refused)} request(s) to {p.region} (first: "
                                         f"{first.get('service')} {first.get('operation')})",
                                         "the recovery path must use only the DR region")
        _add_runbook_steps(d, journal, "failover")

        with d.step("verify") as st:
            st.detail.update(_dr_serving(dr))
        d.recovered()

    return int(last)


def _heal_count_and_fail_back(d: DrillRun, p: StackOutputs, dr: StackOutputs, env_dir: Any, last: int) -> None:
    """heal (the old primary fenced), count what it wrote alone, fail back (its count must agree)."""
    with d.step("heal") as st:
        st.detail.update(healed=outage.heal(env_dir).get("started"))
        st.detail.update(_fenced(p))

    with acting_as(p, "failover"):
        with d.step("count") as st:
            # independently of the runbooks' hash comparison: the old primary's rows above the last
            # block the standby had replayed when the region went dark
            rows = sql_probe.db_query(p, 'SELECT count(*), extract(epoch FROM max("timestamp")) FROM blockchain'
                                         " WHERE height > %s", (last,))[0]
            base = sql_probe.db_query(p, 'SELECT extract(epoch FROM "timestamp") FROM blockchain WHERE height = %s',
                                      (last,))
            counted = {"blocks": int(rows[0]), "last_replicated_height": last,
                       "seconds": round(float(rows[1]) - float(base[0][0]), 3) if rows[0] and base else 0.0}
            st.detail.update(counted)
        d.lost(blocks=int(counted["blocks"]), seconds=float(counted["seconds"]))

        with d.step("failback") as st:
            opts = fo.FailoverOptions(direction="failback", sync_timeout_s=120)
            journal, _plan, _pre = fo.run_failover(p, opts, _store(d), yes=True, reporter=_reporter(d))
            assert journal is not None
            rep = journal.step("report").detail
            st.detail.update(run_id=journal.run_id, rto_s=rep.get("rto_s"), diverged_blocks=rep.get("diverged_blocks"))
            if rep.get("diverged_blocks") != counted["blocks"]:
                d.extra["rpo_mismatch"] = {"failback": rep.get("diverged_blocks"), "counted": counted["blocks"]}
                raise VerificationFailed(f"the failback counted {rep.get('diverged_blocks')} diverged block(s), "
                                         f"the drill {counted['blocks']}", "compare both databases above the common block")
            if not aurora.is_writer(p) or traffic.traffic_on_dr(traffic.flag(p)):
                raise VerificationFailed("failback did not make the primary the writer with traffic back on it",
                                         f"rerun `recovery failback --stack {p.stack}`")
        d.extra["failback_journal"] = _journal_summary(journal)
