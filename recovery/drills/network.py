"""`drill full` scenario for the DR plan's scenario 4 (network partition / consensus failure), local only.

It imports recovery.local on purpose: dropping a node's peer connections is damage only the local
environment's node can take (``POST /admin/partition``, recovery/local/node_peers.py).

network-partition (component node)
    preflight  the node is healed (synced, enough peers) and its tip is read
    inject     every peer connection of the primary's node drops, with no healing scheduled
    detect     the plan's detection, `partition wait` with a short deadline: it times out with the
               node's peer count and consensus state (PartitionNotHealedError)
    rejoin     the partition-rejoin runbook (its own journal) with the largest partition's peers:
               the DR site's node first (its real address, from the DR stack's outputs), then the
               peers the node was configured with
    verify     synced with enough peers, consensus `synced`, the block at the partition's tip is
               unchanged (no fork rolled it back) and the node mines again
    RPO        blocks at or below the partition's tip that the chain no longer holds (0 unless a
               fork won; with one simulated network that is a failure), seconds 0
"""

from __future__ import annotations

from urllib.parse import urlsplit

from recovery.drills.base import DrillRun, scenario
from recovery.drills.checks import wait_for
from recovery.drills.restore_scenarios import TIMEOUT_S, _add_runbook_steps, _node, _reporter, _store
from recovery.errors import PartitionNotHealedError, VerificationFailed
from recovery.local.node_peers import drop_peers, heal_peers
from recovery.runbooks.partition import RejoinOptions, poll, rejoin, wait_healed
from recovery.stack import load_outputs

MIN_PEERS = 5  # the plan's "PEERS -gt 5" loop, as `partition wait` defaults to


def _peers(d: DrillRun, configured: list[str]) -> tuple[list[str], list[str]]:
    """The largest partition: the DR site's node (a real peer on loopback, by its API address, which
    the node connects to only while it answers) and the rest; and that real peer alone."""
    peer_stack = getattr(d.outputs, "peer_stack", None) or "local-dr"
    try:
        url = urlsplit(load_outputs(peer_stack).node_api_url)
        first = [f"{url.hostname}:{url.port or 443}"]
    except Exception:  # noqa: BLE001 - the DR stack is optional for this scenario
        first = []
    return first + [p for p in configured if p not in first], first


@scenario("network-partition", component="node", order=30,
          description="the primary node loses every peer (scenario 4); detected by the plan's peer/sync check, "
                      "recovered with the partition-rejoin runbook")
def network_partition(d: DrillRun) -> None:
    o = d.outputs
    with d.step("preflight") as st:
        with _node(d) as node:
            healed = wait_healed(node, min_peers=MIN_PEERS, timeout_s=TIMEOUT_S, interval_s=0.3)
            tip_h, tip_hash = node.tip()
        st.detail.update(peers=healed.peers, height=tip_h)

    with d.step("inject") as st:
        d.cleanup(lambda: heal_peers(o.node_api_url))  # a drill stopped halfway leaves no partition behind
        answer = drop_peers(o.node_api_url)
        configured = [str(p) for p in answer.get("configured_peers") or []]
        st.detail.update(peer_count=answer.get("peer_count"), partitioned=answer.get("partitioned"))
    d.injected()

    with d.step("detect") as st:
        try:
            with _node(d) as node:
                wait_healed(node, min_peers=MIN_PEERS, timeout_s=2.0, interval_s=0.5)
        except PartitionNotHealedError as exc:
            st.detail["check"] = exc.problem
            d.detected(exc.problem)
        else:
            raise VerificationFailed("the partition check still passes with every peer dropped")

    peers, real = _peers(d, configured)
    with d.step("rejoin") as st:
        opts = RejoinOptions(peers=peers, node_url=o.node_api_url, min_peers=MIN_PEERS, timeout_s=TIMEOUT_S,
                             interval_s=0.3)
        journal, _ = rejoin(d.stack, opts, _store(d), reporter=_reporter(d))
        assert journal is not None
        st.detail.update(runbook=journal.runbook, run_id=journal.run_id, status=journal.status, peers_sent=len(peers))
    _add_runbook_steps(d, journal, "partition-rejoin")

    with d.step("verify") as st:
        with _node(d) as node:
            p = poll(node, 0.0)
            if not (p.synced and (p.peers or 0) >= MIN_PEERS and p.consensus_state == "synced"):
                raise VerificationFailed(f"the node is not healed after the rejoin: {p.line()}")
            if real and real[0] not in node.connected_peers():
                raise VerificationFailed(f"the DR node {real[0]} is not among the node's peers after the rejoin",
                                         "is the DR node up? (`recovery local status`)")
            block = node.blocks(tip_h, 1)
            same = bool(block) and block[0].get("hash") == tip_hash
            height = wait_for("the node mining after the rejoin",
                              lambda: (h if (h := node.block_height()) > tip_h else None), TIMEOUT_S)
        st.detail.update(peers=p.peers, consensus=p.consensus_state, height=height, tip_kept=same)
    if not same:
        # One simulated network has no competing chain, so a changed block is a defect, not a fork.
        raise VerificationFailed(f"the block at height {tip_h} changed across the partition", "see the node's log")
    d.recovered()
    d.lost(blocks=0, seconds=0.0)  # every block up to the partition's tip is still in the chain
