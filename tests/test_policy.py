"""The CrossGuard pack in policy/: every rule passes a compliant resource and fails a violating one,
tolerates values that are unknown during preview, and passes everything both stacks register.

Rules are called directly (`policy.validate(args, report)`), never through `policy/__main__.py`:
building the `PolicyPack` starts a gRPC server that blocks. Props are wrapped in CrossGuard's own
`unknown_checking_proxy`, as the analyzer hands them to rules during `pulumi preview`.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

import fsbp_rules as rules  # noqa: E402

SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN_STR = UNKNOWN_STRING_VALUE
UNKNOWN_BOOL = UNKNOWN_BOOLEAN_VALUE
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


# ------------------------------------------------------------------------------------------------
# Calling rules the way the analyzer does
# ------------------------------------------------------------------------------------------------


def collector(found: list[Any], label: str = "") -> Callable[[str, Optional[str]], None]:
    """A ReportViolation that records (urn, message) for stack rules, or message otherwise."""
    def report(message: str, urn: Optional[str] = None) -> None:
        found.append(f"{label}{message}" if label else message)
    return report


def check_resource(policy: ResourceValidationPolicy, type_: str, props: Mapping[str, Any],
                   name: str = "r") -> list[str]:
    found: list[str] = []
    args = ResourceValidationArgs(type_, unknown_checking_proxy(dict(props)), f"urn:pulumi:s::p::{type_}::{name}",
                                  name, OPTS, None)
    result = policy.validate(args, collector(found))
    assert result is None, "rules are synchronous"
    return found


def res(type_: str, name: str, props: Mapping[str, Any],
        deps: Optional[Mapping[str, list[PolicyResource]]] = None) -> PolicyResource:
    return PolicyResource(type_, unknown_checking_proxy(dict(props)), f"urn:pulumi:s::p::{type_}::{name}", name,
                          OPTS, None, None, [r for v in (deps or {}).values() for r in v], dict(deps or {}))


def check_stack(policy: StackValidationPolicy, resources: Iterable[PolicyResource]) -> list[tuple[Optional[str], str]]:
    found: list[tuple[Optional[str], str]] = []

    def report(message: str, urn: Optional[str] = None) -> None:
        found.append((urn, message))

    result = policy.validate(StackValidationArgs(list(resources)), report)
    assert result is None
    return found


def with_(base: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def without(base: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k not in keys}


# ------------------------------------------------------------------------------------------------
# Compliant resources, shaped as `pulumi preview` passes them (camelCase, numbers as floats)
# ------------------------------------------------------------------------------------------------

BUCKET = "xai-backups-production"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

KEY = {"description": "backups", "enableKeyRotation": True, "deletionWindowInDays": 30.0}


def tls_policy(**deny_overrides: Any) -> str:
    deny = {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}, **deny_overrides}
    other = {"Sid": "DenyUploadsWithoutKms", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
             "Resource": f"arn:aws:s3:::{BUCKET}/*",
             "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}
    return json.dumps({"Version": "2012-10-17", "Statement": [deny, other]})


BUCKET_POLICY = {"bucket": BUCKET, "policy": tls_policy()}
PUBLIC_ACCESS = {"bucket": BUCKET, "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
                 "restrictPublicBuckets": True}
OWNERSHIP = {"bucket": BUCKET, "rule": {"objectOwnership": "BucketOwnerEnforced"}}
LIFECYCLE_RULE = {"id": "retention", "status": "Enabled", "filter": {}, "expiration": {"days": 30.0},
                  "noncurrentVersionExpiration": {"noncurrentDays": 30.0},
                  "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1.0}}
LIFECYCLE = {"bucket": BUCKET, "rules": [LIFECYCLE_RULE]}
VERSIONING = {"bucket": BUCKET, "versioningConfiguration": {"status": "Enabled"}}
SSE_DEFAULT = {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN}
SSE = {"bucket": BUCKET, "rules": [{"applyServerSideEncryptionByDefault": SSE_DEFAULT, "bucketKeyEnabled": True}]}
DESTINATION = {"bucket": "arn:aws:s3:::xai-backups-dr-us-west-2", "storageClass": "STANDARD",
               "encryptionConfiguration": {"replicaKmsKeyId": KEY_ARN},
               "replicationTime": {"status": "Enabled", "time": {"minutes": 15.0}},
               "metrics": {"status": "Enabled", "eventThreshold": {"minutes": 15.0}}}
REPLICATION_RULE = {"id": "to-dr", "status": "Enabled", "priority": 1.0, "filter": {},
                    "deleteMarkerReplication": {"status": "Disabled"},
                    "sourceSelectionCriteria": {"sseKmsEncryptedObjects": {"status": "Enabled"}},
                    "destination": DESTINATION}
REPLICATION = {"bucket": BUCKET, "role": "arn:aws:iam::123456789012:role/replication", "rules": [REPLICATION_RULE]}


def replication(**rule_changes: Any) -> dict[str, Any]:
    return with_(REPLICATION, rules=[with_(REPLICATION_RULE, **rule_changes)])


def replication_destination(**changes: Any) -> dict[str, Any]:
    return replication(destination=with_(DESTINATION, **changes))


CLUSTER = {"clusterIdentifier": "db-primary", "engine": "aurora-postgresql", "engineVersion": "15.10",
           "storageEncrypted": True, "kmsKeyId": KEY_ARN, "deletionProtection": True,
           "backupRetentionPeriod": 7.0, "copyTagsToSnapshot": True, "iamDatabaseAuthenticationEnabled": True,
           "enabledCloudwatchLogsExports": ["postgresql"], "masterUsername": "xaiadmin",
           "globalClusterIdentifier": "xai-global"}
SECONDARY_CLUSTER = without(CLUSTER, "masterUsername")
INSTANCE = {"identifier": "db-primary-1", "clusterIdentifier": "db-primary", "instanceClass": "db.r6g.large",
            "engine": "aurora-postgresql", "availabilityZone": "us-east-1a", "autoMinorVersionUpgrade": True}
GLOBAL_CLUSTER = {"globalClusterIdentifier": "xai-global", "engine": "aurora-postgresql", "storageEncrypted": True,
                  "deletionProtection": True}
CACHE = {"replicationGroupId": "xai-redis", "description": "cache", "engine": "redis", "numCacheClusters": 2.0,
         "snapshotRetentionLimit": 1.0, "autoMinorVersionUpgrade": True, "automaticFailoverEnabled": True,
         "multiAzEnabled": True, "atRestEncryptionEnabled": True, "kmsKeyId": KEY_ARN,
         "transitEncryptionEnabled": True,
         "authToken": {SECRET_SIG: SECRET_VALUE_SIG, "value": "s3cr3t"}}
RECORD = {"zoneId": "Z123", "name": "api.xai.example.com", "type": "CNAME", "ttl": 60.0,
          "records": ["node.xai.example.com"], "setIdentifier": "primary",
          "failoverRoutingPolicies": [{"type": "PRIMARY"}], "healthCheckId": "abcd-1234"}

T = rules  # type tokens live in the rule module
P = rules


def ok(policy: ResourceValidationPolicy, type_: str, props: Mapping[str, Any], id: str) -> Any:
    return pytest.param(policy, type_, props, None, id=f"{policy.name}-passes-{id}")


def bad(policy: ResourceValidationPolicy, type_: str, props: Mapping[str, Any], expect: str, id: str) -> Any:
    return pytest.param(policy, type_, props, expect, id=f"{policy.name}-fails-{id}")


RESOURCE_CASES = [
    # S3.5 TLS only
    ok(P.S3_5, T.S3_POLICY, BUCKET_POLICY, "deny-insecure-transport"),
    ok(P.S3_5, T.S3_POLICY, with_(BUCKET_POLICY, policy=tls_policy(Principal={"AWS": "*"}, Action=["*"])),
       "principal-aws-star"),
    ok(P.S3_5, T.S3_POLICY, with_(BUCKET_POLICY, policy=UNKNOWN_STR), "policy-unknown-in-preview"),
    bad(P.S3_5, T.S3_POLICY, with_(BUCKET_POLICY, policy=tls_policy(Effect="Allow")), "SecureTransport",
        "allow-instead-of-deny"),
    bad(P.S3_5, T.S3_POLICY, with_(BUCKET_POLICY, policy=tls_policy(Condition={"Bool": {"aws:SecureTransport": "true"}})),
        "SecureTransport", "condition-true"),
    bad(P.S3_5, T.S3_POLICY, with_(BUCKET_POLICY, policy=tls_policy(Action="s3:GetObject")), "SecureTransport",
        "only-get-object"),
    bad(P.S3_5, T.S3_POLICY, with_(BUCKET_POLICY, policy="{not json"), "not valid JSON", "invalid-json"),
    # S3.8 public access block
    ok(P.S3_8, T.S3_PUBLIC_ACCESS_BLOCK, PUBLIC_ACCESS, "all-four"),
    bad(P.S3_8, T.S3_PUBLIC_ACCESS_BLOCK, with_(PUBLIC_ACCESS, restrictPublicBuckets=False), "restrictPublicBuckets",
        "one-false"),
    bad(P.S3_8, T.S3_PUBLIC_ACCESS_BLOCK, without(PUBLIC_ACCESS, "ignorePublicAcls"), "ignorePublicAcls is not set",
        "one-missing"),
    # S3.12 no ACLs
    ok(P.S3_12, T.S3_OWNERSHIP, OWNERSHIP, "owner-enforced"),
    bad(P.S3_12, T.S3_OWNERSHIP, with_(OWNERSHIP, rule={"objectOwnership": "ObjectWriter"}), "BucketOwnerEnforced",
        "object-writer"),
    bad(P.S3_12, T.S3_OWNERSHIP, without(OWNERSHIP, "rule"), "not set", "no-rule"),
    # S3.13 lifecycle
    ok(P.S3_13, T.S3_LIFECYCLE, LIFECYCLE, "expire-and-abort"),
    ok(P.S3_13, T.S3_LIFECYCLE,
       with_(LIFECYCLE, rules=[without(LIFECYCLE_RULE, "abortIncompleteMultipartUpload"),
                               with_(without(LIFECYCLE_RULE, "expiration"), id="mpu")]), "split-over-two-rules"),
    bad(P.S3_13, T.S3_LIFECYCLE, with_(LIFECYCLE, rules=[without(LIFECYCLE_RULE, "abortIncompleteMultipartUpload")]),
        "multipart", "no-abort-multipart"),
    bad(P.S3_13, T.S3_LIFECYCLE, with_(LIFECYCLE, rules=[without(LIFECYCLE_RULE, "expiration")]), "expiration",
        "no-expiration"),
    bad(P.S3_13, T.S3_LIFECYCLE, with_(LIFECYCLE, rules=[with_(LIFECYCLE_RULE, status="Disabled")]), "no enabled rule",
        "rule-disabled"),
    # versioning
    ok(P.S3_VERSIONING, T.S3_BUCKET_VERSIONING, VERSIONING, "enabled"),
    bad(P.S3_VERSIONING, T.S3_BUCKET_VERSIONING, with_(VERSIONING, versioningConfiguration={"status": "Suspended"}),
        "Suspended", "suspended"),
    # SSE-KMS
    ok(P.S3_SSE_KMS, T.S3_SSE, SSE, "kms-with-key"),
    ok(P.S3_SSE_KMS, T.S3_SSE,
       with_(SSE, rules=[{"applyServerSideEncryptionByDefault": with_(SSE_DEFAULT, kmsMasterKeyId=UNKNOWN_STR)}]),
       "key-arn-unknown-in-preview"),
    bad(P.S3_SSE_KMS, T.S3_SSE,
        with_(SSE, rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]), "AES256", "sse-s3"),
    bad(P.S3_SSE_KMS, T.S3_SSE,
        with_(SSE, rules=[{"applyServerSideEncryptionByDefault": without(SSE_DEFAULT, "kmsMasterKeyId")}]),
        "kmsMasterKeyId", "aws-managed-key"),
    # replication
    ok(P.S3_REPLICATION, T.S3_REPLICATION_CONFIG, REPLICATION, "rtc-metrics-kms"),
    bad(P.S3_REPLICATION, T.S3_REPLICATION_CONFIG, replication(status="Disabled"), "no enabled rule", "rule-disabled"),
    bad(P.S3_REPLICATION, T.S3_REPLICATION_CONFIG, replication_destination(replicationTime={"status": "Disabled",
        "time": {"minutes": 15.0}}), "Replication Time Control", "no-rtc"),
    bad(P.S3_REPLICATION, T.S3_REPLICATION_CONFIG, replication_destination(metrics={"status": "Enabled",
        "eventThreshold": {"minutes": 30.0}}), "eventThreshold", "metrics-30-min"),
    bad(P.S3_REPLICATION, T.S3_REPLICATION_CONFIG, replication_destination(encryptionConfiguration={}),
        "replicaKmsKeyId", "no-replica-key"),
    bad(P.S3_REPLICATION, T.S3_REPLICATION_CONFIG, replication(sourceSelectionCriteria={}), "SSE-KMS",
        "kms-objects-not-selected"),
    # RDS.4 / RDS.27
    ok(P.RDS_4_27, T.RDS_CLUSTER, CLUSTER, "encrypted-with-key"),
    ok(P.RDS_4_27, T.RDS_CLUSTER, with_(CLUSTER, kmsKeyId=UNKNOWN_STR), "key-unknown-in-preview"),
    bad(P.RDS_4_27, T.RDS_CLUSTER, with_(CLUSTER, storageEncrypted=False), "storageEncrypted", "not-encrypted"),
    bad(P.RDS_4_27, T.RDS_CLUSTER, without(SECONDARY_CLUSTER, "kmsKeyId"), "kmsKeyId", "secondary-without-key"),
    # global cluster
    ok(P.RDS_GLOBAL, T.RDS_GLOBAL_CLUSTER, GLOBAL_CLUSTER, "encrypted-protected"),
    ok(P.RDS_GLOBAL, T.RDS_GLOBAL_CLUSTER,
       with_(without(GLOBAL_CLUSTER, "storageEncrypted", "engine"), sourceDbClusterIdentifier="arn:db"),
       "encryption-inherited-from-source"),
    bad(P.RDS_GLOBAL, T.RDS_GLOBAL_CLUSTER, with_(GLOBAL_CLUSTER, storageEncrypted=False), "storageEncrypted",
        "not-encrypted"),
    bad(P.RDS_GLOBAL, T.RDS_GLOBAL_CLUSTER, without(GLOBAL_CLUSTER, "deletionProtection"), "deletionProtection",
        "unprotected"),
    # RDS.7 / .12 / .16
    ok(P.RDS_7, T.RDS_CLUSTER, CLUSTER, "protected"),
    bad(P.RDS_7, T.RDS_CLUSTER, with_(CLUSTER, deletionProtection=False), "deletionProtection", "unprotected"),
    ok(P.RDS_12, T.RDS_CLUSTER, CLUSTER, "iam-auth"),
    bad(P.RDS_12, T.RDS_CLUSTER, without(CLUSTER, "iamDatabaseAuthenticationEnabled"), "iamDatabaseAuthentication",
        "no-iam-auth"),
    ok(P.RDS_16, T.RDS_CLUSTER, CLUSTER, "copy-tags"),
    bad(P.RDS_16, T.RDS_CLUSTER, with_(CLUSTER, copyTagsToSnapshot=False), "copyTagsToSnapshot", "no-copy-tags"),
    # RDS.24
    ok(P.RDS_24, T.RDS_CLUSTER, CLUSTER, "custom-user"),
    ok(P.RDS_24, T.RDS_CLUSTER, SECONDARY_CLUSTER, "global-secondary-without-user"),
    bad(P.RDS_24, T.RDS_CLUSTER, with_(CLUSTER, masterUsername="postgres"), "default admin", "postgres"),
    bad(P.RDS_24, T.RDS_CLUSTER, with_(CLUSTER, masterUsername="Admin"), "default admin", "admin"),
    bad(P.RDS_24, T.RDS_CLUSTER, without(CLUSTER, "masterUsername", "globalClusterIdentifier"), "not set",
        "standalone-without-user"),
    # RDS.35
    ok(P.RDS_35, T.RDS_CLUSTER_INSTANCE, INSTANCE, "instance-on"),
    ok(P.RDS_35, T.RDS_CLUSTER, CLUSTER, "cluster-unset"),
    bad(P.RDS_35, T.RDS_CLUSTER_INSTANCE, with_(INSTANCE, autoMinorVersionUpgrade=False), "autoMinorVersionUpgrade",
        "instance-off"),
    bad(P.RDS_35, T.RDS_CLUSTER_INSTANCE, without(INSTANCE, "autoMinorVersionUpgrade"), "not set", "instance-unset"),
    bad(P.RDS_35, T.RDS_CLUSTER, with_(CLUSTER, autoMinorVersionUpgrade=False), "autoMinorVersionUpgrade",
        "cluster-off"),
    # RDS.37
    ok(P.RDS_37, T.RDS_CLUSTER, CLUSTER, "postgresql-exported"),
    ok(P.RDS_37, T.RDS_CLUSTER, with_(without(CLUSTER, "enabledCloudwatchLogsExports"), engine="aurora-mysql"),
       "not-postgres"),
    bad(P.RDS_37, T.RDS_CLUSTER, with_(CLUSTER, enabledCloudwatchLogsExports=["iam-db-auth-error"]), "postgresql",
        "other-log-only"),
    bad(P.RDS_37, T.RDS_CLUSTER, without(CLUSTER, "enabledCloudwatchLogsExports"), "postgresql", "no-exports"),
    # backups
    ok(P.RDS_BACKUPS, T.RDS_CLUSTER, CLUSTER, "7-days"),
    ok(P.RDS_BACKUPS, T.RDS_CLUSTER, with_(CLUSTER, backupRetentionPeriod=35.0), "35-days"),
    bad(P.RDS_BACKUPS, T.RDS_CLUSTER, with_(CLUSTER, backupRetentionPeriod=6.0), "backupRetentionPeriod", "6-days"),
    bad(P.RDS_BACKUPS, T.RDS_CLUSTER, without(CLUSTER, "backupRetentionPeriod"), "not set", "aws-default-1-day"),
    # ElastiCache
    ok(P.ELASTICACHE_1, T.ELASTICACHE_RG, CACHE, "1-day"),
    bad(P.ELASTICACHE_1, T.ELASTICACHE_RG, with_(CACHE, snapshotRetentionLimit=0.0), "snapshotRetentionLimit",
        "0-days"),
    bad(P.ELASTICACHE_1, T.ELASTICACHE_RG, without(CACHE, "snapshotRetentionLimit"), "not set", "unset"),
    ok(P.ELASTICACHE_2, T.ELASTICACHE_RG, CACHE, "on"),
    bad(P.ELASTICACHE_2, T.ELASTICACHE_RG, with_(CACHE, autoMinorVersionUpgrade=False), "autoMinorVersionUpgrade", "off"),
    ok(P.ELASTICACHE_3, T.ELASTICACHE_RG, CACHE, "on"),
    bad(P.ELASTICACHE_3, T.ELASTICACHE_RG, with_(CACHE, automaticFailoverEnabled=False), "automaticFailover", "off"),
    ok(P.ELASTICACHE_4, T.ELASTICACHE_RG, CACHE, "bool-true"),
    ok(P.ELASTICACHE_4, T.ELASTICACHE_RG, with_(CACHE, atRestEncryptionEnabled="true"), "string-true"),
    bad(P.ELASTICACHE_4, T.ELASTICACHE_RG, with_(CACHE, atRestEncryptionEnabled="false"), "atRestEncryption",
        "string-false"),
    bad(P.ELASTICACHE_4, T.ELASTICACHE_RG, without(CACHE, "atRestEncryptionEnabled"), "not set", "unset"),
    ok(P.ELASTICACHE_5, T.ELASTICACHE_RG, CACHE, "on"),
    bad(P.ELASTICACHE_5, T.ELASTICACHE_RG, with_(CACHE, transitEncryptionEnabled=False), "transitEncryption", "off"),
    ok(P.ELASTICACHE_MULTI_AZ, T.ELASTICACHE_RG, CACHE, "on"),
    bad(P.ELASTICACHE_MULTI_AZ, T.ELASTICACHE_RG, without(CACHE, "multiAzEnabled"), "multiAzEnabled", "unset"),
    # KMS.4
    ok(P.KMS_4, T.KMS_KEY, KEY, "rotation-on"),
    ok(P.KMS_4, T.KMS_KEY, {"customerMasterKeySpec": "RSA_2048", "keyUsage": "SIGN_VERIFY"}, "asymmetric-not-applicable"),
    bad(P.KMS_4, T.KMS_KEY, with_(KEY, enableKeyRotation=False), "enableKeyRotation", "rotation-off"),
    bad(P.KMS_4, T.KMS_KEY, without(KEY, "enableKeyRotation"), "not set", "rotation-unset"),
    # Route 53
    ok(P.ROUTE53_FAILOVER, T.R53_RECORD, RECORD, "failover-with-check"),
    ok(P.ROUTE53_FAILOVER, T.R53_RECORD, with_(RECORD, healthCheckId=UNKNOWN_STR), "check-id-unknown-in-preview"),
    ok(P.ROUTE53_FAILOVER, T.R53_RECORD, without(RECORD, "failoverRoutingPolicies", "healthCheckId", "setIdentifier"),
       "simple-record-not-applicable"),
    bad(P.ROUTE53_FAILOVER, T.R53_RECORD, without(RECORD, "healthCheckId"), "healthCheckId", "failover-without-check"),
    ok(P.ROUTE53_NOT_INVERTED, T.R53_HEALTH_CHECK, {"type": "HTTPS", "fqdn": "node.xai.example.com"}, "not-inverted"),
    ok(P.ROUTE53_NOT_INVERTED, T.R53_HEALTH_CHECK, {"type": "HTTPS", "invertHealthcheck": False}, "explicit-false"),
    bad(P.ROUTE53_NOT_INVERTED, T.R53_HEALTH_CHECK, {"type": "HTTPS", "invertHealthcheck": True}, "invertHealthcheck",
        "inverted"),
]


@pytest.mark.parametrize(("policy", "type_", "props", "expect"), RESOURCE_CASES)
def test_resource_rule(policy: ResourceValidationPolicy, type_: str, props: Mapping[str, Any],
                       expect: Optional[str]) -> None:
    found = check_resource(policy, type_, props)
    if expect is None:
        assert found == []
    else:
        assert found, f"{policy.name} reported nothing"
        assert any(expect in message for message in found), found


def test_every_resource_rule_has_a_passing_and_a_failing_case() -> None:
    passing = {p.values[0].name for p in RESOURCE_CASES if p.values[3] is None}
    failing = {p.values[0].name for p in RESOURCE_CASES if p.values[3] is not None}
    names = {p.name for p in rules.RESOURCE_POLICIES}
    assert names - passing == set()
    assert names - failing == set()


@pytest.mark.parametrize("policy", rules.RESOURCE_POLICIES, ids=lambda p: p.name)
def test_resource_rules_ignore_other_types(policy: ResourceValidationPolicy) -> None:
    # A rule only judges its own resource types: an empty resource of another type passes.
    assert check_resource(policy, "aws:ec2/instance:Instance", {}) == []


def _unknown_everywhere(value: Any, sentinel: str = UNKNOWN_STR) -> Any:
    if isinstance(value, dict):
        return {k: _unknown_everywhere(v, sentinel) for k, v in value.items()}
    if isinstance(value, list):
        return [_unknown_everywhere(v, sentinel) for v in value]
    return sentinel


@pytest.mark.parametrize(("policy", "type_", "props"),
                         [pytest.param(*p.values[:3], id=p.id) for p in RESOURCE_CASES if p.values[3] is None])
def test_unknown_values_are_tolerated(policy: ResourceValidationPolicy, type_: str, props: Mapping[str, Any]) -> None:
    # Every leaf unknown (preview before anything exists): no violation, no UnknownValueError.
    assert check_resource(policy, type_, _unknown_everywhere(props)) == []
    # The whole list/object unknown, as for an input computed with Output.apply.
    assert check_resource(policy, type_, {k: UNKNOWN_STR for k in props}) == []


def test_unknown_does_not_hide_other_violations() -> None:
    # An unknown key ARN is tolerated, yet storageEncrypted: false on the same cluster still fails.
    found = check_resource(rules.RDS_4_27, rules.RDS_CLUSTER, with_(CLUSTER, kmsKeyId=UNKNOWN_STR,
                                                                    storageEncrypted=False))
    assert len(found) == 1 and "storageEncrypted" in found[0]
    found = check_resource(rules.S3_8, rules.S3_PUBLIC_ACCESS_BLOCK, with_(PUBLIC_ACCESS, blockPublicAcls=UNKNOWN_BOOL,
                                                                           blockPublicPolicy=False))
    assert len(found) == 1 and "blockPublicPolicy" in found[0]


def test_mock_style_unknowns_and_secrets() -> None:
    # Under Pulumi's mocks an unknown input arrives as None / pulumi.output.Unknown, a secret wrapped.
    from pulumi.output import Unknown

    assert check_resource(rules.RDS_4_27, rules.RDS_CLUSTER, with_(CLUSTER, kmsKeyId=Unknown())) == []
    assert check_resource(rules.ROUTE53_FAILOVER, rules.R53_RECORD, with_(RECORD, healthCheckId=None)) == []
    assert check_resource(rules.RDS_7, rules.RDS_CLUSTER, with_(CLUSTER, deletionProtection=None)) == []
    assert check_resource(rules.RDS_7, rules.RDS_CLUSTER, with_(CLUSTER, deletionProtection=Unknown())) == []
    secret_user = with_(CLUSTER, masterUsername={SECRET_SIG: SECRET_VALUE_SIG, "value": "postgres"})
    assert check_resource(rules.RDS_24, rules.RDS_CLUSTER, secret_user)


# ------------------------------------------------------------------------------------------------
# Stack rules
# ------------------------------------------------------------------------------------------------

BUCKET_CHILDREN: dict[str, tuple[StackValidationPolicy, dict[str, Any]]] = {
    rules.S3_POLICY: (rules.S3_5_COVERAGE, BUCKET_POLICY),
    rules.S3_PUBLIC_ACCESS_BLOCK: (rules.S3_8_COVERAGE, PUBLIC_ACCESS),
    rules.S3_OWNERSHIP: (rules.S3_12_COVERAGE, OWNERSHIP),
    rules.S3_LIFECYCLE: (rules.S3_13_COVERAGE, LIFECYCLE),
    rules.S3_BUCKET_VERSIONING: (rules.S3_VERSIONING_COVERAGE, VERSIONING),
    rules.S3_SSE: (rules.S3_SSE_KMS_COVERAGE, SSE),
}
COVERAGE = [pytest.param(policy, type_, id=policy.name) for type_, (policy, _) in BUCKET_CHILDREN.items()]


def vault(bucket: str = BUCKET, skip: str = "", child_bucket: Any = None,
          by_dependency: bool = False) -> list[PolicyResource]:
    b = res(rules.S3_BUCKET, f"{bucket}-bucket", {"bucket": bucket})
    out = [b]
    for type_, (_, props) in BUCKET_CHILDREN.items():
        if type_ == skip:
            continue
        child = with_(props, bucket=bucket if child_bucket is None else child_bucket)
        out.append(res(type_, f"{bucket}-{type_.rsplit(':', 1)[-1]}", child,
                       {"bucket": [b]} if by_dependency else None))
    return out


@pytest.mark.parametrize(("policy", "child_type"), COVERAGE)
def test_bucket_coverage_passes_complete_vaults(policy: StackValidationPolicy, child_type: str) -> None:
    assert check_stack(policy, vault() + vault("xai-backups-dr-us-west-2")) == []
    # First preview: the children's `bucket` (the Bucket's ID) is unknown; the engine's property
    # dependency still ties them to their bucket.
    assert check_stack(policy, vault(child_bucket=UNKNOWN_STR, by_dependency=True)) == []


@pytest.mark.parametrize(("policy", "child_type"), COVERAGE)
def test_bucket_coverage_fails_a_bucket_without_it(policy: StackValidationPolicy, child_type: str) -> None:
    stack = vault() + vault("xai-other", skip=child_type)
    found = check_stack(policy, stack)
    assert [urn for urn, _ in found] == [stack[len(vault())].urn], found
    assert "xai-other" in found[0][1]
    # A child of another bucket does not count.
    assert check_stack(policy, vault(child_bucket="someone-elses-bucket"))
    # Nor does a dependency on another bucket when the name is unknown.
    other = res(rules.S3_BUCKET, "other", {"bucket": "other"})
    mine = res(rules.S3_BUCKET, "mine", {"bucket": BUCKET})
    child = res(child_type, "child", with_(BUCKET_CHILDREN[child_type][1], bucket=UNKNOWN_STR), {"bucket": [other]})
    found = check_stack(policy, [other, mine, child])
    assert [urn for urn, _ in found] == [mine.urn]


@pytest.mark.parametrize(("policy", "child_type"), COVERAGE)
def test_bucket_coverage_tolerates_an_undeterminable_link(policy: StackValidationPolicy, child_type: str) -> None:
    # Unknown `bucket` and no dependency information: the link can't be proved either way.
    assert check_stack(policy, vault(child_bucket=UNKNOWN_STR)) == []


def cluster_stack(*zones: Any, cluster_id: str = "db-primary") -> list[PolicyResource]:
    out = [res(rules.RDS_CLUSTER, cluster_id, with_(CLUSTER, clusterIdentifier=cluster_id))]
    for i, zone in enumerate(zones):
        props = with_(INSTANCE, identifier=f"{cluster_id}-{i}", clusterIdentifier=cluster_id, availabilityZone=zone)
        if zone is None:
            props = without(props, "availabilityZone")
        out.append(res(rules.RDS_CLUSTER_INSTANCE, f"{cluster_id}-{i}", props))
    return out


@pytest.mark.parametrize("stack", [
    pytest.param(cluster_stack("us-east-1a", "us-east-1b"), id="two-zones"),
    pytest.param(cluster_stack("us-east-1a", "us-east-1a", "us-east-1c"), id="three-instances-two-zones"),
    pytest.param(cluster_stack("us-east-1a", UNKNOWN_STR), id="zone-unknown-in-preview"),
    pytest.param(cluster_stack("us-east-1a", "us-east-1b") + cluster_stack("us-west-2a", "us-west-2b",
                                                                           cluster_id="db-dr"), id="two-clusters"),
])
def test_rds_15_passes(stack: list[PolicyResource]) -> None:
    assert check_stack(rules.RDS_15, stack) == []


@pytest.mark.parametrize(("stack", "expect"), [
    pytest.param(cluster_stack("us-east-1a"), "1 instance", id="one-instance"),
    pytest.param(cluster_stack(), "0 instance", id="no-instances"),
    pytest.param(cluster_stack("us-east-1a", "us-east-1a"), "availability zones", id="same-zone"),
    pytest.param(cluster_stack("us-east-1a", None), "explicit availabilityZone", id="zone-unset"),
    pytest.param(cluster_stack("us-east-1a") + cluster_stack("us-east-1b", cluster_id="other"), "1 instance",
                 id="other-clusters-instance-does-not-count"),
])
def test_rds_15_fails(stack: list[PolicyResource], expect: str) -> None:
    found = check_stack(rules.RDS_15, stack)
    assert found and all(urn == stack[0].urn for urn, _ in found[:1]), found
    assert expect in found[0][1]


def test_every_stack_rule_is_tested() -> None:
    tested = {p.name for p, _ in BUCKET_CHILDREN.values()} | {rules.RDS_15.name, rules.TRAFFIC_DATA_PLANE.name,
                                                                    rules.DR_EVENTS_TOPIC.name,
                                                                    rules.BACKUP_ACCOUNT_VAULT_LOCKED.name}
    assert tested == {p.name for p in rules.STACK_POLICIES}


# ------------------------------------------------------------------------------------------------
# The pack itself
# ------------------------------------------------------------------------------------------------


def test_pack_definition() -> None:
    names = [p.name for p in rules.ALL_POLICIES]
    assert len(names) == len(set(names)), "policy names must be unique in a pack"
    assert set(rules.ALL_POLICIES) == set(rules.RESOURCE_POLICIES) | set(rules.STACK_POLICIES)
    assert all(p.description for p in rules.ALL_POLICIES)
    for control in ("S3.5", "S3.8", "S3.12", "S3.13", "RDS.4", "RDS.7", "RDS.12", "RDS.15", "RDS.16", "RDS.24",
                    "RDS.27", "RDS.35", "RDS.37", "ElastiCache.1", "ElastiCache.2", "ElastiCache.3",
                    "ElastiCache.4", "ElastiCache.5", "KMS.4"):
        assert any(control in p.name and control in p.description and '"' in p.description
                   for p in rules.ALL_POLICIES), control
    assert rules.PACK_NAME == "xai-dr-fsbp"
    assert rules.PACK_ENFORCEMENT is EnforcementLevel.MANDATORY

    manifest = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"] == "python"
    requirements = (POLICY_DIR / "requirements.txt").read_text()
    assert "pulumi-policy" in requirements and "\npulumi" in "\n" + requirements

    # The entry module builds the pack from the rule module (read, never imported: it would block).
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert keywords["policies"].endswith("ALL_POLICIES")
    assert keywords["name"].endswith("PACK_NAME") and keywords["enforcement_level"].endswith("PACK_ENFORCEMENT")


# ------------------------------------------------------------------------------------------------
# Both stacks, as the program registers them
# ------------------------------------------------------------------------------------------------


def _as_preview_props(value: Any) -> Any:
    """Mock inputs as the analyzer would see them: pulumi Unknown/None as the engine's unknown
    sentinel, secrets unwrapped."""
    from pulumi.output import Unknown

    if isinstance(value, Unknown):
        return UNKNOWN_STR
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE_SIG:
            return _as_preview_props(value.get("value"))
        return {k: _as_preview_props(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_as_preview_props(v) for v in value]
    return value


Registered = tuple[str, str, str, dict[str, Any], str]


@pytest.fixture(scope="module")
def stacks() -> dict[str, list[Registered]]:
    """(type, name, urn, props, region) of every resource each stack registers. Props are the mocks'
    state (inputs plus what AWS computes, e.g. a health check's arn), as a stack rule sees them after
    an update; region is that of the resource's provider."""
    from infra_runs import STACKS, run  # adds infra/ to sys.path and caches the runs

    return {stack: [(r.type, r.name, r.urn or r.name, _as_preview_props(r.outputs), r.region)
                    for r in run(stack).resources]
            for stack in STACKS}


def provider(region: str) -> PolicyProviderResource:
    return PolicyProviderResource("pulumi:providers:aws", {"region": region}, f"urn:pulumi:s::p::pulumi:providers:aws::{region}",
                                  region)


def policy_resources(registered: Iterable[Registered]) -> list[PolicyResource]:
    return [PolicyResource(t, unknown_checking_proxy(props), urn, name, OPTS, provider(region), None, [], {})
            for t, name, urn, props, region in registered]


# What each stack must contain, so that the all-pass test below cannot pass vacuously.
EXPECTED_TYPES = {
    "production": {rules.KMS_KEY, rules.S3_BUCKET, rules.S3_BUCKET_VERSIONING, rules.S3_SSE, rules.S3_LIFECYCLE,
                   rules.S3_PUBLIC_ACCESS_BLOCK, rules.S3_OWNERSHIP, rules.S3_POLICY, rules.RDS_GLOBAL_CLUSTER,
                   rules.RDS_CLUSTER, rules.RDS_CLUSTER_INSTANCE, rules.ELASTICACHE_RG, rules.R53_HEALTH_CHECK,
                   rules.R53_RECORD, rules.CW_METRIC_ALARM},
    "production-dr": {rules.KMS_KEY, rules.S3_BUCKET, rules.S3_BUCKET_VERSIONING, rules.S3_SSE, rules.S3_LIFECYCLE,
                      rules.S3_PUBLIC_ACCESS_BLOCK, rules.S3_OWNERSHIP, rules.S3_POLICY, rules.S3_REPLICATION_CONFIG,
                      rules.RDS_CLUSTER, rules.RDS_CLUSTER_INSTANCE, rules.ELASTICACHE_RG, rules.R53_HEALTH_CHECK,
                      rules.R53_RECORD},
}
Stacks = dict[str, list[Registered]]


@pytest.mark.parametrize("stack", sorted(EXPECTED_TYPES))
def test_all_rules_pass_on_every_registered_resource(stacks: Stacks, stack: str) -> None:
    resources = policy_resources(stacks[stack])
    assert EXPECTED_TYPES[stack] <= {r.resource_type for r in resources}
    violations: list[str] = []
    for policy in rules.RESOURCE_POLICIES:
        for r in resources:
            args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, OPTS, None)
            policy.validate(args, collector(violations, f"{policy.name} on {r.name}: "))
    for stack_policy in rules.STACK_POLICIES:
        stack_policy.validate(StackValidationArgs(resources), collector(violations, f"{stack_policy.name}: "))
    assert violations == []


