"""Request -> IAM checks: the action(s), resource ARN(s) and request context each operation
needs, by service. S3 is in actions_s3.py; every other service registers its operations here
with ``@_maps``. An operation in no table is unmapped (see the package docstring)."""

from __future__ import annotations

import base64
import json
import re
from typing import Callable

from recovery.local.iam.actions_s3 import _s3_checks
from recovery.local.iam.call import _Call
from recovery.local.iam.facts import _Check, _document

_MAPPERS: dict[tuple[str, str], Callable[[_Call], list[_Check]]] = {}


def _maps(service: str, *operations: str) -> Callable[[Callable[[_Call], list[_Check]]],
                                                         Callable[[_Call], list[_Check]]]:
    def register(fn: Callable[[_Call], list[_Check]]) -> Callable[[_Call], list[_Check]]:
        for operation in operations:
            _MAPPERS[(service, operation)] = fn
        return fn
    return register


def _checks(call: _Call) -> tuple[str, list[_Check], bool]:
    """(operation as the API names it, the checks it needs, whether our tables lack it)."""
    if call.service == "s3":
        mapped = _s3_checks(call)
        if mapped is None:
            return f"s3:{call.response.method}", [call.check("*", f"s3:{call.response.method}")], True
        return f"s3:{mapped[0]}", mapped[1], False
    mapper = _MAPPERS.get((call.service, call.operation))
    if mapper is None:
        return f"{call.service}:{call.operation}", [call.check("*")], True
    return f"{call.service}:{call.operation}", mapper(call), False


# ---- RDS ------------------------------------------------------------------------------------

def _rds(call: _Call, kind: str, ident: str) -> str:
    """An RDS ARN; identifiers may already be ARNs. A list call without one is `kind:*`."""
    if ident.startswith("arn:"):
        return ident
    region = "" if kind == "global-cluster" else None
    return call.arn(f"{kind}:{ident.lower() or '*'}", region=region)


@_maps("rds", "DescribeDBClusters")
def _rds_describe_clusters(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier")))]


@_maps("rds", "DescribeDBInstances")
def _rds_describe_instances(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "db", call.param("DBInstanceIdentifier")))]


@_maps("rds", "DescribeGlobalClusters")
def _rds_describe_global(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "global-cluster", call.param("GlobalClusterIdentifier")))]


@_maps("rds", "DescribeDBClusterSnapshots")
def _rds_describe_snapshots(call: _Call) -> list[_Check]:
    if call.param("DBClusterSnapshotIdentifier"):
        return [call.check(_rds(call, "cluster-snapshot", call.param("DBClusterSnapshotIdentifier")))]
    if call.param("DBClusterIdentifier"):
        return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier")))]
    return [call.check(_rds(call, "cluster-snapshot", ""))]


@_maps("rds", "FailoverGlobalCluster", "SwitchoverGlobalCluster")
def _rds_promote(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "global-cluster", call.param("GlobalClusterIdentifier"))),
            call.check(_rds(call, "cluster", call.param("TargetDbClusterIdentifier")))]


@_maps("rds", "RemoveFromGlobalCluster")
def _rds_remove_from_global(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "global-cluster", call.param("GlobalClusterIdentifier"))),
            call.check(_rds(call, "cluster", call.param("DbClusterIdentifier")))]


def _rds_optional(call: _Call, params: dict[str, str]) -> list[_Check]:
    """Checks on the parameter/subnet/option groups a call names (AWS checks only named ones)."""
    return [call.check(_rds(call, kind, call.param(name))) for name, kind in params.items() if call.param(name)]


@_maps("rds", "ModifyDBCluster")
def _rds_modify_cluster(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier"))),
            *_rds_optional(call, {"DBClusterParameterGroupName": "cluster-pg"})]


@_maps("rds", "RestoreDBClusterToPointInTime")
def _rds_restore_pitr(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier"))),
            call.check(_rds(call, "cluster", call.param("SourceDBClusterIdentifier"))),
            *_rds_optional(call, {"DBClusterParameterGroupName": "cluster-pg", "DBSubnetGroupName": "subgrp",
                                  "OptionGroupName": "og"})]


@_maps("rds", "RestoreDBClusterFromSnapshot")
def _rds_restore_snapshot(call: _Call) -> list[_Check]:
    # the identifier may be an ARN (a snapshot shared from another account can only be named so)
    return [call.check(_rds(call, "cluster", call.param("DBClusterIdentifier"))),
            call.check(_rds(call, "cluster-snapshot", call.param("SnapshotIdentifier"))),
            *_rds_optional(call, {"DBClusterParameterGroupName": "cluster-pg", "DBSubnetGroupName": "subgrp",
                                  "OptionGroupName": "og"})]


