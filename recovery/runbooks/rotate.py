"""`recovery rotate db|cache|app|all`: credential rotation that never locks anyone out.

The Secrets Manager rotation protocol (aws-samples SecretsManagerRotationTemplate), driven
here step by step because a rotation Lambda is not what an operator runs at 3 a.m.:

1. ``<p>-create``  generate a new value with ``secrets`` (within the service's character rules)
                   and store it as AWSPENDING. Check: a stored AWSPENDING distinct from AWSCURRENT
                   (or this run's version already promoted) -> reuse it. A rerun never generates
                   a value nobody stored: the value is stored before it is used anywhere.
2. ``<p>-set``     apply AWSPENDING to the service (RDS master password; ElastiCache ROTATE, which
                   keeps the old token valid too). Check: the pending value already works.
3. ``<p>-test``    connect with AWSPENDING for real and run a query / a Redis round trip.
4. ``<p>-finish``  promote AWSPENDING to AWSCURRENT (Secrets Manager moves AWSPREVIOUS to the old
                   value) and drop the AWSPENDING label. Check: AWSCURRENT is this run's version.
5. ``<p>-verify``  AWSCURRENT works, AWSPREVIOUS is rejected (db; cache after its SET).

The cache adds ``cache-grace`` (wait --grace from the ROTATE, so clients pick up the new token
from AWSCURRENT; a rerun waits only what is left) and ``cache-set`` (AuthTokenUpdateStrategy=SET:
only the new token stays valid) before its verify. App secrets have no service to apply to:
create, test (read back by stage), finish.

Invariant: at every instant AWSCURRENT or AWSPENDING works against the service: before ``set``
the current value works; from ``set`` on the pending one does; ``finish`` makes it current.
Secrets are always read by explicit stage, every value read is registered with
`recovery.redact`, and no value is ever put in a journal, message or exception.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg

from recovery import notify
from recovery import redact
from recovery.adapters.secrets import CURRENT, PENDING, PREVIOUS, SecretStages, stages_first
from recovery.aws import aws_error, client
from recovery.cache import CacheTarget, answers, round_trip, token_works
from recovery.errors import AwsAccessError, DatabaseError, DeadlineError, InputError, RecoveryError
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
from recovery.stack import StackOutputs

WHATS = ("db", "cache", "app", "all")
CACHE_NOT_BACKED = ("cache steps skipped: redis-server is not installed, so the local environment's cache group "
                    "is not backed by a real Redis (apt-get install redis-server, then `recovery local down && "
                    "recovery local up`)")

# RDS master password: printable ASCII except '/', "'", '"', '@' and space. We use the subset that
# is also unreserved in URIs (RFC 3986) and needs no escaping in pgpass files or shells, because
# clients put it in DATABASE_URL-style DSNs: 32 of 66 symbols is ~193 bits.
DB_ALPHABET = string.ascii_letters + string.digits + "-_.~"
# ElastiCache AUTH token: 16-128 printable characters, specials only from !&#$^<>-. Likewise the
# URI-safe subset (redis://:token@host): letters, digits and '-'.
CACHE_ALPHABET = string.ascii_letters + string.digits + "-"
APP_ALPHABET = string.ascii_letters + string.digits + "-_"


def generate(alphabet: str, length: int = 32) -> str:
    """A random value from ``alphabet`` with at least one letter and one digit."""
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.isalpha() for c in value) and any(c.isdigit() for c in value) and value[0].isalnum():
            return value


def _short(arn: str) -> str:
    return arn.split(":secret:")[-1]


# --------------------------------------------------------------------------------------------
# What a rotation acts on
# --------------------------------------------------------------------------------------------


@dataclass
class Component:
    """One secret and the service that checks it.

    ``new_text(current_text)`` builds the new secret string; ``works(text)`` says whether the
    service accepts the credential in ``text`` (None: no service to ask); ``apply(text)`` makes
    the service accept it; ``query(text)`` runs a real query with it and returns its detail.
    """

    prefix: str
    arn: str
    new_text: Callable[[str], str]
    works: Callable[[str], bool] | None = None
    apply: Callable[[str], dict[str, Any]] | None = None
    query: Callable[[str], dict[str, Any]] | None = None
    touches: str = ""
    skipped: str | None = None
    extra_steps: list[Step] = field(default_factory=list)


class RotatingSecret:
    """One secret during a rotation: which stored version is this rotation's new value."""

    def __init__(self, stages: SecretStages, prefix: str) -> None:
        self.stages = stages
        self.prefix = prefix

    def created(self, ctx: StepContext) -> str | None:
        vid = ctx.results.get(f"{self.prefix}-create", {}).get("version_id")
        return str(vid) if vid else None

    def new_version(self, ctx: StepContext) -> tuple[str, bool] | None:
        """(version id of this rotation's new value, already promoted?) or None if none is stored."""
        v = self.stages.versions()
        current = stages_first(v, CURRENT)
        pending = [p for p in v.get(PENDING) or [] if p != current]
        if pending:
            return pending[0], False
        created = self.created(ctx)
        if created and created == current:
            return created, True
        return None

    def promoted(self, ctx: StepContext) -> bool:
        found = self.new_version(ctx)
        return bool(found and found[1])

    def new_value(self, ctx: StepContext) -> str:
        found = self.new_version(ctx)
        if found is None:
            raise RecoveryError(f"no new value of secret {self.stages.short} is stored ({PENDING} is missing)",
                                "rerun the rotation from the start")
        text = self.stages.value(CURRENT if found[1] else PENDING)
        if text is None:
            raise RecoveryError(f"secret {self.stages.short} lost its {PENDING} value", "rerun the rotation")
        return text


