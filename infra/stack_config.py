"""Typed stack configuration.

Everything the program needs arrives through `Pulumi.<stack>.yaml` under the `xai-dr:`
namespace. It is read once here and validated before any resource is declared, so a typo
stops `pulumi up` with one line naming the key instead of a half-applied stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

NAMESPACE = "xai-dr"
ROLES = ("primary", "dr")
OBJECTIVE_COMPONENTS = ("node", "postgresql", "redis", "explorer", "monitoring")
OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")

T = TypeVar("T")


class ConfigError(Exception):
    """A missing or invalid config value. The message names the key and how to fix it."""


@dataclass(frozen=True)
class Network:
    vpc_id: str
    availability_zones: list[str]
    subnet_ids: list[str]
    database_security_group_ids: list[str]
    cache_security_group_ids: list[str]


@dataclass(frozen=True)
class ObjectLock:
    mode: str
    days: int


@dataclass(frozen=True)
class Backup:
    bucket_name: str
    retention_days: int
    noncurrent_version_days: int
    offsite_retention_days: int
    interval_minutes: dict[str, int]
    object_lock: ObjectLock | None


@dataclass(frozen=True)
class Database:
    global_cluster_id: str | None  # primary only: the DR site reads it from the primary stack
    cluster_id: str
    engine_version: str
    instance_class: str
    instance_count: int
    database_name: str
    master_username: str
    backup_retention_days: int
    secret_replica_region: str | None
    port: int


@dataclass(frozen=True)
class Cache:
    replication_group_id: str
    node_type: str
    engine_version: str
    node_count: int
    snapshot_retention_days: int


@dataclass(frozen=True)
class Dns:
    zone_id: str
    record_name: str
    node_api_fqdn: str
    health_check_path: str
    # Where the traffic flag (a CloudWatch alarm) lives: the DR region, so that moving traffic needs
    # nothing from the primary region or from Route 53's API (infra/traffic_control.py).
    traffic_control_region: str


@dataclass(frozen=True)
class RecoveryAccess:
    trusted_principal_arns: list[str]
    trail_name: str
    app_secret_names: list[str]


@dataclass(frozen=True)
class Objective:
    rto_minutes: int
    rpo_minutes: int | None  # None where the plan says N/A


@dataclass(frozen=True)
class Subscription:
    role: str  # one of CONTACT_ROLES: the plan's contacts table
    protocol: str
    endpoint: str
    components: tuple[str, ...] = ()  # empty: every event


@dataclass(frozen=True)
class Webhook:
    name: str
    format: str  # slack | pagerduty
    url: str | None = None  # a URL that is not secret
    secret_name: str | None = None  # else the Secrets Manager secret holding {"url", "routing_key"}


@dataclass(frozen=True)
class Notifications:
    subscriptions: tuple[Subscription, ...]
    webhooks: tuple[Webhook, ...]


@dataclass(frozen=True)
class VaultLock:
    """AWS Backup Vault Lock. Compliance mode: after `changeable_for_days` nobody (not the backup account's
    root, not AWS) can shorten a recovery point's retention, delete it early or remove the lock."""
    changeable_for_days: int
    min_retention_days: int
    max_retention_days: int


@dataclass(frozen=True)
class BackupAccount:
    """The separate account holding the locked copies, reached through a provider of its own."""
    account_id: str
    deploy_role_arn: str  # what `pulumi up` assumes there (only the vault, its key, policy and lock)
    vault_name: str
    retention_days: int  # how long each copy is kept there
    lock: VaultLock


@dataclass(frozen=True)
class AuroraBackup:
    vault_name: str
    # Primary only: the DR site's vault, the target of the cross-region copies. A DR site copies into the
    # primary's vault, which it reads from the primary stack.
    peer_vault_name: str | None
    peer_region: str | None
    snapshot_schedule: str
    snapshot_retention_days: int
    continuous_retention_days: int
    backup_account: BackupAccount


