"""CrossGuard rules for the DR platform: AWS Foundational Security Best Practices (FSBP) and the
project's own DR requirements.

This module is importable without side effects: it only defines functions and policy objects.
`policy/__main__.py` builds the `PolicyPack` (which starts a gRPC server) from `ALL_POLICIES`.

Every rule is named after the Security Hub control it implements (``S3.5``, ``RDS.27`` ...), or
``XAI.<service>.<what>`` for a project requirement that no FSBP control covers. Where one control
needs both a per-resource check and an "every bucket/cluster has one" check, the stack rule is named
``<control>.coverage``.

Unknown values (the policy this pack follows)
---------------------------------------------
During ``pulumi preview`` an input computed from another resource's output that does not exist yet
(a KMS key ARN, a bucket ID, a JSON policy built with ``Output.apply``) reaches CrossGuard as an
*unknown* sentinel. CrossGuard's proxy raises ``UnknownValueError`` when such a value is read; the
pack would then only print an advisory "can't run policy during preview" and skip the rest of the
rule. Instead, every read here goes through :func:`prop`, which returns :data:`UNKNOWN` and lets
the rule continue with the other settings. The rules then:

* **fail** an explicit bad value (``storageEncrypted: false``, ``sseAlgorithm: "AES256"``,
  a username ``postgres``), and a **missing** setting that the control requires (an absent key
  means "not set", and the AWS default is the insecure one or is not what we want to rely on);
* **tolerate** an unknown value: it is computed and will be decided by the deployment, and the
  same rule runs again on ``pulumi up`` with the real value. For references whose only job is to
  point somewhere (``kmsKeyId``, ``kmsMasterKeyId``, ``healthCheckId``, ``replicaKmsKeyId``) an
  unknown value *is* compliant: the setting is present.
* In stack rules that join resources (a bucket and its configuration resources, a cluster and its
  instances), the join uses the name props (``bucket``, ``clusterIdentifier``) and, when those are
  unknown, the engine's property dependencies. When a child's target can't be determined at all
  (unknown name, no dependency information), the "has one" check is not failed for lack of a
  provable link: it reports nothing rather than a false positive.

Python ``None`` and ``pulumi.output.Unknown`` are also treated as unknown: that is how the
Pulumi mock monitor hands an unknown input to a unit test. Secrets, wrapped the way the engine and
the mocks wrap them, are unwrapped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, List, Optional, Union

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

__all__ = ["ALL_POLICIES", "UNKNOWN", "MISSING", "prop"]

# --------------------------------------------------------------------------------------------------
# Resource type tokens
# --------------------------------------------------------------------------------------------------
KMS_KEY = "aws:kms/key:Key"
S3_BUCKET = "aws:s3/bucket:Bucket"
S3_BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
S3_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
S3_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
S3_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
S3_REPLICATION_CONFIG = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
RDS_GLOBAL_CLUSTER = "aws:rds/globalCluster:GlobalCluster"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
ELASTICACHE_RG = "aws:elasticache/replicationGroup:ReplicationGroup"
R53_HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
R53_RECORD = "aws:route53/record:Record"
CW_METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"

# --------------------------------------------------------------------------------------------------
# Reading props: unknown-tolerant, proxy-safe, secret-unwrapping
# --------------------------------------------------------------------------------------------------


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:  # never let a sentinel pass a truthiness test by accident
        return False


UNKNOWN: Any = _Sentinel("UNKNOWN")
"""A value that is computed and not known yet (preview)."""
MISSING: Any = _Sentinel("MISSING")
"""A key that is not set at all."""

_UNKNOWN_SENTINELS = frozenset({
    UNKNOWN_BOOLEAN_VALUE, UNKNOWN_NUMBER_VALUE, UNKNOWN_STRING_VALUE, UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE, UNKNOWN_ARCHIVE_VALUE, UNKNOWN_OBJECT_VALUE,
})
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def _normalise(value: Any) -> Any:
    if value is None:
        return UNKNOWN
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return UNKNOWN
    if type(value).__name__ == "Unknown" and type(value).__module__.startswith("pulumi"):
        return UNKNOWN
    if isinstance(value, Mapping):
        try:
            sig = value.get(_SIG_KEY)
        except UnknownValueError:
            sig = None
        if sig == _SECRET_SIG:
            try:
                return _normalise(value["value"])
            except (KeyError, UnknownValueError):
                return UNKNOWN
    return value


def prop(obj: Any, *path: Union[str, int]) -> Any:
    """Read ``obj[path[0]][path[1]]...``.

    Returns :data:`MISSING` when a key along the path is absent, :data:`UNKNOWN` when a value
    along the path is unknown. A one-element list where an object is expected (older provider
    shapes of ``rule``/``expiration``...) is read through as that object.
    """
    cur = _normalise(obj)
    for key in path:
        if cur is UNKNOWN or cur is MISSING:
            return cur
        if isinstance(key, str) and _is_list(cur) and len(cur) == 1:
            cur = _item(cur, 0)
            if cur is UNKNOWN:
                return UNKNOWN
        try:
            if isinstance(key, str):
                if not isinstance(cur, Mapping):
                    return MISSING
                if key not in cur:
                    return MISSING
                cur = cur[key]
            else:
                if not _is_list(cur) or key >= len(cur):
                    return MISSING
                cur = cur[key]
        except UnknownValueError:
            return UNKNOWN
        cur = _normalise(cur)
    return cur


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _item(seq: Any, i: int) -> Any:
    try:
        return _normalise(seq[i])
    except UnknownValueError:
        return UNKNOWN


def items(value: Any) -> List[Any]:
    """The elements of a list prop (each normalised); ``[]`` when missing or not a list."""
    if not _is_list(value):
        return []
    return [_item(value, i) for i in range(len(value))]


def is_true(value: Any) -> bool:
    """True for ``True`` or the string ``"true"`` (some v6 inputs, e.g. ElastiCache's
    ``atRestEncryptionEnabled``, were strings; v7 takes a bool)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return False