class DbService:
    """The RDS cluster's master password, checked by connecting to PostgreSQL for real."""

    def __init__(self, rotation: Rotation) -> None:
        self.rotation = rotation
        self.o = rotation.outputs

    def params(self, text: str) -> dict[str, Any]:
        o = self.o
        try:
            doc = json.loads(text)
        except ValueError:
            doc = {"password": text}
        return {"host": str(doc.get("host") or o.db_endpoint), "port": int(doc.get("port") or o.db_port),
                "user": str(doc.get("username") or o.db_username), "dbname": str(doc.get("dbname") or o.db_name),
                "password": str(doc.get("password", ""))}

    def connect(self, text: str) -> Any:
        p = self.params(text)
        redact.register(p["password"])
        return psycopg.connect(host=p["host"], port=p["port"], user=p["user"], dbname=p["dbname"],
                               password=p["password"], connect_timeout=5, autocommit=True)

    def works(self, text: str) -> bool:
        try:
            self.connect(text).close()
            return True
        except psycopg.OperationalError as exc:
            msg = str(exc)
            if "authentication failed" in msg or "28P01" in msg or "password" in msg.lower():
                return False
            p = self.params(text)
            raise DatabaseError(f"cannot reach PostgreSQL at {p['host']}:{p['port']}: {redact.scrub(msg.splitlines()[0] if msg else type(exc).__name__)}",
                                "check the database endpoint and network, then rerun to resume") from None

    @staticmethod
    def new_text(current: str) -> str:
        try:
            doc = json.loads(current)
            if not isinstance(doc, dict):
                raise ValueError
        except ValueError:
            return generate(DB_ALPHABET)
        doc["password"] = generate(DB_ALPHABET)
        return json.dumps(doc, sort_keys=True)

    def apply(self, text: str) -> dict[str, Any]:
        o = self.o
        rds = client("rds", o.region)
        try:
            rds.modify_db_cluster(DBClusterIdentifier=o.db_cluster_id,
                                  MasterUserPassword=self.params(text)["password"], ApplyImmediately=True)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"setting the master password of cluster {o.db_cluster_id}") from None
        waited = self.rotation.wait_until(lambda: self.works(text), f"the new master password of {o.db_cluster_id}")
        return {"cluster": o.db_cluster_id, "waited_s": waited}

    def query(self, text: str) -> dict[str, Any]:
        try:
            with self.connect(text) as conn:
                row = conn.execute("SELECT current_user, now()").fetchone()
                tables = conn.execute("SELECT count(*) FROM pg_catalog.pg_tables "
                                      "WHERE schemaname = 'public'").fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"the new password does not work for a query: {type(exc).__name__}",
                                "rerun to resume; AWSCURRENT is unchanged until this passes") from None
        return {"user": row[0] if row else None, "public_tables": tables[0] if tables else None}

    def component(self) -> Component:
        o = self.o
        return Component("db", o.db_secret_arn, self.new_text, self.works, self.apply, self.query,
                         touches=f"secret {_short(o.db_secret_arn)}, RDS cluster {o.db_cluster_id} master password")