@dataclass(frozen=True)
class StackConfig:
    stack: str
    region: str
    role: str
    production: bool
    peer_stack: str
    network: Network
    backup: Backup
    database: Database
    cache: Cache
    dns: Dns
    recovery: RecoveryAccess
    objectives: dict[str, Objective]
    notifications: Notifications
    aurora_backup: AuroraBackup  # issue 16: AWS Backup of the Aurora cluster (infra/aurora_backup.py)

    @property
    def is_primary(self) -> bool:
        return self.role == "primary"


class _Reader:
    """Walks the raw config and reports errors with the full key path."""

    def __init__(self, raw: Mapping[str, Any], stack: str) -> None:
        self.raw = raw
        self.stack = stack

    def fail(self, key: str, problem: str, example: str) -> ConfigError:
        return ConfigError(
            f"config {NAMESPACE}:{key} {problem} in stack '{self.stack}' - "
            f"set it in Pulumi.{self.stack}.yaml, e.g. {example}"
        )

    def section(self, key: str) -> Mapping[str, Any]:
        value = self.raw.get(key)
        if value is None:
            raise self.fail(key, "is missing", f"`pulumi config set --path {key}.<field> <value>`")
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be an object", f"{key}: {{...}}")
        return value

    def value(
        self,
        section: Mapping[str, Any] | None,
        key: str,
        kind: type[T],
        *,
        default: Any = ...,
        check: Callable[[Any], bool] | None = None,
        expect: str = "",
    ) -> T:
        source = self.raw if section is None else section
        leaf = key.rsplit(".", 1)[-1]
        if leaf not in source or source[leaf] is None:
            if default is not ...:
                return default
            raise self.fail(key, "is missing", f"`pulumi config set --path {key} <{expect or kind.__name__}>`")
        value = source[leaf]
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # YAML/JSON numbers may arrive as floats
        if kind is int and isinstance(value, bool):
            raise self.fail(key, f"must be an integer, not {value!r}", f"{key}: 7")
        if not isinstance(value, kind):
            what = {int: "an integer", str: "a string", list: "a list"}.get(kind, kind.__name__)
            raise self.fail(key, f"must be {what}, not {value!r}", f"{key}: <{expect or what}>")
        if kind is str and not value:
            raise self.fail(key, "is empty", f"{key}: <{expect or 'value'}>")
        if check is not None and not check(value):
            raise self.fail(key, f"is invalid ({value!r}); expected {expect}", f"{key}: <{expect}>")
        return value

    def strings(self, section: Mapping[str, Any] | None, key: str, *, min_items: int = 1, pattern: str = ".+") -> list[str]:
        items = self.value(section, key, list, default=[] if min_items == 0 else ..., expect="a list")
        rx = re.compile(pattern)
        if len(items) < min_items or not all(isinstance(i, str) and rx.fullmatch(i) for i in items):
            raise self.fail(
                key,
                f"must be a list of at least {min_items} value(s) matching {pattern}, not {items!r}",
                f"{key}: [..]",
            )
        return list(items)


def _positive(v: int) -> bool:
    return v > 0