@_maps("rds", "CreateDBInstance")
def _rds_create_instance(call: _Call) -> list[_Check]:
    return [call.check(_rds(call, "db", call.param("DBInstanceIdentifier"))),
            *_rds_optional(call, {"DBClusterIdentifier": "cluster", "DBParameterGroupName": "pg",
                                  "DBSubnetGroupName": "subgrp", "OptionGroupName": "og"})]


@_maps("rds", "AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource")
def _rds_tags(call: _Call) -> list[_Check]:
    return [call.check(call.param("ResourceName", "*"))]


# ---- Route 53 -------------------------------------------------------------------------------

def _route53_id(call: _Call, kind: str) -> str:
    match = re.search(rf"/{kind}/([^/?]+)", call.response.path)
    return f"arn:aws:route53:::{kind}/{match.group(1) if match else '*'}"


@_maps("route53", "GetHealthCheck", "GetHealthCheckStatus", "UpdateHealthCheck", "DeleteHealthCheck")
def _route53_health_check(call: _Call) -> list[_Check]:
    return [call.check(_route53_id(call, "healthcheck"))]


@_maps("route53", "ListResourceRecordSets", "ChangeResourceRecordSets", "GetHostedZone")
def _route53_zone(call: _Call) -> list[_Check]:
    return [call.check(_route53_id(call, "hostedzone"))]