class CacheService:
    """The ElastiCache group's auth token: ROTATE (old and new valid), grace, then SET (only the new)."""

    def __init__(self, rotation: Rotation, target: CacheTarget) -> None:
        self.rotation = rotation
        self.o = rotation.outputs
        self.target = target
        self.group = self.o.cache_replication_group_id
        self.secret = RotatingSecret(SecretStages(rotation.sm, self.o.cache_secret_arn), "cache")

    def modify(self, token: str, strategy: str) -> None:
        ec = client("elasticache", self.o.region)
        try:
            ec.modify_replication_group(ReplicationGroupId=self.group, AuthToken=token,
                                        AuthTokenUpdateStrategy=strategy, ApplyImmediately=True)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"changing the auth token of {self.group} ({strategy})") from None

    def works(self, token: str) -> bool:
        return token_works(self.target, token)

    def query(self, token: str) -> dict[str, Any]:
        return round_trip(self.target, token)

    @staticmethod
    def new_text(_current: str) -> str:
        return generate(CACHE_ALPHABET)

    def apply(self, token: str) -> dict[str, Any]:
        self.modify(token, "ROTATE")
        waited = self.rotation.wait_until(lambda: self.works(token), f"the new auth token of {self.group}")
        return {"group": self.group, "strategy": "ROTATE", "rotated_at": time.time(), "waited_s": waited}

    def grace(self, ctx: StepContext) -> dict[str, Any]:
        grace_s = self.rotation.grace_s
        rotated_at = float(ctx.results.get("cache-set", {}).get("rotated_at") or time.time())
        end = rotated_at + grace_s
        left = end - time.time()
        if left > 0:
            ctx.info(f"grace: both cache tokens stay valid for {left:.0f}s more so clients reload AWSCURRENT "
                     "(--no-grace skips this)")
        while time.time() < end:
            time.sleep(min(30.0, max(0.0, end - time.time())))
            if time.time() < end:
                ctx.info(f"grace: {end - time.time():.0f}s left")
        return {"grace_s": grace_s}

    def set_only_new(self, _ctx: StepContext) -> dict[str, Any]:
        stages = self.secret.stages
        token = stages.value(CURRENT) or ""
        self.modify(token, "SET")
        previous = stages.value(PREVIOUS)
        if previous:
            self.rotation.wait_until(lambda: not self.works(previous),
                                     f"the old auth token of {self.group} to stop working")
        return {"group": self.group, "strategy": "SET"}

    def set_holds(self, ctx: StepContext) -> bool:
        if not self.secret.promoted(ctx):
            return False
        previous = self.secret.stages.value(PREVIOUS)
        current = self.secret.stages.value(CURRENT) or ""
        return bool(self.works(current) and (previous is None or not self.works(previous)))

    def component(self) -> Component:
        o = self.o
        comp = Component("cache", o.cache_secret_arn, self.new_text, self.works, self.apply, self.query,
                         touches=cache_touches(o))
        comp.extra_steps = [
            Step("cache-grace", self.grace, touches="waits --grace (both tokens valid)"),
            Step("cache-only-new", self.set_only_new,
                 touches=f"ElastiCache {self.group} auth token (SET: old token invalid)", check=self.set_holds),
        ]
        return comp


def cache_touches(o: StackOutputs) -> str:
    return f"secret {_short(o.cache_secret_arn)}, ElastiCache {o.cache_replication_group_id} auth token"


# --------------------------------------------------------------------------------------------
# The steps of one secret: create, set, test, finish, (extra), verify
# --------------------------------------------------------------------------------------------