def load(raw: Mapping[str, Any], *, stack: str, region: str | None) -> StackConfig:
    """Validate the raw `xai-dr:` config (keys without namespace) into a StackConfig."""
    r = _Reader(raw, stack)
    if not region:
        raise ConfigError(
            f"config aws:region is missing in stack '{stack}' - "
            f"set it with `pulumi config set aws:region us-east-1`"
        )
    role = r.value(None, "role", str, check=lambda v: v in ROLES, expect="primary or dr")
    peer_stack = r.value(None, "peerStack", str, expect="a stack name")
    # Said, not guessed from the name: a production target makes every destructive runbook ask for
    # its name to be retyped.
    production = r.value(None, "production", bool, expect="true or false")

    n = r.section("network")
    network = Network(
        vpc_id=r.value(n, "network.vpcId", str, check=lambda v: v.startswith("vpc-"), expect="vpc-..."),
        availability_zones=r.strings(n, "network.availabilityZones", min_items=2, pattern=r"[a-z]{2}-[a-z]+-\d[a-z]"),
        subnet_ids=r.strings(n, "network.subnetIds", min_items=2, pattern=r"subnet-[0-9a-f]+"),
        database_security_group_ids=r.strings(n, "network.databaseSecurityGroupIds", pattern=r"sg-[0-9a-f]+"),
        cache_security_group_ids=r.strings(n, "network.cacheSecurityGroupIds", pattern=r"sg-[0-9a-f]+"),
    )
    if len(set(network.availability_zones)) < 2:
        raise r.fail("network.availabilityZones", "must name at least two distinct AZs", "[us-east-1a, us-east-1b]")

    b = r.section("backup")
    lock_raw = b.get("objectLock")
    object_lock = None
    if lock_raw is not None:
        if not isinstance(lock_raw, Mapping):
            raise r.fail("backup.objectLock", "must be an object", "{mode: GOVERNANCE, days: 7}")
        object_lock = ObjectLock(
            mode=r.value(lock_raw, "backup.objectLock.mode", str, check=lambda v: v in OBJECT_LOCK_MODES, expect="GOVERNANCE or COMPLIANCE"),
            days=r.value(lock_raw, "backup.objectLock.days", int, check=_positive, expect="days > 0"),
        )
    intervals = b.get("intervalMinutes", {"database": 60, "chain": 360})
    # config (optional): configuration backups, which carry the explorer's and the monitoring's state;
    # the explorer's RPO (1 h) is met by taking them at least that often.
    if not isinstance(intervals, Mapping) or not {"database", "chain"} <= set(intervals) <= {"database", "chain", "config"}:
        raise r.fail("backup.intervalMinutes", "must give database and chain (and config, optionally)",
                     "{database: 60, chain: 360, config: 60}")
    backup = Backup(
        bucket_name=r.value(
            b, "backup.bucketName", str,
            check=lambda v: re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", v) is not None,
            expect="an S3 bucket name",
        ),
        retention_days=r.value(b, "backup.retentionDays", int, default=30, check=_positive, expect="days > 0"),
        noncurrent_version_days=r.value(b, "backup.noncurrentVersionDays", int, default=30, check=_positive, expect="days > 0"),
        offsite_retention_days=r.value(b, "backup.offsiteRetentionDays", int, default=90, check=_positive, expect="days > 0"),
        interval_minutes={
            k: r.value(intervals, f"backup.intervalMinutes.{k}", int, check=_positive, expect="minutes > 0")
            for k in ("database", "chain", "config") if k in intervals
        },
        object_lock=object_lock,
    )
    if object_lock and object_lock.days >= backup.retention_days:
        raise r.fail("backup.objectLock.days", "must be shorter than backup.retentionDays", "days: 7")

    d = r.section("database")
    database = Database(
        global_cluster_id=(
            r.value(d, "database.globalClusterId", str, expect="an identifier") if role == "primary" else None
        ),
        cluster_id=r.value(d, "database.clusterId", str, expect="an identifier"),
        engine_version=r.value(d, "database.engineVersion", str, expect='a version such as "15.10"'),
        instance_class=r.value(d, "database.instanceClass", str, check=lambda v: v.startswith("db."), expect="db.*"),
        instance_count=r.value(d, "database.instanceCount", int, default=2, check=lambda v: v >= 2, expect="at least 2 (multi-AZ)"),
        database_name=r.value(d, "database.databaseName", str, default="xai_blockchain"),
        master_username=r.value(
            d, "database.masterUsername", str, default="xaiadmin",
            check=lambda v: v not in ("postgres", "admin", "root"), expect="a non-default admin name (FSBP RDS.24)",
        ),
        backup_retention_days=r.value(
            d, "database.backupRetentionDays", int, default=7, check=lambda v: 7 <= v <= 35, expect="7..35 days",
        ),
        secret_replica_region=r.value(d, "database.secretReplicaRegion", str, default=None) if role == "primary" else None,
        # Aurora's default; a site may listen elsewhere (the local environment's clusters do).
        port=r.value(d, "database.port", int, default=5432, check=lambda v: 1150 <= v <= 65535, expect="1150..65535"),
    )

    c = r.section("cache")
    cache = Cache(
        replication_group_id=r.value(c, "cache.replicationGroupId", str, expect="an identifier"),
        node_type=r.value(c, "cache.nodeType", str, check=lambda v: v.startswith("cache."), expect="cache.*"),
        engine_version=r.value(c, "cache.engineVersion", str, expect='a version such as "7.1"'),
        node_count=r.value(c, "cache.nodeCount", int, default=2, check=lambda v: v >= 2, expect="at least 2 (multi-AZ)"),
        snapshot_retention_days=r.value(c, "cache.snapshotRetentionDays", int, default=1, check=_positive, expect="days >= 1"),
    )

    z = r.section("dns")
    dns = Dns(
        zone_id=r.value(z, "dns.zoneId", str, check=lambda v: re.fullmatch(r"Z[A-Z0-9]+", v) is not None, expect="a hosted zone id Z..."),
        record_name=r.value(z, "dns.recordName", str, expect="a DNS name"),
        node_api_fqdn=r.value(z, "dns.nodeApiFqdn", str, expect="the node API host name"),
        health_check_path=r.value(z, "dns.healthCheckPath", str, default="/api/v1/blockchain/info", check=lambda v: v.startswith("/"), expect="/path"),
        traffic_control_region=r.value(z, "dns.trafficControlRegion", str, check=lambda v: REGION.fullmatch(v) is not None,
                                       expect="the DR region, e.g. us-west-2"),
    )
    if role == "primary" and dns.traffic_control_region == region:
        # A flag in the region it fails away from would be lost with it.
        raise r.fail("dns.trafficControlRegion", f"is the primary's own region ({region}); it must be the DR region",
                     "trafficControlRegion: us-west-2")

    a = r.section("recovery")
    recovery = RecoveryAccess(
        trusted_principal_arns=r.strings(a, "recovery.trustedPrincipalArns", pattern=r"arn:aws:iam::\d{12}:.+"),
        trail_name=r.value(a, "recovery.trailName", str, expect="a CloudTrail trail name"),
        app_secret_names=r.strings(a, "recovery.appSecretNames", min_items=0),
    )

    o = r.section("objectives")
    missing = [k for k in OBJECTIVE_COMPONENTS if k not in o]
    if missing:
        raise r.fail(f"objectives.{missing[0]}", "is missing", "{rtoMinutes: 30, rpoMinutes: 5}")
    objectives = {}
    for comp in OBJECTIVE_COMPONENTS:
        entry = o[comp]
        if not isinstance(entry, Mapping):
            raise r.fail(f"objectives.{comp}", "must be an object", "{rtoMinutes: 30, rpoMinutes: 5}")
        objectives[comp] = Objective(
            rto_minutes=r.value(entry, f"objectives.{comp}.rtoMinutes", int, check=_positive, expect="minutes > 0"),
            rpo_minutes=r.value(entry, f"objectives.{comp}.rpoMinutes", int, default=None, check=_positive, expect="minutes > 0 or null"),
        )

    notifications = _notifications(r)
    return StackConfig(
        notifications=notifications,
        aurora_backup=_aurora_backup(r, role, region, backup),
        stack=stack,
        region=region,
        role=role,
        production=production,
        peer_stack=peer_stack,
        network=network,
        backup=backup,
        database=database,
        cache=cache,
        dns=dns,
        recovery=recovery,
        objectives=objectives,
    )