@pytest.mark.parametrize("stack", sorted(EXPECTED_TYPES))
def test_rules_catch_a_regression_in_the_registered_stack(stacks: Stacks, stack: str) -> None:
    # The same path catches a real regression: drop the stack's versioning, weaken its cluster.
    registered = stacks[stack]
    assert check_stack(rules.S3_VERSIONING_COVERAGE,
                       policy_resources(r for r in registered if r[0] != rules.S3_BUCKET_VERSIONING))
    clusters = [props for t, _, _, props, _ in registered if t == rules.RDS_CLUSTER]
    assert clusters
    for props in clusters:
        assert check_resource(rules.RDS_7, rules.RDS_CLUSTER, with_(props, deletionProtection=False))
        assert check_resource(rules.RDS_4_27, rules.RDS_CLUSTER, without(props, "kmsKeyId"))


# ------------------------------------------------------------------------------------------------
# Traffic control: the PRIMARY record moves on Route 53's data plane (infra/traffic_control.py)
# ------------------------------------------------------------------------------------------------


def _changed(registered: list[Registered], name: str, **changes: Any) -> list[Registered]:
    """The registered stack with one resource's props (or, with region=..., its provider region) changed."""
    region = changes.pop("region", None)
    return [(t, n, urn, with_(props, **changes), region or r) if n == name else (t, n, urn, props, r)
            for t, n, urn, props, r in registered]


