"""`recovery cache failover|recreate`: the Redis cache back within its 10-minute RTO.

The cache holds no durable state (the plan's RPO for it is N/A), so recovery is about service, not data:

``cache failover`` (the primary node is lost; a replica still answers):

1. ``detect``    describe the group and PING every member's endpoint: the primary does not answer, a
                 replica does (checked before anything runs, so a refusal changes nothing).
2. ``failover``  ElastiCache TestFailover on the node group: a replica is promoted and the lost primary is
                 replaced as a replica. Check: the member chosen in ``detect`` is primary already.
3. ``verify``    through the primary endpoint (it follows the primary), PING and a write
                 (SET/GET/DEL) with the current auth token (the cache secret's AWSCURRENT).

``cache recreate`` (every node is lost):

1. ``detect``    no member and not the primary endpoint answers (else: `cache failover` or nothing to do).
2. ``delete``    DeleteReplicationGroup of the dead group, when it still exists, and wait until it is
                 gone. It holds nothing (no node answers, no durable data) and the program created it;
                 the next step creates it again under the same id, so the endpoint clients use is kept.
3. ``create``    CreateReplicationGroup from the stack's ``cache_settings`` output (the group as the
                 program declares it, never a copy written here) with the current auth token. Check:
                 the group exists.
4. ``verify``    PING and a write with the current token; the key count (a new group starts empty, the
                 applications warm it on their reads: keys already there are reported, not failed).

Both run as the ``restore`` job role (restoring a site's own service, as restore-db does), and are
journaled (runs/restore-cache-failover/, runs/restore-cache-recreate/: the restore job's journals) and
resumable like every runbook. No token is ever put in a journal, message or exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from recovery import redact
from recovery.adapters.secrets import CURRENT, SecretStages
from recovery.aws import aws_error, client, error_code
from recovery.cache import CacheTarget, answers, key_count, round_trip
from recovery.errors import (CacheError, CacheGroupAliveError, CacheNoReplicaError, CachePrimaryHealthyError,
                             DeadlineError, StackOutputsError)
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
from recovery.stack import StackOutputs

NODE_GROUP = "0001"  # cluster mode disabled: one node group
VERIFY_KEY = "xai-dr:cache-recovery-test"


@dataclass(frozen=True)
class Member:
    cluster_id: str
    role: str
    target: CacheTarget
    answers: bool


class CacheGroup:
    """The stack's replication group as ElastiCache and its nodes show it."""

    def __init__(self, outputs: StackOutputs, ec: Any = None, sm: Any = None) -> None:
        self.o = outputs
        self.gid = outputs.cache_replication_group_id
        self.tls = not outputs.local  # ElastiCache has in-transit encryption; the local redis speaks plain TCP
        self.ec = ec or client("elasticache", outputs.region)
        self.sm = sm or client("secretsmanager", outputs.region)

    @property
    def endpoint(self) -> CacheTarget:
        return CacheTarget(self.o.cache_endpoint, self.o.cache_port, tls=self.tls)

    def describe(self) -> dict[str, Any] | None:
        try:
            return dict(self.ec.describe_replication_groups(ReplicationGroupId=self.gid)["ReplicationGroups"][0])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ReplicationGroupNotFoundFault":
                return None
            raise aws_error(exc, f"describing cache group {self.gid}") from None

    def members(self, group: dict[str, Any] | None = None) -> list[Member]:
        group = group if group is not None else self.describe()
        out = []
        for m in ((group or {}).get("NodeGroups") or [{}])[0].get("NodeGroupMembers") or []:
            ep = m.get("ReadEndpoint") or {}
            target = CacheTarget(str(ep.get("Address")), int(ep.get("Port") or self.o.cache_port), tls=self.tls)
            out.append(Member(m["CacheClusterId"], str(m.get("CurrentRole")), target, answers(target)))
        return out

    def token(self) -> str:
        value = SecretStages(self.sm, self.o.cache_secret_arn).value(CURRENT)
        if not value:
            raise CacheError(f"the cache secret has no {CURRENT} value", "restore the secret, then rerun")
        redact.register(value)
        return value

    def verify(self, ctx: StepContext | None = None, *, fresh: bool = False) -> dict[str, Any]:
        """PING and a write with the current token through the primary endpoint; the key count.

        A recreated group starts empty (nothing durable was in it); keys there already mean clients
        are warming it, which is the service coming back, so that is reported, not failed."""
        token = self.token()
        detail: dict[str, Any] = dict(round_trip(self.endpoint, token, key=VERIFY_KEY))
        detail["keys"] = key_count(self.endpoint, token)
        if fresh and ctx is not None:
            ctx.info("the recreated cache is empty: clients warm it on their reads" if not detail["keys"] else
                     f"the recreated cache already holds {detail['keys']} key(s): clients are warming it")
        return detail