CONTACT_ROLES = ("dr-lead", "infrastructure", "database", "security")
SUBSCRIPTION_PROTOCOLS = ("email", "email-json", "sms", "https", "http")
WEBHOOK_FORMATS = ("slack", "pagerduty")
# What an event may be about (recovery/notify.py): the objectives' components, the site as a whole
# (failover, replication) and security (containment, credentials).
EVENT_COMPONENTS = (*OBJECTIVE_COMPONENTS, "site", "security")


def _notifications(r: _Reader) -> Notifications:
    n = r.section("notifications")
    subs_raw = r.value(n, "notifications.subscriptions", list, expect="a list")
    if not subs_raw:
        raise r.fail("notifications.subscriptions", "is empty: nobody would be told", "[{role: dr-lead, protocol: email, "
                     "endpoint: dr-lead@example.com}]")
    subs = []
    for i, raw in enumerate(subs_raw):
        key = f"notifications.subscriptions[{i}]"
        if not isinstance(raw, Mapping):
            raise r.fail(key, "must be an object", "{role: dr-lead, protocol: email, endpoint: ...}")
        comps = r.strings(raw, f"{key}.components", min_items=0, pattern="|".join(EVENT_COMPONENTS))
        subs.append(Subscription(
            role=r.value(raw, f"{key}.role", str, check=lambda v: v in CONTACT_ROLES, expect=" | ".join(CONTACT_ROLES)),
            protocol=r.value(raw, f"{key}.protocol", str, check=lambda v: v in SUBSCRIPTION_PROTOCOLS,
                             expect=" | ".join(SUBSCRIPTION_PROTOCOLS)),
            endpoint=r.value(raw, f"{key}.endpoint", str, expect="an address or URL"), components=tuple(comps)))
    hooks: list[Webhook] = []
    for i, raw in enumerate(r.value(n, "notifications.webhooks", list, default=[], expect="a list")):
        key = f"notifications.webhooks[{i}]"
        if not isinstance(raw, Mapping):
            raise r.fail(key, "must be an object", "{name: oncall, format: pagerduty, secretName: xai/oncall/pagerduty}")
        hook = Webhook(
            name=r.value(raw, f"{key}.name", str, check=lambda v: re.fullmatch(r"[a-z0-9-]+", v) is not None,
                         expect="a name of a-z, 0-9 and -"),
            format=r.value(raw, f"{key}.format", str, check=lambda v: v in WEBHOOK_FORMATS, expect="slack | pagerduty"),
            url=r.value(raw, f"{key}.url", str, default=None, check=lambda v: v.startswith(("https://", "http://")),
                        expect="an http(s) URL"),
            secret_name=r.value(raw, f"{key}.secretName", str, default=None, expect="a Secrets Manager name"))
        if (hook.url is None) == (hook.secret_name is None):
            raise r.fail(key, "must give exactly one of url and secretName", "{name: oncall, format: slack, url: https://...}")
        if hook.format == "pagerduty" and hook.url:
            raise r.fail(f"{key}.url", "cannot carry a PagerDuty routing key, which is secret",
                         "secretName: xai/oncall/pagerduty (a secret holding {\"routing_key\": ...})")
        if hook.name in {h.name for h in hooks}:
            raise r.fail(f"{key}.name", f"repeats '{hook.name}'", "a name of its own per webhook")
        hooks.append(hook)
    return Notifications(subscriptions=tuple(subs), webhooks=tuple(hooks))