def test_traffic_rule_passes_the_program(stacks: Stacks) -> None:
    primary = stacks["production"]
    assert {(t, props.get("type")) for t, _, _, props, _ in primary if t == rules.R53_HEALTH_CHECK} == {
        (rules.R53_HEALTH_CHECK, "HTTPS"), (rules.R53_HEALTH_CHECK, "CLOUDWATCH_METRIC"),
        (rules.R53_HEALTH_CHECK, "CALCULATED")}
    for stack in sorted(EXPECTED_TYPES):
        assert check_stack(rules.TRAFFIC_DATA_PLANE, policy_resources(stacks[stack])) == []


@pytest.mark.parametrize(("name", "changes", "expect"), [
    pytest.param("dns-record", {"healthCheckId": "not-a-check-of-this-stack"}, "follows no health check",
                 id="record-on-a-foreign-check"),
    pytest.param("dns-traffic-record", {"type": "HTTPS"}, "requires a CALCULATED check", id="record-check-not-calculated"),
    pytest.param("dns-traffic-record", {"childHealthchecks": []}, "has no CLOUDWATCH_METRIC child", id="no-flag-child"),
    pytest.param("dns-traffic-flag", {"cloudwatchAlarmRegion": "us-east-1"}, "not us-east-1", id="alarm-in-us-east-1"),
    pytest.param("dns-traffic-flag", {"cloudwatchAlarmName": "someone-elses"}, "does not declare", id="alarm-not-declared"),
    pytest.param("dns-traffic-flag-alarm", {"treatMissingData": "breaching"}, "'ignore'", id="missing-data-breaching"),
    pytest.param("dns-traffic-flag", {"insufficientDataHealthStatus": "Unhealthy"}, "Unhealthy on insufficient data",
                 id="unhealthy-on-insufficient-data"),
])
def test_traffic_rule_rejects(stacks: Stacks, name: str, changes: dict[str, Any], expect: str) -> None:
    found = check_stack(rules.TRAFFIC_DATA_PLANE, policy_resources(_changed(stacks["production"], name, **changes)))
    assert found, "the rule reported nothing"
    assert any(expect in message for _, message in found), found