@_maps("route53", "ListHostedZones", "ListHealthChecks", "CreateHealthCheck", "GetChange")
def _route53_unscoped(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- Secrets Manager ------------------------------------------------------------------------

@_maps("secretsmanager", "GetSecretValue", "PutSecretValue", "DescribeSecret", "ListSecretVersionIds",
       "UpdateSecretVersionStage", "StopReplicationToReplica", "ReplicateSecretToRegions", "RotateSecret",
       "UpdateSecret",
       "GetResourcePolicy", "TagResource")
def _secret(call: _Call) -> list[_Check]:
    from moto.secretsmanager.models import secretsmanager_backends

    secret_id = call.param("SecretId")
    secret = secretsmanager_backends[call.account][call.region].secrets.get(secret_id)
    if secret is None:  # moto answers ResourceNotFound once we allow it
        arn = secret_id if secret_id.startswith("arn:") else call.arn(f"secret:{secret_id}")
        return [call.check(arn)]
    policy = getattr(secret, "policy", None)
    return [call.check(secret.arn, resource_policy=json.loads(policy) if policy else None)]


@_maps("secretsmanager", "ListSecrets")
def _secrets_list(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- ElastiCache, SSM, CloudWatch, CloudTrail -----------------------------------------------

@_maps("elasticache", "DescribeReplicationGroups", "ModifyReplicationGroup", "TestFailover", "DeleteReplicationGroup")
def _replication_group(call: _Call) -> list[_Check]:
    return [call.check(call.arn(f"replicationgroup:{call.param('ReplicationGroupId').lower() or '*'}"))]


@_maps("elasticache", "CreateReplicationGroup")
def _create_replication_group(call: _Call) -> list[_Check]:
    """AWS checks the group, its member clusters and the subnet group it is placed in."""
    gid = call.param("ReplicationGroupId").lower()
    checks = [call.check(call.arn(f"replicationgroup:{gid}")), call.check(call.arn(f"cluster:{gid}-*"))]
    if call.param("CacheSubnetGroupName"):
        checks.append(call.check(call.arn(f"subnetgroup:{call.param('CacheSubnetGroupName').lower()}")))
    return checks


def _ssm_parameter(call: _Call, name: str) -> str:
    return name if name.startswith("arn:") else call.arn("parameter" + (name if name.startswith("/") else f"/{name}"))


@_maps("ssm", "GetParameter", "PutParameter", "DeleteParameter", "GetParameterHistory")
def _ssm_one(call: _Call) -> list[_Check]:
    return [call.check(_ssm_parameter(call, call.param("Name")))]


@_maps("ssm", "GetParameters")
def _ssm_many(call: _Call) -> list[_Check]:
    return [call.check(_ssm_parameter(call, name)) for name in call.members("Names")] or [call.check("*")]


@_maps("sns", "Publish")
def _sns_publish(call: _Call) -> list[_Check]:
    return [call.check(call.param("TopicArn") or "*")]


@_maps("cloudwatch", "GetMetricStatistics", "GetMetricData", "ListMetrics")
def _cloudwatch_unscoped(call: _Call) -> list[_Check]:
    return [call.check("*")]


@_maps("cloudwatch", "PutMetricData")
def _metric_data(call: _Call) -> list[_Check]:
    # no resource-level permission: AWS bounds it by the namespace condition key
    return [call.check("*", context={"cloudwatch:namespace": call.param("Namespace")})]


@_maps("cloudwatch", "SetAlarmState")
def _alarm(call: _Call) -> list[_Check]:
    return [call.check(call.arn(f"alarm:{call.param('AlarmName')}"))]


@_maps("cloudwatch", "DescribeAlarms")
def _alarms(call: _Call) -> list[_Check]:
    return [call.check(call.arn(f"alarm:{n}")) for n in call.members("AlarmNames")] or [call.check("*")]


@_maps("cloudtrail", "StartLogging", "StopLogging", "GetTrailStatus", "GetTrail")
def _trail(call: _Call) -> list[_Check]:
    name = call.param("Name")
    return [call.check(name if name.startswith("arn:") else call.arn(f"trail/{name}"))]


@_maps("cloudtrail", "DescribeTrails", "LookupEvents")
def _cloudtrail_unscoped(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- EC2 ------------------------------------------------------------------------------------

# Resource-ID prefix -> the resource type in its ARN.
_EC2_ID_KINDS = {"i-": "instance", "sg-": "security-group", "vol-": "volume", "snap-": "snapshot",
                 "ami-": "image", "eni-": "network-interface", "vpc-": "vpc", "subnet-": "subnet",
                 "igw-": "internet-gateway", "rtb-": "route-table", "acl-": "network-acl",
                 "eipalloc-": "elastic-ip", "nat-": "natgateway", "lt-": "launch-template"}


def _ec2(call: _Call, kind: str, ident: str, action: str | None = None) -> _Check:
    """A check on one EC2 resource, with ec2:Vpc when moto knows the resource's VPC."""
    account = "" if kind in ("image", "snapshot") else None  # AWS-owned namespaces: no account
    vpc = _ec2_vpc(call, kind, ident)
    context = {"ec2:Vpc": call.arn(f"vpc/{vpc}")} if vpc else {}
    return call.check(call.arn(f"{kind}/{ident}", account=account), action, context)


def _ec2_vpc(call: _Call, kind: str, ident: str) -> str | None:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[call.account][call.region]
    lookup = {"instance": backend.get_instance, "security-group": backend.get_security_group_from_id,
              "network-interface": backend.get_network_interface}.get(kind)
    if lookup is None or ident == "*":
        return None
    try:
        return getattr(lookup(ident), "vpc_id", None)
    except Exception:  # an unknown ID: moto answers its own not-found error once we allow it
        return None


@_maps("ec2", "DescribeInstances", "DescribeSecurityGroups", "DescribeNetworkInterfaces", "DescribeImages",
       "DescribeSnapshots", "DescribeVolumes", "DescribeVpcs", "DescribeSubnets", "DescribeRegions",
       "DescribeAvailabilityZones", "DescribeTags")
def _ec2_describe(call: _Call) -> list[_Check]:
    return [call.check("*")]


@_maps("ec2", "CreateSecurityGroup")
def _ec2_create_security_group(call: _Call) -> list[_Check]:
    vpc = call.param("VpcId")
    group = call.check(call.arn("security-group/*"), context={"ec2:Vpc": call.arn(f"vpc/{vpc}")} if vpc else {})
    return [group, _ec2(call, "vpc", vpc)] if vpc else [group]


@_maps("ec2", "RevokeSecurityGroupEgress", "RevokeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
       "AuthorizeSecurityGroupIngress", "DeleteSecurityGroup")
def _ec2_security_group(call: _Call) -> list[_Check]:
    return [_ec2(call, "security-group", call.param("GroupId", "*"))]


@_maps("ec2", "ModifyNetworkInterfaceAttribute")
def _ec2_modify_eni(call: _Call) -> list[_Check]:
    groups = call.members("SecurityGroupId") or call.members("Groups")
    return [_ec2(call, "network-interface", call.param("NetworkInterfaceId", "*")),
            *(_ec2(call, "security-group", group) for group in groups)]


@_maps("ec2", "CreateTags", "DeleteTags")
def _ec2_tags(call: _Call) -> list[_Check]:
    checks = []
    for ident in call.members("ResourceId"):
        kind = next((k for prefix, k in _EC2_ID_KINDS.items() if ident.startswith(prefix)), ident.split("-")[0])
        checks.append(_ec2(call, kind, ident))
    return checks or [call.check("*")]


@_maps("ec2", "CreateImage")
def _ec2_create_image(call: _Call) -> list[_Check]:
    return [_ec2(call, "instance", call.param("InstanceId", "*")), _ec2(call, "image", "*"),
            _ec2(call, "snapshot", "*")]


@_maps("ec2", "CreateSnapshot")
def _ec2_create_snapshot(call: _Call) -> list[_Check]:
    return [_ec2(call, "volume", call.param("VolumeId", "*")), _ec2(call, "snapshot", "*")]


@_maps("ec2", "TerminateInstances", "StopInstances", "StartInstances", "RebootInstances")
def _ec2_instances(call: _Call) -> list[_Check]:
    return [_ec2(call, "instance", ident) for ident in call.members("InstanceId")] or [call.check("*")]


# ---- IAM, STS -------------------------------------------------------------------------------

def _iam_entity(call: _Call, kind: str, name: str, fallback: str) -> str:
    from moto.iam.models import iam_backends

    if not name:
        return fallback
    iam = iam_backends[call.account]["aws"]
    try:
        return (iam.get_user(name) if kind == "user" else iam.get_role(name)).arn  # the ARN has the path
    except Exception:
        return f"arn:aws:iam::{call.account}:{kind}/{name}"


@_maps("iam", "GetUser", "ListAccessKeys", "UpdateAccessKey", "DeleteAccessKey", "CreateAccessKey",
       "ListUserPolicies", "ListAttachedUserPolicies", "ListGroupsForUser")
def _iam_user(call: _Call) -> list[_Check]:
    # Without UserName these act on the caller itself.
    caller = call.caller.principal_arn if call.caller else "*"
    return [call.check(_iam_entity(call, "user", call.param("UserName"), caller))]


@_maps("iam", "ListRolePolicies", "PutRolePolicy", "GetRole", "GetRolePolicy", "DeleteRolePolicy",
       "ListAttachedRolePolicies", "UpdateAssumeRolePolicy")
def _iam_role(call: _Call) -> list[_Check]:
    return [call.check(_iam_entity(call, "role", call.param("RoleName"), "*"))]


@_maps("sts", "AssumeRole")
def _sts_assume_role(call: _Call) -> list[_Check]:
    """Both the caller's identity policies and the role's trust policy (as resource policy)."""
    from moto.iam.models import iam_backends

    role_arn = call.param("RoleArn")
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else call.account
    try:
        trust = _document(iam_backends[account]["aws"].get_role_by_arn(role_arn).assume_role_policy_document)
    except Exception:  # no such role: nothing trusts the caller, as in AWS
        trust = None
    context = {"sts:RoleSessionName": call.param("RoleSessionName")}
    if call.param("ExternalId"):
        context["sts:ExternalId"] = call.param("ExternalId")
    return [call.check(role_arn, context=context, resource_policy=trust, resource_account=account)]


@_maps("sts", "GetCallerIdentity")
def _sts_caller(call: _Call) -> list[_Check]:
    return [call.check("*")]


# ---- KMS ------------------------------------------------------------------------------------

@_maps("kms", "DescribeKey", "Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
       "ReEncrypt", "GetKeyPolicy", "EnableKeyRotation", "GetKeyRotationStatus", "ScheduleKeyDeletion")
def _kms_key(call: _Call) -> list[_Check]:
    """The key's ARN, whatever the caller named it by; its key policy is the resource policy."""
    from moto.kms.models import kms_backends

    requested = call.param("KeyId") or call.param("SourceKeyId") or _kms_key_in_ciphertext(call)
    backend = kms_backends[call.account][call.region]
    context = {"kms:RequestAlias": requested} if requested.startswith("alias/") or ":alias/" in requested else {}
    try:
        key = backend.describe_key(requested)
    except Exception:  # unknown key: moto answers NotFound once we allow it
        return [call.check(call.arn(f"key/{requested or '*'}"), context=context)]
    return [call.check(key.arn, context=context, resource_policy=_document(key.policy))]


def _kms_key_in_ciphertext(call: _Call) -> str:
    """Decrypt may omit KeyId: moto's ciphertext blob starts with the 36-character key ID."""
    try:
        return base64.b64decode(call.param("CiphertextBlob"))[:36].decode()
    except (ValueError, UnicodeDecodeError):
        return ""
