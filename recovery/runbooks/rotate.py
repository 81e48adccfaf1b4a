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
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from recovery import redact
from recovery.aws import aws_error, client, error_code
from recovery.cache import CacheTarget, round_trip, token_works
from recovery.errors import AwsAccessError, DatabaseError, DeadlineError, InputError, RecoveryError
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step, StepContext, Target
from recovery.engine.runbook import execute
from recovery.stack import StackOutputs

WHATS = ("db", "cache", "app", "all")
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"

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


# --------------------------------------------------------------------------------------------
# Secrets Manager, always by explicit stage
# --------------------------------------------------------------------------------------------


def stages_first(versions: dict[str, list[str]], stage: str) -> str | None:
    ids = versions.get(stage) or []
    return ids[0] if ids else None


class SecretStages:
    def __init__(self, sm: Any, arn: str) -> None:
        self.sm = sm
        self.arn = arn

    @property
    def short(self) -> str:
        return self.arn.split(":secret:")[-1]

    def versions(self) -> dict[str, list[str]]:
        """stage -> version ids holding it."""
        try:
            resp = self.sm.list_secret_version_ids(SecretId=self.arn, IncludeDeprecated=False)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"listing the versions of secret {self.short}") from None
        out: dict[str, list[str]] = {}
        for v in resp.get("Versions", []):
            for stage in v.get("VersionStages", []):
                out.setdefault(stage, []).append(v["VersionId"])
        return out

    def version(self, stage: str) -> str | None:
        return stages_first(self.versions(), stage)

    def value(self, stage: str) -> str | None:
        try:
            resp = self.sm.get_secret_value(SecretId=self.arn, VersionStage=stage)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException" and stage != CURRENT:
                return None
            raise aws_error(exc, f"reading secret {self.short} ({stage})") from None
        text = str(resp.get("SecretString") or "")
        redact.register(text)
        try:
            doc = json.loads(text)
            if isinstance(doc, dict) and isinstance(doc.get("password"), str):
                redact.register(doc["password"])
        except ValueError:
            pass
        return text

    def put_pending(self, text: str) -> str:
        version_id = str(uuid.uuid4())
        try:
            self.sm.put_secret_value(SecretId=self.arn, ClientRequestToken=version_id, SecretString=text,
                                     VersionStages=[PENDING])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"storing the new value of secret {self.short} as {PENDING}") from None
        return version_id

    def promote(self, version_id: str) -> None:
        current = self.version(CURRENT)
        try:
            if current != version_id:
                kwargs = {"RemoveFromVersionId": current} if current else {}
                self.sm.update_secret_version_stage(SecretId=self.arn, VersionStage=CURRENT,
                                                    MoveToVersionId=version_id, **kwargs)
            if version_id in (self.versions().get(PENDING) or []):
                self.sm.update_secret_version_stage(SecretId=self.arn, VersionStage=PENDING,
                                                    RemoveFromVersionId=version_id)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"promoting {PENDING} to {CURRENT} on secret {self.short}") from None


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

    # -- components ---------------------------------------------------------------------------

    def components(self) -> list[Component]:
        out: list[Component] = []
        if self.what in ("db", "all"):
            out.append(self._db())
        if self.what in ("cache", "all"):
            out.append(self._cache())
        if self.what in ("app", "all"):
            out.extend(self._app(i, arn) for i, arn in enumerate(self.outputs.app_secret_arns))
        return out

    def _db_params(self, text: str) -> dict[str, Any]:
        o = self.outputs
        try:
            doc = json.loads(text)
        except ValueError:
            doc = {"password": text}
        return {"host": str(doc.get("host") or o.db_endpoint), "port": int(doc.get("port") or o.db_port),
                "user": str(doc.get("username") or o.db_username), "dbname": str(doc.get("dbname") or o.db_name),
                "password": str(doc.get("password", ""))}

    def _db_connect(self, text: str) -> Any:
        import psycopg

        p = self._db_params(text)
        redact.register(p["password"])
        return psycopg.connect(host=p["host"], port=p["port"], user=p["user"], dbname=p["dbname"],
                               password=p["password"], connect_timeout=5, autocommit=True)

    def _db_works(self, text: str) -> bool:
        import psycopg

        try:
            self._db_connect(text).close()
            return True
        except psycopg.OperationalError as exc:
            msg = str(exc)
            if "authentication failed" in msg or "28P01" in msg or "password" in msg.lower():
                return False
            p = self._db_params(text)
            raise DatabaseError(f"cannot reach PostgreSQL at {p['host']}:{p['port']}: {redact.scrub(msg.splitlines()[0] if msg else type(exc).__name__)}",
                                "check the database endpoint and network, then rerun to resume") from None

    def _db(self) -> Component:
        o = self.outputs

        def new_text(current: str) -> str:
            try:
                doc = json.loads(current)
                if not isinstance(doc, dict):
                    raise ValueError
            except ValueError:
                return generate(DB_ALPHABET)
            doc["password"] = generate(DB_ALPHABET)
            return json.dumps(doc, sort_keys=True)

        def apply(text: str) -> dict[str, Any]:
            rds = client("rds", o.region)
            try:
                rds.modify_db_cluster(DBClusterIdentifier=o.db_cluster_id,
                                      MasterUserPassword=self._db_params(text)["password"], ApplyImmediately=True)
            except Exception as exc:  # noqa: BLE001
                raise aws_error(exc, f"setting the master password of cluster {o.db_cluster_id}") from None
            waited = self._wait_until(lambda: self._db_works(text), f"the new master password of {o.db_cluster_id}")
            return {"cluster": o.db_cluster_id, "waited_s": waited}

        def query(text: str) -> dict[str, Any]:
            import psycopg

            try:
                with self._db_connect(text) as conn:
                    row = conn.execute("SELECT current_user, now()").fetchone()
                    tables = conn.execute("SELECT count(*) FROM pg_catalog.pg_tables "
                                          "WHERE schemaname = 'public'").fetchone()
            except psycopg.Error as exc:
                raise DatabaseError(f"the new password does not work for a query: {type(exc).__name__}",
                                    "rerun to resume; AWSCURRENT is unchanged until this passes") from None
            return {"user": row[0] if row else None, "public_tables": tables[0] if tables else None}

        return Component("db", o.db_secret_arn, new_text, self._db_works, apply, query,
                         touches=f"secret {o.db_secret_arn.split(':secret:')[-1]}, RDS cluster {o.db_cluster_id} master password")

    def cache_target(self) -> CacheTarget | None:
        """Where the cache listens; None when a local stack's cache is not backed by redis-server."""
        o = self.outputs
        if o.local:
            from recovery.local.redis_cache import backed_target

            return backed_target(o)
        return CacheTarget(o.cache_endpoint, o.cache_port, tls=True)

    def _cache(self) -> Component:
        o = self.outputs
        target = self.cache_target()
        group = o.cache_replication_group_id
        touches = f"secret {o.cache_secret_arn.split(':secret:')[-1]}, ElastiCache {group} auth token"
        if target is None:
            return Component("cache", o.cache_secret_arn, lambda _c: "", touches=touches, skipped=(
                "cache steps skipped: redis-server is not installed, so the local environment's cache group "
                "is not backed by a real Redis (apt-get install redis-server, then `recovery local down && "
                "recovery local up`)"))

        def modify(token: str, strategy: str) -> None:
            ec = client("elasticache", o.region)
            try:
                ec.modify_replication_group(ReplicationGroupId=group, AuthToken=token,
                                            AuthTokenUpdateStrategy=strategy, ApplyImmediately=True)
            except Exception as exc:  # noqa: BLE001
                raise aws_error(exc, f"changing the auth token of {group} ({strategy})") from None

        def apply(token: str) -> dict[str, Any]:
            modify(token, "ROTATE")
            waited = self._wait_until(lambda: token_works(target, token), f"the new auth token of {group}")
            return {"group": group, "strategy": "ROTATE", "rotated_at": time.time(), "waited_s": waited}

        comp = Component("cache", o.cache_secret_arn, lambda _c: generate(CACHE_ALPHABET),
                         lambda t: token_works(target, t), apply, lambda t: round_trip(target, t), touches=touches)
        stages = SecretStages(self.sm, o.cache_secret_arn)

        def grace(ctx: StepContext) -> dict[str, Any]:
            rotated_at = float(ctx.results.get("cache-set", {}).get("rotated_at") or time.time())
            end = rotated_at + self.grace_s
            left = end - time.time()
            if left > 0:
                ctx.info(f"grace: both cache tokens stay valid for {left:.0f}s more so clients reload AWSCURRENT "
                         "(--no-grace skips this)")
            while time.time() < end:
                time.sleep(min(30.0, max(0.0, end - time.time())))
                if time.time() < end:
                    ctx.info(f"grace: {end - time.time():.0f}s left")
            return {"grace_s": self.grace_s}

        def set_only_new(ctx: StepContext) -> dict[str, Any]:
            token = stages.value(CURRENT) or ""
            modify(token, "SET")
            previous = stages.value(PREVIOUS)
            if previous:
                self._wait_until(lambda: not token_works(target, previous), f"the old auth token of {group} to stop working")
            return {"group": group, "strategy": "SET"}

        def set_holds(ctx: StepContext) -> bool:
            if not self._promoted(ctx, stages, "cache"):
                return False
            previous = stages.value(PREVIOUS)
            current = stages.value(CURRENT) or ""
            return bool(token_works(target, current) and (previous is None or not token_works(target, previous)))

        comp.extra_steps = [
            Step("cache-grace", grace, touches="waits --grace (both tokens valid)"),
            Step("cache-only-new", set_only_new, touches=f"ElastiCache {group} auth token (SET: old token invalid)",
                 check=set_holds),
        ]
        return comp

    def _app(self, index: int, arn: str) -> Component:
        name = arn.split(":secret:")[-1].rsplit("-", 1)[0] if ":secret:" in arn else arn
        short = name.rsplit("/", 1)[-1] or f"app{index}"
        return Component(f"app-{short}", arn, lambda _c: generate(APP_ALPHABET, 48),
                         touches=f"secret {name} (consumers read it at start: restart them afterwards)")

    # -- helpers -------------------------------------------------------------------------------

    def _wait_until(self, ok: Callable[[], bool], what: str) -> float:
        t0 = time.monotonic()
        while True:
            if ok():
                return round(time.monotonic() - t0, 3)
            if time.monotonic() - t0 > self.set_timeout_s:
                raise DeadlineError(f"{what} did not take effect within {self.set_timeout_s:g}s",
                                    "check the service's status, then rerun to resume (both stored values are kept)")
            time.sleep(self.poll_s)

    @staticmethod
    def _created(ctx: StepContext, prefix: str) -> str | None:
        vid = ctx.results.get(f"{prefix}-create", {}).get("version_id")
        return str(vid) if vid else None

    def _new_version(self, ctx: StepContext, stages: SecretStages, prefix: str) -> tuple[str, bool] | None:
        """(version id of this rotation's new value, already promoted?) or None if none is stored."""
        v = stages.versions()
        current = stages_first(v, CURRENT)
        pending = [p for p in v.get(PENDING) or [] if p != current]
        if pending:
            return pending[0], False
        created = self._created(ctx, prefix)
        if created and created == current:
            return created, True
        return None

    def _promoted(self, ctx: StepContext, stages: SecretStages, prefix: str) -> bool:
        found = self._new_version(ctx, stages, prefix)
        return bool(found and found[1])

    def _new_value(self, ctx: StepContext, stages: SecretStages, prefix: str) -> str:
        found = self._new_version(ctx, stages, prefix)
        if found is None:
            raise RecoveryError(f"no new value of secret {stages.short} is stored ({PENDING} is missing)",
                                "rerun the rotation from the start")
        text = stages.value(CURRENT if found[1] else PENDING)
        if text is None:
            raise RecoveryError(f"secret {stages.short} lost its {PENDING} value", "rerun the rotation")
        return text

    # -- steps ---------------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        steps: list[Step] = []
        for comp in self.components():
            if comp.skipped:
                note = comp.skipped

                def skipped(ctx: StepContext, note: str = note) -> dict[str, Any]:
                    ctx.info(note)
                    return {"skipped": note}

                steps.append(Step(f"{comp.prefix}-skipped", skipped, touches="nothing (see the note)"))
                continue
            steps.extend(self._component_steps(comp))
        return steps

    def _component_steps(self, comp: Component) -> list[Step]:
        p = comp.prefix
        stages = SecretStages(self.sm, comp.arn)

        def create_check(ctx: StepContext) -> Any:
            found = self._new_version(ctx, stages, p)
            return {"version_id": found[0], "reused": True} if found else False

        def create(ctx: StepContext) -> dict[str, Any]:
            current = stages.value(CURRENT) or ""
            text = comp.new_text(current)
            redact.register(text)
            version_id = stages.put_pending(text)
            return {"version_id": version_id, "secret": stages.short}

        steps = [Step(f"{p}-create", create, touches=f"{PENDING} of {comp.touches}", check=create_check)]

        if comp.apply is not None and comp.works is not None:
            works, apply_fn = comp.works, comp.apply

            def set_check(ctx: StepContext) -> Any:
                found = self._new_version(ctx, stages, p)
                if found is None:
                    return False
                if found[1]:
                    return {"already_promoted": True}
                return works(self._new_value(ctx, stages, p))

            def set_action(ctx: StepContext) -> dict[str, Any]:
                return apply_fn(self._new_value(ctx, stages, p))

            steps.append(Step(f"{p}-set", set_action, touches=comp.touches, check=set_check))

        def test(ctx: StepContext) -> dict[str, Any]:
            text = self._new_value(ctx, stages, p)
            if comp.query is not None:
                return {"tested": "connect + query", **comp.query(text)}
            if not text:
                raise RecoveryError(f"the new value of secret {stages.short} reads back empty", "rerun the rotation")
            return {"tested": f"read back by stage ({len(text)} characters)"}

        steps.append(Step(f"{p}-test", test, touches="nothing (read-only)"))

        def finish_check(ctx: StepContext) -> Any:
            return {"promoted": True} if self._promoted(ctx, stages, p) else False

        def finish(ctx: StepContext) -> dict[str, Any]:
            found = self._new_version(ctx, stages, p)
            if found is None:
                raise RecoveryError(f"no {PENDING} version of secret {stages.short} to promote", "rerun the rotation")
            stages.promote(found[0])
            return {"promoted": True, "version_id": found[0]}

        steps.append(Step(f"{p}-finish", finish, touches=f"{CURRENT}/{PREVIOUS} of secret {stages.short}",
                          check=finish_check))
        steps.extend(comp.extra_steps)

        if comp.works is not None:
            works2 = comp.works

            def verify(ctx: StepContext) -> dict[str, Any]:
                current = stages.value(CURRENT) or ""
                if not works2(current):
                    raise RecoveryError(f"{CURRENT} of secret {stages.short} does not work against the service",
                                        "check the service; rerun to resume")
                previous = stages.value(PREVIOUS)
                old_rejected = None if previous is None else not works2(previous)
                if old_rejected is False:
                    raise RecoveryError(f"the previous value of secret {stages.short} still works",
                                        "rerun to resume; the service did not drop the old credential")
                return {"current_works": True, "previous_rejected": old_rejected}

            steps.append(Step(f"{p}-verify", verify, touches="nothing (read-only)"))
        return steps

    def runbook(self) -> Runbook:
        o = self.outputs
        return Runbook(self.name, self.steps(), Target(o.stack, production=o.production),
                       destructive=True, params={"what": self.what})


def rotate(outputs: StackOutputs, what: str, store: JournalStore, *, grace_s: float = 300.0, yes: bool = False,
           dry_run: bool = False, reporter: Any = None,
           set_timeout_s: float = 120.0) -> tuple[Journal | None, dict[str, Any] | None]:
    rb = Rotation(outputs, what, grace_s, set_timeout_s=set_timeout_s).runbook()
    return execute(rb, store, yes=yes, dry_run=dry_run, reporter=reporter)


__all__ = ["Rotation", "SecretStages", "rotate", "generate", "WHATS", "AwsAccessError"]