def test_traffic_rule_rejects_an_alarm_in_the_records_own_region(stacks: Stacks) -> None:
    # A primary in us-west-2 whose flag is also in us-west-2 would lose the flag with its region.
    registered = _changed(stacks["production"], "dns-record", region="us-west-2")
    found = check_stack(rules.TRAFFIC_DATA_PLANE, policy_resources(registered))
    record_urn = next(urn for _, n, urn, _, _ in registered if n == "dns-record")
    assert found and found[0][0] == record_urn
    assert "the record's own region" in found[0][1]


def test_traffic_rule_tolerates_preview(stacks: Stacks) -> None:
    # First preview: the record's healthCheckId and the children's IDs are unknown; the engine's
    # property dependencies still tie them together.
    registered = {n: (t, n, urn, props, r) for t, n, urn, props, r in stacks["production"]}

    def as_res(name: str, props: dict[str, Any], deps: Optional[dict[str, list[PolicyResource]]] = None) -> PolicyResource:
        t, _, urn, _, region = registered[name]
        return PolicyResource(t, unknown_checking_proxy(props), urn, name, OPTS, provider(region), None,
                              [d for v in (deps or {}).values() for d in v], dict(deps or {}))

    def unknown_arn(name: str) -> dict[str, Any]:
        return with_(registered[name][3], arn=UNKNOWN_STR)

    alarm = as_res("dns-traffic-flag-alarm", registered["dns-traffic-flag-alarm"][3])
    endpoint = as_res("dns-health", unknown_arn("dns-health"))
    flag = as_res("dns-traffic-flag", with_(unknown_arn("dns-traffic-flag"), cloudwatchAlarmName=UNKNOWN_STR))
    calc = as_res("dns-traffic-record", with_(unknown_arn("dns-traffic-record"), childHealthchecks=UNKNOWN_STR),
                  {"childHealthchecks": [endpoint, flag]})
    record = as_res("dns-record", with_(registered["dns-record"][3], healthCheckId=UNKNOWN_STR), {"healthCheckId": [calc]})
    assert check_stack(rules.TRAFFIC_DATA_PLANE, [alarm, endpoint, flag, calc, record]) == []
    # With no dependency information at all the link can't be proved either way: nothing reported.
    bare = as_res("dns-record", with_(registered["dns-record"][3], healthCheckId=UNKNOWN_STR))
    assert check_stack(rules.TRAFFIC_DATA_PLANE, [alarm, endpoint, flag, bare]) == []
    # The dependency still catches a record on the plain endpoint check.
    wrong = as_res("dns-record", with_(registered["dns-record"][3], healthCheckId=UNKNOWN_STR), {"healthCheckId": [endpoint]})
    assert check_stack(rules.TRAFFIC_DATA_PLANE, [alarm, endpoint, flag, calc, wrong])