def assess_failover(g: CacheGroup) -> dict[str, Any]:
    """Refuse before anything runs unless the primary is lost and a replica answers."""
    group = g.describe()
    if group is None:
        raise CacheNoReplicaError(f"cache group {g.gid} does not exist", f"recreate it: `recovery cache recreate --stack {g.o.stack}`")
    members = g.members(group)
    primary = next((m for m in members if m.role == "primary"), None)
    if primary is not None and primary.answers:
        raise CachePrimaryHealthyError(f"the primary {primary.cluster_id} of cache group {g.gid} answers; nothing to fail over",
                                       "check clients' network path to the primary endpoint")
    healthy = [m for m in members if m.role == "replica" and m.answers]
    if not healthy:
        raise CacheNoReplicaError(f"cache group {g.gid} has no replica that answers, so none can be promoted",
                                  f"every node is lost: `recovery cache recreate --stack {g.o.stack}`")
    return {"group": g.gid, "lost_primary": primary.cluster_id if primary else None,
            "promote": healthy[0].cluster_id, "status": group.get("Status")}


def assess_recreate(g: CacheGroup) -> dict[str, Any]:
    """Refuse before anything runs when any node (or the primary endpoint) still answers."""
    group = g.describe()
    alive = [m.cluster_id for m in g.members(group) if m.answers] if group else []
    if alive or answers(g.endpoint):
        raise CacheGroupAliveError(f"cache group {g.gid} still answers ({', '.join(alive) or 'primary endpoint'})",
                                   f"a lost primary is failed over instead: `recovery cache failover --stack {g.o.stack}`")
    if not g.o.cache_settings.get("ReplicationGroupId"):
        raise StackOutputsError(f"stack '{g.o.stack}' output 'cache_settings' names no ReplicationGroupId",
                                "deploy the current infra program (`pulumi up`)")
    return {"group": g.gid, "exists": group is not None, "status": (group or {}).get("Status")}


def _wait(ok: Callable[[], bool], what: str, timeout_s: float, poll_s: float) -> float:
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > timeout_s:
            raise DeadlineError(f"{what} did not happen within {timeout_s:g}s", "check the group in the console; rerun to resume")
        time.sleep(poll_s)
    return round(time.monotonic() - t0, 3)


