"""Drill scenarios for the Redis cache (RTO 10 min; RPO N/A: it holds no durable data).

- ``redis-primary-loss``: SIGKILL the primary's real redis-server; detected by the primary not
  answering PING; `recovery cache failover` promotes the replica; verified by a write with the
  current auth token through the primary endpoint, and a replica following the new primary again.
- ``redis-group-loss``: SIGKILL every node; detected by no node answering; `recovery cache
  recreate` creates the group again from the stack's declared settings; verified empty and
  writable with the current token.

No token is put in the drill record: only outcomes.
"""

from __future__ import annotations

import time
from typing import Any

from recovery.aws import acting_as
from recovery.cache import answers
from recovery.drills.base import DrillRun, scenario
from recovery.drills.restore_scenarios import _add_runbook_steps, _reporter, _store
from recovery.errors import IntegrityError
from recovery.local.redis_group import kill_nodes
from recovery.runbooks.cache import CacheGroup, failover, recreate
from recovery.stack import local_dir

DETECT_TIMEOUT_S = 30.0


def _backed(d: DrillRun) -> CacheGroup | None:
    """The stack's group when a real redis backs it; else the scenario is skipped with the reason."""
    with acting_as(d.outputs, "restore"):
        g = CacheGroup(d.outputs)
        if not answers(g.endpoint):
            d.skip("no redis-server backs the local cache group (apt-get install redis-server)")
            return None
        return g


def _detect(d: DrillRun, g: CacheGroup, lost: str) -> str:
    """Poll as a monitor would until the loss shows: the primary (or every node) does not answer."""
    deadline = time.monotonic() + DETECT_TIMEOUT_S
    while time.monotonic() < deadline:
        with acting_as(d.outputs, "restore"):
            members = g.members()
        dead = [m.cluster_id for m in members if not m.answers]
        primary_dead = any(m.role == "primary" and not m.answers for m in members)
        if (lost == "all" and len(dead) == len(members)) or (lost == "primary" and primary_dead):
            return f"{', '.join(dead)} not answering PING (of {len(members)} node(s))"
        time.sleep(0.2)
    raise IntegrityError(f"the loss of the cache {lost} node(s) was not detected within {DETECT_TIMEOUT_S:g}s",
                         "check the drill's kill and the members' endpoints")


def _replicated(d: DrillRun, g: CacheGroup) -> dict[str, Any]:
    with acting_as(d.outputs, "restore"):
        members = g.members()
    roles = {m.cluster_id: m.role for m in members if m.answers}
    if list(roles.values()).count("primary") != 1 or len(roles) != len(members):
        raise IntegrityError(f"the cache group is not whole again: {roles}", "see the runbook's journal")
    return {"nodes": roles}


@scenario("redis-primary-loss", component="redis", order=60,
          description="the cache's primary redis-server is SIGKILLed; a replica is promoted by `cache failover`")
def redis_primary_loss(d: DrillRun) -> None:
    g = _backed(d)
    if g is None:
        return
    with d.step("inject") as st:
        st.detail["killed"] = kill_nodes(local_dir(), "primary")
    d.injected()
    with d.step("detect") as st:
        how = _detect(d, g, "primary")
        st.detail["how"] = how
    d.detected(how)
    with d.step("failover") as st:
        with acting_as(d.outputs, "restore"):
            journal, _ = failover(d.outputs, _store(d), yes=True, reporter=_reporter(d), timeout_s=120)
        assert journal is not None
        st.detail.update(run_id=journal.run_id, promoted=journal.step("failover").detail.get("promoted"))
    _add_runbook_steps(d, journal, "cache-failover")
    with d.step("verify") as st:
        st.detail.update(_replicated(d, g), write=journal.step("verify").detail.get("set_get"))
    d.recovered()
    d.lost(blocks=0, seconds=0.0)  # the cache holds no durable state: nothing to lose


@scenario("redis-group-loss", component="redis", order=61,
          description="every redis-server of the cache group is SIGKILLed; `cache recreate` makes it again, empty")
def redis_group_loss(d: DrillRun) -> None:
    g = _backed(d)
    if g is None:
        return
    with d.step("inject") as st:
        st.detail["killed"] = kill_nodes(local_dir(), "all")
    d.injected()
    with d.step("detect") as st:
        how = _detect(d, g, "all")
        st.detail["how"] = how
    d.detected(how)
    with d.step("recreate") as st:
        with acting_as(d.outputs, "restore"):
            journal, _ = recreate(d.outputs, _store(d), yes=True, reporter=_reporter(d), timeout_s=120)
        assert journal is not None
        keys = journal.step("verify").detail.get("keys")
        st.detail.update(run_id=journal.run_id, keys=keys)
        if keys:  # nothing writes to the local cache: a key means the old nodes' memory survived
            raise IntegrityError(f"the recreated cache holds {keys} key(s), not a fresh group's none",
                                 "see the cache-recreate journal")
    _add_runbook_steps(d, journal, "cache-recreate")
    with d.step("verify") as st:
        st.detail.update(_replicated(d, g))
    d.recovered()
    d.lost(blocks=0, seconds=0.0)  # nothing durable was in it (RPO N/A): the applications warm it