def test_dr_events_topic_is_encrypted_and_heard(stacks: Stacks) -> None:
    """XAI.SNS.dr-events-topic (policy/notification_rules.py) on both stacks, and what it catches."""
    import notification_rules as nr

    for stack, registered in stacks.items():
        assert check_stack(rules.DR_EVENTS_TOPIC, policy_resources(registered)) == [], stack
        unheard = check_stack(rules.DR_EVENTS_TOPIC, policy_resources(r for r in registered if r[0] != nr.SNS_SUBSCRIPTION))
        assert len(unheard) == 1 and "has no subscription" in unheard[0][1]
    topic = res(nr.SNS_TOPIC, "t", {"name": "t", "arn": "arn:aws:sns:us-east-1:1:t"})
    sub = res(nr.SNS_SUBSCRIPTION, "s", {"topic": "arn:aws:sns:us-east-1:1:t", "protocol": "email"})
    assert [m for _, m in check_stack(rules.DR_EVENTS_TOPIC, [topic, sub])] == [
        "topic t is not encrypted (no kmsMasterKeyId): DR events name the stack's resources and failures"]
    other = res(nr.SNS_SUBSCRIPTION, "o", {"topic": "arn:aws:sns:us-east-1:1:other", "protocol": "email"})
    keyed = res(nr.SNS_TOPIC, "t", {"name": "t", "arn": "arn:aws:sns:us-east-1:1:t", "kmsMasterKeyId": "k"})
    assert len(check_stack(rules.DR_EVENTS_TOPIC, [keyed, other])) == 1
    # First preview: the subscription's topic is unknown and its dependency ties it to the topic.
    pending = res(nr.SNS_SUBSCRIPTION, "p", {"topic": UNKNOWN_STR, "protocol": "email"}, {"topic": [keyed]})
    assert check_stack(rules.DR_EVENTS_TOPIC, [keyed, pending]) == []