def from_pulumi() -> StackConfig:
    """Read the running stack's config through the Pulumi SDK."""
    import pulumi

    cfg = pulumi.Config(NAMESPACE)
    keys = ("role", "production", "peerStack", "network", "backup", "database", "cache", "dns", "recovery", "objectives",
            "notifications", "auroraBackup")
    raw: dict[str, Any] = {}
    for key in keys:
        try:
            value = cfg.get_object(key)
        except Exception:  # a scalar that is not JSON, e.g. role: primary
            value = cfg.get(key)
        if value is None:
            value = cfg.get(key)
        if value is not None:
            raw[key] = value
    return load(raw, stack=pulumi.get_stack(), region=pulumi.Config("aws").get("region"))


# AWS Backup keeps continuous backups (point-in-time restore) at most 35 days.
MAX_CONTINUOUS_RETENTION_DAYS = 35
ACCOUNT_ID = re.compile(r"\d{12}")


def _aurora_backup(r: _Reader, role: str, region: str, backup: Backup) -> AuroraBackup:
    """`auroraBackup`: the AWS Backup plan of the site's Aurora cluster and its two copies (docs/backups.md)."""
    a = r.section("auroraBackup")
    name_ok = re.compile(r"[a-zA-Z0-9_.-]{2,50}")
    vault = r.value(a, "auroraBackup.vaultName", str, check=lambda v: name_ok.fullmatch(v) is not None,
                    expect="a vault name of 2-50 letters, digits, - _ .")
    peer_vault = peer_region = None
    if role == "primary":
        peer_vault = r.value(a, "auroraBackup.peerVaultName", str, check=lambda v: name_ok.fullmatch(v) is not None,
                             expect="the DR site's auroraBackup.vaultName")
        peer_region = r.value(a, "auroraBackup.peerRegion", str, check=lambda v: REGION.fullmatch(v) is not None
                              and v != region, expect=f"the DR region, not {region}")
    b = a.get("backupAccount")
    if not isinstance(b, Mapping):
        raise r.fail("auroraBackup.backupAccount", "is missing" if b is None else "must be an object",
                     "{accountId: '210987654321', deployRoleArn: arn:aws:iam::210987654321:role/..., vaultName: ..., lock: {...}}")
    account = r.value(b, "auroraBackup.backupAccount.accountId", str,
                      check=lambda v: ACCOUNT_ID.fullmatch(v) is not None, expect="a 12-digit account id, quoted")
    lock_raw = b.get("lock")
    if not isinstance(lock_raw, Mapping):
        raise r.fail("auroraBackup.backupAccount.lock", "is missing" if lock_raw is None else "must be an object",
                     "{changeableForDays: 3, minRetentionDays: 30, maxRetentionDays: 365}")
    key = "auroraBackup.backupAccount.lock"
    lock = VaultLock(
        # AWS's minimum grace time is 3 days; without it the lock would be governance mode.
        changeable_for_days=r.value(lock_raw, f"{key}.changeableForDays", int, check=lambda v: v >= 3, expect="days >= 3"),
        min_retention_days=r.value(lock_raw, f"{key}.minRetentionDays", int, check=_positive, expect="days > 0"),
        max_retention_days=r.value(lock_raw, f"{key}.maxRetentionDays", int, check=lambda v: 1 <= v <= 36500,
                                   expect="1..36500 days"))
    retention = r.value(b, "auroraBackup.backupAccount.retentionDays", int, default=backup.offsite_retention_days,
                        check=_positive, expect="days > 0")
    if not lock.min_retention_days <= retention <= lock.max_retention_days:
        # The lock refuses a copy kept shorter or longer than it allows: every copy job would fail.
        raise r.fail("auroraBackup.backupAccount.retentionDays",
                     f"({retention}) is outside the lock's {lock.min_retention_days}..{lock.max_retention_days} days",
                     f"retentionDays: {lock.min_retention_days}")
    return AuroraBackup(
        vault_name=vault, peer_vault_name=peer_vault, peer_region=peer_region,
        snapshot_schedule=r.value(a, "auroraBackup.snapshotSchedule", str, default="cron(0 5 ? * * *)",
                                  check=lambda v: v.startswith(("cron(", "rate(")), expect="cron(...) or rate(...)"),
        snapshot_retention_days=r.value(a, "auroraBackup.snapshotRetentionDays", int, default=backup.retention_days,
                                        check=_positive, expect="days > 0"),
        continuous_retention_days=r.value(
            a, "auroraBackup.continuousRetentionDays", int, default=MAX_CONTINUOUS_RETENTION_DAYS,
            check=lambda v: 1 <= v <= MAX_CONTINUOUS_RETENTION_DAYS, expect=f"1..{MAX_CONTINUOUS_RETENTION_DAYS} days (AWS's cap)"),
        backup_account=BackupAccount(
            account_id=account,
            deploy_role_arn=r.value(b, "auroraBackup.backupAccount.deployRoleArn", str,
                                    check=lambda v: v.startswith(f"arn:aws:iam::{account}:role/"),
                                    expect=f"a role ARN in account {account}"),
            vault_name=r.value(b, "auroraBackup.backupAccount.vaultName", str,
                               check=lambda v: name_ok.fullmatch(v) is not None, expect="a vault name"),
            retention_days=retention, lock=lock))