class CacheRecovery:
    def __init__(self, outputs: StackOutputs, *, timeout_s: float = 900.0, poll_s: float = 1.0,
                 group: CacheGroup | None = None) -> None:
        self.o = outputs
        self.g = group or CacheGroup(outputs)
        self.timeout_s, self.poll_s = timeout_s, poll_s

    # -- failover
    def failover_runbook(self, assessed: dict[str, Any]) -> Runbook:
        g = self.g

        def detect(_ctx: StepContext) -> dict[str, Any]:
            return assessed

        def promoted(_ctx: StepContext) -> Any:
            target = assessed["promote"]
            return any(m.cluster_id == target and m.role == "primary" for m in g.members())

        def failover(ctx: StepContext) -> dict[str, Any]:
            target = assessed["promote"]
            try:
                g.ec.test_failover(ReplicationGroupId=g.gid, NodeGroupId=NODE_GROUP)
            except Exception as exc:  # noqa: BLE001
                raise aws_error(exc, f"failing over cache group {g.gid}") from None
            waited = _wait(lambda: promoted(ctx) and answers(g.endpoint), f"the promotion of {target}",
                           self.timeout_s, self.poll_s)
            return {"promoted": target, "waited_s": waited}

        steps = [Step("detect", detect, touches="nothing (read-only)"),
                 Step("failover", failover, touches=f"ElastiCache {g.gid}: TestFailover (a replica becomes primary)",
                      check=promoted),
                 Step("verify", lambda ctx: g.verify(ctx), touches=f"key {VERIFY_KEY} (written, then deleted)")]
        return Runbook("restore-cache-failover", steps, Target(self.o.stack, production=self.o.production), destructive=True,
                       params={"group": g.gid})

    # -- recreate
    def recreate_runbook(self, assessed: dict[str, Any]) -> Runbook:
        g = self.g

        def delete(_ctx: StepContext) -> dict[str, Any]:
            if g.describe() is None:
                return {"deleted": False, "absent": True}
            try:
                g.ec.delete_replication_group(ReplicationGroupId=g.gid)
            except Exception as exc:  # noqa: BLE001
                if error_code(exc) != "ReplicationGroupNotFoundFault":
                    raise aws_error(exc, f"deleting the lost cache group {g.gid}") from None
            waited = _wait(lambda: g.describe() is None, f"the deletion of {g.gid}", self.timeout_s, self.poll_s)
            return {"deleted": True, "waited_s": waited}

        def create(_ctx: StepContext) -> dict[str, Any]:
            kw = {k: (int(v) if isinstance(v, float) else v) for k, v in self.o.cache_settings.items()}
            try:
                g.ec.create_replication_group(**kw, AuthToken=g.token())
            except Exception as exc:  # noqa: BLE001
                raise aws_error(exc, f"creating cache group {g.gid}") from None
            waited = _wait(lambda: (g.describe() or {}).get("Status") == "available" and answers(g.endpoint),
                           f"cache group {g.gid} to become available", self.timeout_s, self.poll_s)
            return {"created": g.gid, "nodes": kw.get("NumCacheClusters"), "waited_s": waited}

        def exists(_ctx: StepContext) -> Any:
            grp = g.describe()
            return bool(grp and grp.get("Status") == "available" and answers(g.endpoint))

        steps = [Step("detect", lambda _c: assessed, touches="nothing (read-only)"),
                 Step("delete", delete, touches=f"ElastiCache {g.gid}: the lost group (no node answers) is deleted",
                      check=exists),
                 Step("create", create, touches=f"ElastiCache {g.gid}: created again from the stack's cache_settings",
                      check=exists),
                 Step("verify", lambda ctx: g.verify(ctx, fresh=True), touches=f"key {VERIFY_KEY} (written, then deleted)")]
        return Runbook("restore-cache-recreate", steps, Target(self.o.stack, production=self.o.production), destructive=True,
                       params={"group": g.gid})


def _assessed(rb: Runbook, store: JournalStore, assess: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """What ``detect`` found: an unfinished run's own finding (a rerun after a crash resumes it, though
    the world now looks recovered half-way), else a fresh assessment that refuses before anything runs."""
    prev = rb.resumable(store)
    if prev is not None and prev.step("detect").detail:
        return dict(prev.step("detect").detail)
    return assess()


def failover(outputs: StackOutputs, store: JournalStore, *, yes: bool = False, dry_run: bool = False,
             reporter: Any = None, timeout_s: float = 900.0) -> tuple[Journal | None, dict[str, Any] | None]:
    rec = CacheRecovery(outputs, timeout_s=timeout_s)
    assessed = _assessed(rec.failover_runbook({}), store, lambda: assess_failover(rec.g))
    return execute(rec.failover_runbook(assessed or {}), store, yes=yes, dry_run=dry_run, reporter=reporter)


def recreate(outputs: StackOutputs, store: JournalStore, *, yes: bool = False, dry_run: bool = False,
             reporter: Any = None, timeout_s: float = 900.0) -> tuple[Journal | None, dict[str, Any] | None]:
    rec = CacheRecovery(outputs, timeout_s=timeout_s)
    assessed = _assessed(rec.recreate_runbook({}), store, lambda: assess_recreate(rec.g))
    return execute(rec.recreate_runbook(assessed or {}), store, yes=yes, dry_run=dry_run, reporter=reporter)