def as_number(value: Any) -> Optional[float]:
    """Numbers arrive as floats from the engine; accept numeric strings too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def present(value: Any) -> bool:
    """A reference that is set: a non-empty value, or an unknown (computed) one."""
    if value is UNKNOWN:
        return True
    if value is MISSING:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    return True


Report = Callable[[str], None]


def require_true(props: Any, key: str, report: Report, what: str) -> None:
    value = prop(props, key)
    if value is UNKNOWN:
        return
    if value is MISSING:
        report(f"{key} is not set; {what} requires {key}: true")
    elif not is_true(value):
        report(f"{key} is {value!r}; {what} requires {key}: true")


def require_at_least(props: Any, key: str, minimum: float, report: Report, what: str) -> None:
    value = prop(props, key)
    if value is UNKNOWN:
        return
    if value is MISSING:
        report(f"{key} is not set; {what} requires {key} >= {minimum:g}")
        return
    number = as_number(value)
    if number is None or number < minimum:
        report(f"{key} is {value!r}; {what} requires {key} >= {minimum:g}")


def require_present(props: Any, key: str, report: Report, what: str) -> None:
    if not present(prop(props, key)):
        report(f"{key} is not set; {what} requires it")


def _resource_report(report_violation: ReportViolation) -> Report:
    return lambda message: report_violation(message, None)


def _for_types(*types: str) -> Callable[[Callable[[ResourceValidationArgs, Report], None]],
                                         Callable[[ResourceValidationArgs, ReportViolation], None]]:
    """Wrap a check so that it only runs on the given resource types."""
    def wrap(check: Callable[[ResourceValidationArgs, Report], None]
             ) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
        def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
            if args.resource_type in types:
                check(args, _resource_report(report_violation))
        validate.__name__ = check.__name__
        validate.__doc__ = check.__doc__
        return validate
    return wrap


def _shown(value: Any) -> str:
    return "not set" if value is MISSING else repr(value)


def _enabled(value: Any) -> bool:
    return isinstance(value, str) and value == "Enabled"


# --------------------------------------------------------------------------------------------------
# S3 - resource rules
# --------------------------------------------------------------------------------------------------


def _statement_denies_insecure_transport(statement: Any) -> bool:
    if not isinstance(statement, Mapping):
        return False
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if isinstance(principal, Mapping):
        principal = principal.get("AWS")
    principals = principal if isinstance(principal, list) else [principal]
    if "*" not in principals:
        return False
    action = statement.get("Action")
    actions = action if isinstance(action, list) else [action]
    if not any(a in ("*", "s3:*") for a in actions):
        return False
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return False
    bool_condition = condition.get("Bool")
    if not isinstance(bool_condition, Mapping):
        return False
    value = bool_condition.get("aws:SecureTransport")
    values = value if isinstance(value, list) else [value]
    return any(str(v).lower() == "false" for v in values)


@_for_types(S3_POLICY)
def validate_s3_5_tls_only(args: ResourceValidationArgs, report: Report) -> None:
    """The bucket policy has a Deny on s3:* for every principal when aws:SecureTransport is false."""
    policy = prop(args.props, "policy")
    if policy is UNKNOWN:
        return  # built from other resources' outputs; checked on `pulumi up`
    if policy is MISSING:
        report("bucket policy has no `policy` document")
        return
    if isinstance(policy, str):
        try:
            document = json.loads(policy)
        except ValueError:
            report("bucket policy is not valid JSON")
            return
    elif isinstance(policy, Mapping):
        document = json.loads(json.dumps(_plain(policy)))
    else:
        report(f"bucket policy has an unexpected type {type(policy).__name__}")
        return
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not any(_statement_denies_insecure_transport(s) for s in statements):
        report("bucket policy does not deny requests with aws:SecureTransport=false "
               "(need Effect Deny, Principal *, Action s3:*, Condition Bool aws:SecureTransport false)")


def _plain(value: Any) -> Any:
    """A proxy tree as plain dicts/lists (unknowns as None)."""
    value = _normalise(value)
    if value is UNKNOWN:
        return None
    if isinstance(value, Mapping):
        return {k: _plain(prop(value, k)) for k in value}
    if _is_list(value):
        return [_plain(v) for v in items(value)]
    return value


_PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


@_for_types(S3_PUBLIC_ACCESS_BLOCK)
def validate_s3_8_public_access_block(args: ResourceValidationArgs, report: Report) -> None:
    """All four public-access blocks are true."""
    for flag in _PUBLIC_ACCESS_FLAGS:
        require_true(args.props, flag, report, "S3.8 (block public access)")


@_for_types(S3_OWNERSHIP)
def validate_s3_12_no_acls(args: ResourceValidationArgs, report: Report) -> None:
    """Object ownership is BucketOwnerEnforced, which disables ACLs."""
    ownership = prop(args.props, "rule", "objectOwnership")
    if ownership is UNKNOWN:
        return
    if ownership != "BucketOwnerEnforced":
        shown = "not set" if ownership is MISSING else repr(ownership)
        report(f"rule.objectOwnership is {shown}; S3.12 requires BucketOwnerEnforced (ACLs disabled)")


@_for_types(S3_LIFECYCLE)
def validate_s3_13_lifecycle(args: ResourceValidationArgs, report: Report) -> None:
    """An enabled rule expires objects, and an enabled rule aborts incomplete multipart uploads."""
    rules = prop(args.props, "rules")
    if rules is UNKNOWN:
        return
    rule_list = items(rules)
    if any(r is UNKNOWN for r in rule_list):
        return
    enabled = [r for r in rule_list if prop(r, "status") is UNKNOWN or _enabled(prop(r, "status"))]
    if not enabled:
        report("lifecycle configuration has no enabled rule")
        return

    def expires(rule: Any) -> bool:
        expiration = prop(rule, "expiration")
        if expiration is UNKNOWN:
            return True
        if expiration is MISSING:
            return False
        days, date = prop(expiration, "days"), prop(expiration, "date")
        if days is UNKNOWN or date is UNKNOWN:
            return True
        number = as_number(days)
        return (number is not None and number > 0) or (isinstance(date, str) and date != "")

    def aborts_multipart(rule: Any) -> bool:
        days = prop(rule, "abortIncompleteMultipartUpload", "daysAfterInitiation")
        if days is UNKNOWN:
            return True
        number = as_number(days)
        return number is not None and number > 0

    if not any(expires(r) for r in enabled):
        report("no enabled lifecycle rule has an expiration (days > 0 or a date); S3.13 requires one")
    if not any(aborts_multipart(r) for r in enabled):
        report("no enabled lifecycle rule aborts incomplete multipart uploads "
               "(abortIncompleteMultipartUpload.daysAfterInitiation > 0)")


@_for_types(S3_BUCKET_VERSIONING)
def validate_s3_versioning(args: ResourceValidationArgs, report: Report) -> None:
    """versioningConfiguration.status is Enabled."""
    status = prop(args.props, "versioningConfiguration", "status")
    if status is UNKNOWN:
        return
    if not _enabled(status):
        shown = "not set" if status is MISSING else repr(status)
        report(f"versioningConfiguration.status is {shown}; versioning must be Enabled")


_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


@_for_types(S3_SSE)
def validate_s3_sse_kms(args: ResourceValidationArgs, report: Report) -> None:
    """Default encryption is SSE-KMS (aws:kms) under an explicit KMS key."""
    rules = prop(args.props, "rules")
    if rules is UNKNOWN:
        return
    rule_list = items(rules)
    if not rule_list:
        report("no server-side encryption rule; SSE-KMS with a customer key is required")
        return
    for i, rule in enumerate(rule_list):
        if rule is UNKNOWN:
            continue
        default = prop(rule, "applyServerSideEncryptionByDefault")
        if default is UNKNOWN:
            continue
        if default is MISSING:
            report(f"rules[{i}] has no applyServerSideEncryptionByDefault")
            continue
        algorithm = prop(default, "sseAlgorithm")
        if algorithm is not UNKNOWN and algorithm not in _KMS_ALGORITHMS:
            shown = "not set" if algorithm is MISSING else repr(algorithm)
            report(f"rules[{i}] sseAlgorithm is {shown}; SSE-KMS (aws:kms) is required")
        if not present(prop(default, "kmsMasterKeyId")):
            report(f"rules[{i}] has no kmsMasterKeyId; SSE-KMS must use the vault's own KMS key")


@_for_types(S3_REPLICATION_CONFIG)
def validate_s3_replication(args: ResourceValidationArgs, report: Report) -> None:
    """Every enabled replication rule has RTC 15 min, metrics, SSE-KMS objects selected and a
    replica KMS key; at least one rule is enabled."""
    rules = prop(args.props, "rules")
    if rules is UNKNOWN:
        return
    rule_list = items(rules)
    if any(r is UNKNOWN for r in rule_list):
        return
    enabled = [(i, r) for i, r in enumerate(rule_list)
               if prop(r, "status") is UNKNOWN or _enabled(prop(r, "status"))]
    if not enabled:
        report("replication configuration has no enabled rule")
        return
    for i, rule in enabled:
        destination = prop(rule, "destination")
        if destination is UNKNOWN:
            continue
        rtc_status = prop(destination, "replicationTime", "status")
        rtc_minutes = prop(destination, "replicationTime", "time", "minutes")
        if rtc_status is not UNKNOWN and not _enabled(rtc_status):
            report(f"rules[{i}] has no enabled Replication Time Control (destination.replicationTime)")
        elif rtc_minutes is not UNKNOWN and as_number(rtc_minutes) != 15:
            report(f"rules[{i}] Replication Time Control is {_shown(rtc_minutes)} minutes; 15 is required")
        metrics_status = prop(destination, "metrics", "status")
        metrics_minutes = prop(destination, "metrics", "eventThreshold", "minutes")
        if metrics_status is not UNKNOWN and not _enabled(metrics_status):
            report(f"rules[{i}] has no enabled replication metrics (destination.metrics)")
        elif metrics_minutes is not UNKNOWN and as_number(metrics_minutes) != 15:
            report(f"rules[{i}] metrics eventThreshold is {_shown(metrics_minutes)} minutes; 15 is required")
        sse_kms = prop(rule, "sourceSelectionCriteria", "sseKmsEncryptedObjects", "status")
        if sse_kms is not UNKNOWN and not _enabled(sse_kms):
            report(f"rules[{i}] does not select SSE-KMS encrypted objects "
                   "(sourceSelectionCriteria.sseKmsEncryptedObjects.status Enabled)")
        if not present(prop(destination, "encryptionConfiguration", "replicaKmsKeyId")):
            report(f"rules[{i}] has no destination.encryptionConfiguration.replicaKmsKeyId")


# --------------------------------------------------------------------------------------------------
# S3 - stack rules: every bucket has each configuration resource
# --------------------------------------------------------------------------------------------------


def _linked_children(parent: PolicyResource, parent_key: str, children: Iterable[PolicyResource],
                     child_key: str) -> tuple[List[PolicyResource], List[PolicyResource]]:
    """Children that point at `parent` (by name or by property dependency), and children whose
    target cannot be determined (unknown name and no dependency information)."""
    parent_name = prop(parent.props, parent_key)
    linked: List[PolicyResource] = []
    undetermined: List[PolicyResource] = []
    for child in children:
        deps = (getattr(child, "property_dependencies", None) or {}).get(child_key) or []
        if any(dep.urn == parent.urn for dep in deps):
            linked.append(child)
            continue
        target = prop(child.props, child_key)
        if target is UNKNOWN or parent_name is UNKNOWN:
            if not deps:
                undetermined.append(child)
            continue
        if target is not MISSING and target == parent_name:
            linked.append(child)
    return linked, undetermined


def _of_type(resources: Iterable[PolicyResource], resource_type: str) -> List[PolicyResource]:
    return [r for r in resources if r.resource_type == resource_type]


def _every_bucket_has(child_type: str, what: str) -> Callable[[StackValidationArgs, ReportViolation], None]:
    short = child_type.rsplit(":", 1)[-1]

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        children = _of_type(args.resources, child_type)
        for bucket in _of_type(args.resources, S3_BUCKET):
            linked, undetermined = _linked_children(bucket, "bucket", children, "bucket")
            if linked or undetermined:
                continue
            name = prop(bucket.props, "bucket")
            shown = bucket.name if name is UNKNOWN or name is MISSING else name
            report_violation(f"bucket {shown!s} has no {short} ({what})", bucket.urn)

    validate.__name__ = f"validate_every_bucket_has_{short}"
    return validate


validate_s3_5_coverage = _every_bucket_has(S3_POLICY, "S3.5: a policy denying non-TLS requests")
validate_s3_8_coverage = _every_bucket_has(S3_PUBLIC_ACCESS_BLOCK, "S3.8: all four public-access blocks")
validate_s3_12_coverage = _every_bucket_has(S3_OWNERSHIP, "S3.12: BucketOwnerEnforced ownership")
validate_s3_13_coverage = _every_bucket_has(S3_LIFECYCLE, "S3.13: a lifecycle configuration")
validate_s3_versioning_coverage = _every_bucket_has(S3_BUCKET_VERSIONING, "versioning Enabled")
validate_s3_sse_kms_coverage = _every_bucket_has(S3_SSE, "default SSE-KMS encryption")


# --------------------------------------------------------------------------------------------------
# RDS
# --------------------------------------------------------------------------------------------------


@_for_types(RDS_CLUSTER)
def validate_rds_storage_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    """Cluster storage is encrypted under an explicit KMS key (snapshots inherit it: RDS.4).

    A cross-region secondary of a global cluster must name a key in its own region, so kmsKeyId
    is required on every cluster, primary or secondary."""
    require_true(args.props, "storageEncrypted", report, "RDS.4/RDS.27 (encryption at rest)")
    require_present(args.props, "kmsKeyId", report, "RDS.4/RDS.27 (encryption under a customer KMS key)")


@_for_types(RDS_GLOBAL_CLUSTER)
def validate_rds_global_cluster(args: ResourceValidationArgs, report: Report) -> None:
    """A global cluster is encrypted and protected from deletion. When it is created from an
    existing cluster (sourceDbClusterIdentifier), encryption is inherited, so an absent
    storageEncrypted is accepted then (an explicit false still fails)."""
    source = prop(args.props, "sourceDbClusterIdentifier")
    encrypted = prop(args.props, "storageEncrypted")
    if not (encrypted is MISSING and present(source)):
        require_true(args.props, "storageEncrypted", report, "RDS.27 (global cluster encrypted at rest)")
    require_true(args.props, "deletionProtection", report, "RDS.7 (global cluster deletion protection)")


@_for_types(RDS_CLUSTER)
def validate_rds_7_deletion_protection(args: ResourceValidationArgs, report: Report) -> None:
    """Cluster deletionProtection is true."""
    require_true(args.props, "deletionProtection", report, "RDS.7")


@_for_types(RDS_CLUSTER)
def validate_rds_12_iam_auth(args: ResourceValidationArgs, report: Report) -> None:
    """Cluster iamDatabaseAuthenticationEnabled is true."""
    require_true(args.props, "iamDatabaseAuthenticationEnabled", report, "RDS.12")


@_for_types(RDS_CLUSTER)
def validate_rds_16_copy_tags(args: ResourceValidationArgs, report: Report) -> None:
    """Cluster copyTagsToSnapshot is true."""
    require_true(args.props, "copyTagsToSnapshot", report, "RDS.16")


DEFAULT_ADMIN_USERNAMES = frozenset({"postgres", "admin"})


@_for_types(RDS_CLUSTER)
def validate_rds_24_custom_admin(args: ResourceValidationArgs, report: Report) -> None:
    """masterUsername is not a default (postgres, admin). A secondary cluster of a global cluster
    has no masterUsername (it replicates the primary's users): absent is accepted only when
    globalClusterIdentifier is set."""
    username = prop(args.props, "masterUsername")
    if username is UNKNOWN:
        return
    if username is MISSING:
        if not present(prop(args.props, "globalClusterIdentifier")):
            report("masterUsername is not set and the cluster is not a global-cluster secondary; "
                   "RDS.24 requires a custom admin username")
        return
    if not isinstance(username, str) or username.strip().lower() in DEFAULT_ADMIN_USERNAMES:
        report(f"masterUsername {username!r} is a default admin name; RDS.24 requires a custom one")


@_for_types(RDS_CLUSTER, RDS_CLUSTER_INSTANCE)
def validate_rds_35_minor_upgrades(args: ResourceValidationArgs, report: Report) -> None:
    """ClusterInstance autoMinorVersionUpgrade is true; on a Cluster it is checked where set
    (Aurora takes the setting per instance)."""
    if args.resource_type == RDS_CLUSTER_INSTANCE:
        require_true(args.props, "autoMinorVersionUpgrade", report, "RDS.35")
        return
    value = prop(args.props, "autoMinorVersionUpgrade")
    if value is not MISSING and value is not UNKNOWN and not is_true(value):
        report(f"autoMinorVersionUpgrade is {value!r}; RDS.35 requires true")


@_for_types(RDS_CLUSTER)
def validate_rds_37_postgres_logs(args: ResourceValidationArgs, report: Report) -> None:
    """An aurora-postgresql cluster exports the `postgresql` log to CloudWatch Logs."""
    engine = prop(args.props, "engine")
    if engine is UNKNOWN or engine != "aurora-postgresql":
        return
    exports = prop(args.props, "enabledCloudwatchLogsExports")
    if exports is UNKNOWN:
        return
    values = items(exports)
    if UNKNOWN in values:
        return
    if "postgresql" not in values:
        report("enabledCloudwatchLogsExports does not include 'postgresql'; RDS.37 requires it")


MIN_BACKUP_RETENTION_DAYS = 7


@_for_types(RDS_CLUSTER)
def validate_rds_backup_retention(args: ResourceValidationArgs, report: Report) -> None:
    """backupRetentionPeriod is at least 7 days (the AWS default is 1)."""
    require_at_least(args.props, "backupRetentionPeriod", MIN_BACKUP_RETENTION_DAYS, report,
                     "the DR backup policy")


def validate_rds_15_multi_az(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Each Cluster has at least two ClusterInstances, in distinct, explicit availability zones.

    Instances join their cluster by clusterIdentifier (or its property dependency). An unknown
    availabilityZone is tolerated; an absent one fails, since AWS may then place both instances
    in the same zone."""
    instances = _of_type(args.resources, RDS_CLUSTER_INSTANCE)
    for cluster in _of_type(args.resources, RDS_CLUSTER):
        linked, undetermined = _linked_children(cluster, "clusterIdentifier", instances, "clusterIdentifier")
        if undetermined and len(linked) < 2:
            continue
        cid = prop(cluster.props, "clusterIdentifier")
        shown = cluster.name if cid is UNKNOWN or cid is MISSING else cid
        if len(linked) < 2:
            report_violation(f"cluster {shown} has {len(linked)} instance(s); RDS.15 requires at least 2 "
                             "in different availability zones", cluster.urn)
            continue
        zones = [prop(i.props, "availabilityZone") for i in linked]
        if UNKNOWN in zones:
            continue
        if MISSING in zones:
            report_violation(f"cluster {shown} has an instance without an explicit availabilityZone; "
                             "RDS.15 requires instances in distinct zones", cluster.urn)
            continue
        if len(set(zones)) < 2:
            report_violation(f"cluster {shown} has all instances in {sorted(set(zones))}; RDS.15 requires "
                             "at least two availability zones", cluster.urn)


# --------------------------------------------------------------------------------------------------
# ElastiCache
# --------------------------------------------------------------------------------------------------


@_for_types(ELASTICACHE_RG)
def validate_elasticache_1_backups(args: ResourceValidationArgs, report: Report) -> None:
    """snapshotRetentionLimit is at least 1 day."""
    require_at_least(args.props, "snapshotRetentionLimit", 1, report, "ElastiCache.1")


@_for_types(ELASTICACHE_RG)
def validate_elasticache_2_minor_upgrades(args: ResourceValidationArgs, report: Report) -> None:
    """autoMinorVersionUpgrade is true."""
    require_true(args.props, "autoMinorVersionUpgrade", report, "ElastiCache.2")


@_for_types(ELASTICACHE_RG)
def validate_elasticache_3_failover(args: ResourceValidationArgs, report: Report) -> None:
    """automaticFailoverEnabled is true."""
    require_true(args.props, "automaticFailoverEnabled", report, "ElastiCache.3")


@_for_types(ELASTICACHE_RG)
def validate_elasticache_4_at_rest(args: ResourceValidationArgs, report: Report) -> None:
    """atRestEncryptionEnabled is true (bool in pulumi-aws v7; the string "true" is accepted)."""
    require_true(args.props, "atRestEncryptionEnabled", report, "ElastiCache.4")


@_for_types(ELASTICACHE_RG)
def validate_elasticache_5_in_transit(args: ResourceValidationArgs, report: Report) -> None:
    """transitEncryptionEnabled is true."""
    require_true(args.props, "transitEncryptionEnabled", report, "ElastiCache.5")


@_for_types(ELASTICACHE_RG)
def validate_elasticache_multi_az(args: ResourceValidationArgs, report: Report) -> None:
    """multiAzEnabled is true."""
    require_true(args.props, "multiAzEnabled", report, "the DR cache policy (multi-AZ)")


# --------------------------------------------------------------------------------------------------
# KMS and Route 53
# --------------------------------------------------------------------------------------------------


@_for_types(KMS_KEY)
def validate_kms_4_rotation(args: ResourceValidationArgs, report: Report) -> None:
    """enableKeyRotation is true on symmetric keys (rotation applies to SYMMETRIC_DEFAULT only)."""
    spec = prop(args.props, "customerMasterKeySpec")
    if spec is MISSING:
        spec = prop(args.props, "keySpec")
    if spec is UNKNOWN or (spec is not MISSING and spec != "SYMMETRIC_DEFAULT"):
        return
    require_true(args.props, "enableKeyRotation", report, "KMS.4")


@_for_types(R53_RECORD)
def validate_route53_failover_health_check(args: ResourceValidationArgs, report: Report) -> None:
    """A record with a failover routing policy carries a healthCheckId."""
    policies = prop(args.props, "failoverRoutingPolicies")
    if policies is MISSING:
        return
    if policies is not UNKNOWN and not items(policies):
        return
    if not present(prop(args.props, "healthCheckId")):
        report("failover record has no healthCheckId; without one Route 53 never fails over")


@_for_types(R53_HEALTH_CHECK)
def validate_route53_not_inverted(args: ResourceValidationArgs, report: Report) -> None:
    """No health check is inverted: traffic moves by the flag alarm, never by editing a check (an
    inverted check also reads red in `status` for a state the tool itself made)."""
    if is_true(prop(args.props, "invertHealthcheck")):
        report("invertHealthcheck is true; traffic must move through the traffic flag, not an inverted check")


# Route 53's API (records, health checks) is hosted here: the region a failover may have lost.
ROUTE53_CONTROL_PLANE_REGION = "us-east-1"


def _region_of(resource: PolicyResource) -> Any:
    """The region of the resource's provider (the stack's default provider unless it names one)."""
    provider = getattr(resource, "provider", None)
    return MISSING if provider is None else prop(provider.props, "region")


def _health_check_id(check: PolicyResource) -> Any:
    arn = prop(check.props, "arn")
    return arn.rsplit("/", 1)[-1] if isinstance(arn, str) else arn


def _referenced(resource: PolicyResource, key: str, checks: List[PolicyResource]) -> tuple[List[PolicyResource], bool]:
    """Health checks that `resource`'s `key` (one ID or a list) names, by property dependency or by
    ID; and whether some reference could not be resolved (unknown in preview)."""
    deps = (getattr(resource, "property_dependencies", None) or {}).get(key) or []
    by_urn = {dep.urn for dep in deps}
    value = prop(resource.props, key)
    ids = items(value) if _is_list(value) else [value]
    found = [c for c in checks if c.urn in by_urn or _health_check_id(c) in [i for i in ids if isinstance(i, str)]]
    return found, not found and not deps and UNKNOWN in ids


def _is_primary_record(record: PolicyResource) -> bool:
    return any(prop(p, "type") == "PRIMARY" for p in items(prop(record.props, "failoverRoutingPolicies")))


def _check_flag(flag: PolicyResource, record_region: Any, alarms: List[PolicyResource], report: Report) -> None:
    """A CLOUDWATCH_METRIC child: its alarm outside us-east-1 and the record's region, missing data ignored."""
    region = prop(flag.props, "cloudwatchAlarmRegion")
    name = prop(flag.props, "cloudwatchAlarmName")
    if region is UNKNOWN:
        return
    if region is MISSING or region in (ROUTE53_CONTROL_PLANE_REGION, record_region):
        report(f"flag health check {flag.name} follows an alarm in {_shown(region)}; it must live in the DR region, "
               f"not {ROUTE53_CONTROL_PLANE_REGION} (Route 53's control plane) nor the record's own region")
        return
    if name is UNKNOWN:
        return
    matching = [a for a in alarms if prop(a.props, "name") == name and _region_of(a) in (region, MISSING, UNKNOWN)]
    if not matching:
        report(f"flag health check {flag.name} follows alarm {_shown(name)} in {region}, which this stack does not declare")
    for alarm in matching:
        missing_data = prop(alarm.props, "treatMissingData")
        if missing_data is not UNKNOWN and missing_data != "ignore":
            report(f"alarm {name} has treatMissingData {_shown(missing_data)}; the traffic flag requires 'ignore' "
                   "(with no new data it must keep the state the runbook set)")


def validate_traffic_moves_on_a_data_plane(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every PRIMARY failover record follows a CALCULATED health check with a CLOUDWATCH_METRIC child on
    an alarm in another region than us-east-1 and the record's, and that alarm ignores missing data;
    no CLOUDWATCH_METRIC check turns Unhealthy for insufficient data (CloudWatch unreachable would move
    traffic by itself). Unknown references (preview) are tolerated."""
    checks = _of_type(args.resources, R53_HEALTH_CHECK)
    alarms = _of_type(args.resources, CW_METRIC_ALARM)
    for check in checks:
        if (prop(check.props, "type") == "CLOUDWATCH_METRIC"
                and prop(check.props, "insufficientDataHealthStatus") == "Unhealthy"):
            report_violation(f"health check {check.name} turns Unhealthy on insufficient data; use LastKnownStatus",
                             check.urn)
    for record in _of_type(args.resources, R53_RECORD):
        if not _is_primary_record(record):
            continue
        def report(message: str, urn: str = record.urn) -> None:
            report_violation(message, urn)
        followed, unresolved = _referenced(record, "healthCheckId", checks)
        if not followed:
            if not unresolved:
                report(f"PRIMARY record {record.name} follows no health check of this stack; traffic control "
                       "requires a CALCULATED check")
            continue
        for parent in followed:
            kind = prop(parent.props, "type")
            if kind is UNKNOWN:
                continue
            if kind != "CALCULATED":
                report(f"PRIMARY record {record.name} follows a {_shown(kind)} check ({parent.name}); traffic control "
                       "requires a CALCULATED check with a CLOUDWATCH_METRIC child")
                continue
            children, unresolved = _referenced(parent, "childHealthchecks", checks)
            flags = [c for c in children if prop(c.props, "type") in ("CLOUDWATCH_METRIC", UNKNOWN)]
            if not flags and not unresolved:
                report(f"CALCULATED check {parent.name} of PRIMARY record {record.name} has no CLOUDWATCH_METRIC "
                       "child; nothing outside Route 53's API can move traffic")
            for flag in flags:
                _check_flag(flag, _region_of(record), alarms, report)


# --------------------------------------------------------------------------------------------------
# Policy objects
# --------------------------------------------------------------------------------------------------

_FSBP = "AWS Foundational Security Best Practices"


def _resource(name: str, description: str,
              validate: Callable[[ResourceValidationArgs, ReportViolation], None]) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=validate)


def _stack(name: str, description: str,
           validate: Callable[[StackValidationArgs, ReportViolation], None]) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate)


S3_5 = _resource("S3.5", f'{_FSBP} S3.5: "S3 general purpose buckets should require requests to use SSL". '
                 "The bucket policy denies s3:* to every principal when aws:SecureTransport is false.",
                 validate_s3_5_tls_only)
S3_5_COVERAGE = _stack("S3.5.coverage", 'S3.5 "S3 general purpose buckets should require requests to use SSL": '
                       "every bucket has a BucketPolicy.", validate_s3_5_coverage)
S3_8 = _resource("S3.8", f'{_FSBP} S3.8: "S3 general purpose buckets should block public access". '
                 "blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets are all true.",
                 validate_s3_8_public_access_block)
S3_8_COVERAGE = _stack("S3.8.coverage", 'S3.8 "S3 general purpose buckets should block public access": '
                       "every bucket has a BucketPublicAccessBlock.", validate_s3_8_coverage)
S3_12 = _resource("S3.12", f'{_FSBP} S3.12: "ACLs should not be used to manage user access to S3 general '
                  'purpose buckets". Object ownership is BucketOwnerEnforced.', validate_s3_12_no_acls)
S3_12_COVERAGE = _stack("S3.12.coverage", 'S3.12 "ACLs should not be used to manage user access to S3 general '
                        'purpose buckets": every bucket has BucketOwnershipControls.', validate_s3_12_coverage)
S3_13 = _resource("S3.13", f'{_FSBP} S3.13: "S3 general purpose buckets should have Lifecycle configurations". '
                  "An enabled rule expires objects and one aborts incomplete multipart uploads.",
                  validate_s3_13_lifecycle)
S3_13_COVERAGE = _stack("S3.13.coverage", 'S3.13 "S3 general purpose buckets should have Lifecycle '
                        'configurations": every bucket has a BucketLifecycleConfiguration.',
                        validate_s3_13_coverage)
S3_VERSIONING = _resource("XAI.S3.versioning", "Backup buckets keep every version (versioning Enabled), so an "
                          "overwrite or delete can be undone and replication can run.", validate_s3_versioning)
S3_VERSIONING_COVERAGE = _stack("XAI.S3.versioning.coverage", "Every bucket has a BucketVersioning.",
                                validate_s3_versioning_coverage)
S3_SSE_KMS = _resource("XAI.S3.sse-kms", "Default encryption is SSE-KMS (sseAlgorithm aws:kms) under an explicit "
                       "customer-managed key (kmsMasterKeyId).", validate_s3_sse_kms)
S3_SSE_KMS_COVERAGE = _stack("XAI.S3.sse-kms.coverage", "Every bucket has a "
                             "BucketServerSideEncryptionConfiguration.", validate_s3_sse_kms_coverage)
S3_REPLICATION = _resource("XAI.S3.replication", "Cross-region replication: every enabled rule has Replication Time "
                           "Control at 15 minutes with metrics, selects SSE-KMS objects and names a replica KMS key.",
                           validate_s3_replication)

RDS_4_27 = _resource("RDS.4-RDS.27", f'{_FSBP} RDS.4: "RDS cluster snapshots and database snapshots should be '
                     'encrypted at rest" and RDS.27: "RDS DB clusters should be encrypted at rest". Every Cluster '
                     "(primary or global-cluster secondary) has storageEncrypted true and a kmsKeyId.",
                     validate_rds_storage_encrypted)
RDS_GLOBAL = _resource("RDS.27-RDS.7.global", 'RDS.27 "RDS DB clusters should be encrypted at rest" and RDS.7 '
                       '"RDS clusters should have deletion protection enabled", for a GlobalCluster: '
                       "storageEncrypted and deletionProtection are true.", validate_rds_global_cluster)
RDS_7 = _resource("RDS.7", f'{_FSBP} RDS.7: "RDS clusters should have deletion protection enabled".',
                  validate_rds_7_deletion_protection)
RDS_12 = _resource("RDS.12", f'{_FSBP} RDS.12: "IAM authentication should be configured for RDS clusters".',
                   validate_rds_12_iam_auth)
RDS_15 = _stack("RDS.15", f'{_FSBP} RDS.15: "RDS DB clusters should be configured for multiple Availability '
                'Zones". Each Cluster has at least two ClusterInstances in distinct availability zones.',
                validate_rds_15_multi_az)
RDS_16 = _resource("RDS.16", f'{_FSBP} RDS.16: "Aurora DB clusters should be configured to copy tags to DB '
                   'snapshots".', validate_rds_16_copy_tags)
RDS_24 = _resource("RDS.24", f'{_FSBP} RDS.24: "RDS Database clusters should use a custom administrator '
                   'username". masterUsername is not postgres or admin.', validate_rds_24_custom_admin)
RDS_35 = _resource("RDS.35", f'{_FSBP} RDS.35: "RDS DB clusters should have automatic minor version upgrade '
                   'enabled". autoMinorVersionUpgrade is true on each ClusterInstance, and on a Cluster where set.',
                   validate_rds_35_minor_upgrades)
RDS_37 = _resource("RDS.37", f'{_FSBP} RDS.37: "Aurora PostgreSQL DB clusters should publish logs to CloudWatch '
                   'Logs". enabledCloudwatchLogsExports includes postgresql.', validate_rds_37_postgres_logs)
RDS_BACKUPS = _resource("XAI.RDS.backup-retention", "Automated backups are kept at least 7 days "
                        "(backupRetentionPeriod >= 7) so point-in-time recovery covers a week.",
                        validate_rds_backup_retention)

ELASTICACHE_1 = _resource("ElastiCache.1", f'{_FSBP} ElastiCache.1: "ElastiCache (Redis OSS) clusters should have '
                          'automatic backups enabled". snapshotRetentionLimit >= 1.', validate_elasticache_1_backups)
ELASTICACHE_2 = _resource("ElastiCache.2", f'{_FSBP} ElastiCache.2: "ElastiCache clusters should have automatic '
                          'minor version upgrades enabled".', validate_elasticache_2_minor_upgrades)
ELASTICACHE_3 = _resource("ElastiCache.3", f'{_FSBP} ElastiCache.3: "ElastiCache replication groups should have '
                          'automatic failover enabled".', validate_elasticache_3_failover)
ELASTICACHE_4 = _resource("ElastiCache.4", f'{_FSBP} ElastiCache.4: "ElastiCache replication groups should be '
                          'encrypted at rest".', validate_elasticache_4_at_rest)
ELASTICACHE_5 = _resource("ElastiCache.5", f'{_FSBP} ElastiCache.5: "ElastiCache replication groups should be '
                          'encrypted in transit".', validate_elasticache_5_in_transit)
ELASTICACHE_MULTI_AZ = _resource("XAI.ElastiCache.multi-az", "The replication group is Multi-AZ "
                                 "(multiAzEnabled true), so a zone failure promotes a replica in another zone.",
                                 validate_elasticache_multi_az)

KMS_4 = _resource("KMS.4", 'Security Hub KMS.4: "AWS KMS key rotation should be enabled". enableKeyRotation is '
                  "true on every symmetric key.", validate_kms_4_rotation)
ROUTE53_FAILOVER = _resource("XAI.Route53.failover-health-check", "Every Route 53 record with a failover routing "
                             "policy carries a healthCheckId; without one the PRIMARY is never considered unhealthy.",
                             validate_route53_failover_health_check)

ROUTE53_NOT_INVERTED = _resource("XAI.Route53.no-inverted-health-check", "No Route 53 health check is inverted "
                                 "(invertHealthcheck true): traffic moves through the traffic flag alarm, and an "
                                 "inverted check reads unhealthy for a state the tool made.", validate_route53_not_inverted)
TRAFFIC_DATA_PLANE = _stack("XAI.Route53.traffic-moves-on-a-data-plane", "Every PRIMARY failover record follows a "
                            "CALCULATED health check with a CLOUDWATCH_METRIC child whose alarm lives outside "
                            "us-east-1 (Route 53's control plane) and the record's own region, and treats missing "
                            "data as ignore; no CLOUDWATCH_METRIC check is Unhealthy on insufficient data.",
                            validate_traffic_moves_on_a_data_plane)

from notification_rules import DR_EVENTS_TOPIC  # noqa: E402 - its own module; it reads the helpers above
from backup_rules import BACKUP_ACCOUNT_VAULT_LOCKED  # noqa: E402 - likewise

RESOURCE_POLICIES: List[ResourceValidationPolicy] = [
    S3_5, S3_8, S3_12, S3_13, S3_VERSIONING, S3_SSE_KMS, S3_REPLICATION,
    RDS_4_27, RDS_GLOBAL, RDS_7, RDS_12, RDS_16, RDS_24, RDS_35, RDS_37, RDS_BACKUPS,
    ELASTICACHE_1, ELASTICACHE_2, ELASTICACHE_3, ELASTICACHE_4, ELASTICACHE_5, ELASTICACHE_MULTI_AZ,
    KMS_4, ROUTE53_FAILOVER, ROUTE53_NOT_INVERTED,
]
STACK_POLICIES: List[StackValidationPolicy] = [
    S3_5_COVERAGE, S3_8_COVERAGE, S3_12_COVERAGE, S3_13_COVERAGE, S3_VERSIONING_COVERAGE, S3_SSE_KMS_COVERAGE,
    RDS_15, TRAFFIC_DATA_PLANE,
    DR_EVENTS_TOPIC,  # notification_rules.py: the DR-events topic is encrypted and someone hears it
    BACKUP_ACCOUNT_VAULT_LOCKED,  # backup_rules.py: the Aurora cluster's copies reach a Vault-Locked vault elsewhere
]
ALL_POLICIES: List[Policy] = [*RESOURCE_POLICIES, *STACK_POLICIES]

PACK_NAME = "xai-dr-fsbp"
PACK_ENFORCEMENT = EnforcementLevel.MANDATORY