class SecretSteps:
    def __init__(self, comp: Component, stages: SecretStages) -> None:
        self.comp = comp
        self.stages = stages
        self.secret = RotatingSecret(stages, comp.prefix)

    def create_check(self, ctx: StepContext) -> Any:
        found = self.secret.new_version(ctx)
        return {"version_id": found[0], "reused": True} if found else False

    def create(self, _ctx: StepContext) -> dict[str, Any]:
        # stored before it is used anywhere: a rerun never generates a value nobody stored
        text = self.comp.new_text(self.stages.value(CURRENT) or "")
        redact.register(text)
        version_id = self.stages.put_pending(text)
        return {"version_id": version_id, "secret": self.stages.short}

    def set_check(self, ctx: StepContext) -> Any:
        found = self.secret.new_version(ctx)
        if found is None:
            return False
        if found[1]:
            return {"already_promoted": True}
        assert self.comp.works is not None
        return self.comp.works(self.secret.new_value(ctx))

    def set_action(self, ctx: StepContext) -> dict[str, Any]:
        assert self.comp.apply is not None
        return self.comp.apply(self.secret.new_value(ctx))

    def test(self, ctx: StepContext) -> dict[str, Any]:
        text = self.secret.new_value(ctx)
        if self.comp.query is not None:
            return {"tested": "connect + query", **self.comp.query(text)}
        if not text:
            raise RecoveryError(f"the new value of secret {self.stages.short} reads back empty", "rerun the rotation")
        return {"tested": f"read back by stage ({len(text)} characters)"}

    def finish_check(self, ctx: StepContext) -> Any:
        return {"promoted": True} if self.secret.promoted(ctx) else False

    def finish(self, ctx: StepContext) -> dict[str, Any]:
        found = self.secret.new_version(ctx)
        if found is None:
            raise RecoveryError(f"no {PENDING} version of secret {self.stages.short} to promote", "rerun the rotation")
        self.stages.promote(found[0])
        return {"promoted": True, "version_id": found[0]}

    def verify(self, _ctx: StepContext) -> dict[str, Any]:
        works = self.comp.works
        assert works is not None
        if not works(self.stages.value(CURRENT) or ""):
            raise RecoveryError(f"{CURRENT} of secret {self.stages.short} does not work against the service",
                                "check the service; rerun to resume")
        previous = self.stages.value(PREVIOUS)
        old_rejected = None if previous is None else not works(previous)
        if old_rejected is False:
            raise RecoveryError(f"the previous value of secret {self.stages.short} still works",
                                "rerun to resume; the service did not drop the old credential")
        return {"current_works": True, "previous_rejected": old_rejected}

    def steps(self) -> list[Step]:
        c, p = self.comp, self.comp.prefix
        steps = [Step(f"{p}-create", self.create, touches=f"{PENDING} of {c.touches}", check=self.create_check)]
        if c.apply is not None and c.works is not None:
            steps.append(Step(f"{p}-set", self.set_action, touches=c.touches, check=self.set_check))
        steps.append(Step(f"{p}-test", self.test, touches="nothing (read-only)"))
        steps.append(Step(f"{p}-finish", self.finish, touches=f"{CURRENT}/{PREVIOUS} of secret {self.stages.short}",
                          check=self.finish_check))
        steps.extend(c.extra_steps)
        if c.works is not None:
            steps.append(Step(f"{p}-verify", self.verify, touches="nothing (read-only)"))
        return steps


def skipped_step(prefix: str, note: str) -> Step:
    def skipped(ctx: StepContext) -> dict[str, Any]:
        ctx.info(note)
        return {"skipped": note}

    return Step(f"{prefix}-skipped", skipped, touches="nothing (see the note)")


class Rotation:
    def __init__(self, outputs: StackOutputs, what: str, grace_s: float, set_timeout_s: float = 120.0,
                 poll_s: float = 1.0, sm: Any = None) -> None:
        if what not in WHATS:
            raise InputError(f"unknown rotation target '{what}'", f"use one of {', '.join(WHATS)}")
        self.outputs = outputs
        self.what = what
        self.grace_s = grace_s
        self.set_timeout_s = set_timeout_s
        self.poll_s = poll_s
        self.sm = sm or client("secretsmanager", outputs.region)
        self.name = f"rotate-{what}"

    def cache_target(self) -> CacheTarget | None:
        """Where the cache listens; None when a local stack's cache is not backed by redis-server.

        A local stack's cache speaks plain TCP, and its outputs name the redis-server `local up`
        started (cache_endpoint/cache_port); without one they name only the emulator's record of the
        group, where no Redis answers. Asked of the endpoint itself, so no runbook reads local/'s state."""
        o = self.outputs
        if o.local:
            target = CacheTarget(o.cache_endpoint, o.cache_port, tls=False)
            return target if answers(target) else None
        return CacheTarget(o.cache_endpoint, o.cache_port, tls=True)

    def components(self) -> list[Component]:
        out: list[Component] = []
        if self.what in ("db", "all"):
            out.append(DbService(self).component())
        if self.what in ("cache", "all"):
            target = self.cache_target()
            if target is None:
                out.append(Component("cache", self.outputs.cache_secret_arn, lambda _c: "",
                                     touches=cache_touches(self.outputs), skipped=CACHE_NOT_BACKED))
            else:
                out.append(CacheService(self, target).component())
        if self.what in ("app", "all"):
            out.extend(self._app(i, arn) for i, arn in enumerate(self.outputs.app_secret_arns))
        return out

    @staticmethod
    def _app(index: int, arn: str) -> Component:
        name = arn.split(":secret:")[-1].rsplit("-", 1)[0] if ":secret:" in arn else arn
        short = name.rsplit("/", 1)[-1] or f"app{index}"
        return Component(f"app-{short}", arn, lambda _c: generate(APP_ALPHABET, 48),
                         touches=f"secret {name} (consumers read it at start: restart them afterwards)")

    def wait_until(self, ok: Callable[[], bool], what: str) -> float:
        t0 = time.monotonic()
        while True:
            if ok():
                return round(time.monotonic() - t0, 3)
            if time.monotonic() - t0 > self.set_timeout_s:
                raise DeadlineError(f"{what} did not take effect within {self.set_timeout_s:g}s",
                                    "check the service's status, then rerun to resume (both stored values are kept)")
            time.sleep(self.poll_s)

    def steps(self, comps: list[Component] | None = None) -> list[Step]:
        steps: list[Step] = []
        for comp in comps if comps is not None else self.components():
            if comp.skipped:
                steps.append(skipped_step(comp.prefix, comp.skipped))
            else:
                steps.extend(SecretSteps(comp, SecretStages(self.sm, comp.arn)).steps())
        return steps

    def runbook(self) -> Runbook:
        o = self.outputs
        comps = self.components()  # once: building them asks whether the cache answers
        rotated = [c.prefix for c in comps if not c.skipped]
        stakes = {"rotates": ", ".join(rotated) or "nothing",
                  "not rotated": ", ".join(f"{c.prefix} ({c.skipped})" for c in comps if c.skipped) or None,
                  "expected loss": "no data; clients still holding the previous credential are refused "
                                   "afterwards: they must reload AWSCURRENT"}
        return Runbook(self.name, self.steps(comps), Target(o.stack, production=o.production),
                       destructive=True, params={"what": self.what}, stakes=stakes)


def rotate(outputs: StackOutputs, what: str, store: JournalStore, *, grace_s: float = 300.0, yes: bool = False,
           dry_run: bool = False, reporter: Any = None,
           set_timeout_s: float = 120.0) -> tuple[Journal | None, dict[str, Any] | None]:
    rb = Rotation(outputs, what, grace_s, set_timeout_s=set_timeout_s).runbook()
    with notify.on_failure(outputs, "rotation-failed", "security", rotating=what):
        return execute(rb, store, yes=yes, dry_run=dry_run, reporter=reporter)


# CURRENT, PREVIOUS and SecretStages stay importable here for the rotation drill (recovery/drills/rotation.py).
__all__ = ["Rotation", "SecretStages", "rotate", "generate", "WHATS", "AwsAccessError", "CURRENT", "PENDING",
           "PREVIOUS"]
