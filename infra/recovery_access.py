"""The IAM role the `recovery` tool runs as: one inline policy per job, each scoped to the
resources of this site, so a leaked on-call session can do only what a runbook does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# Key prefixes the tool writes (recovery/catalog.py and the runbooks): backups with their
# manifests and verification results, locks, runbook journals, drill and incident records,
# verification runs, and quarantined copies of replaced data.
WRITE_PREFIXES = ("backups/*", "locks/*", "runs/*", "drills/*", "incidents/*", "verifications/*", "quarantine/*")


@dataclass
class RecoveryAccessArgs:
    stack: str
    region: str
    trusted_principal_arns: list[str]
    bucket_arn: pulumi.Input[str]
    bucket_key_arn: pulumi.Input[str]
    global_cluster_id: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cache_group_arn: pulumi.Input[str]
    secret_arns: list[pulumi.Input[str]]
    zone_id: str
    health_check_ids: list[pulumi.Input[str]]
    vpc_id: str
    trail_name: str


def statement(sid: str, actions: list[str], resources: Any, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        s["Condition"] = condition
    return s


def job_policies(v: dict[str, Any], a: RecoveryAccessArgs) -> dict[str, str]:
    """Policy documents per job, from resolved ARNs. Pure, so tests can read it as JSON."""
    bucket, key = v["bucket_arn"], v["bucket_key_arn"]
    account_region = f"{a.region}:*"
    global_arn = f"arn:aws:rds::*:global-cluster:{v['global_cluster_id']}"
    docs: dict[str, list[dict[str, Any]]] = {
        "backup": [
            statement("ListVault", ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning",
                                    "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration",
                                    "s3:GetReplicationConfiguration", "s3:ListBucketMultipartUploads"], bucket),
            statement("WriteBackups", ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                      [f"{bucket}/{p}" for p in WRITE_PREFIXES]),
            # Only locks are ever deleted by the tool; backups expire through lifecycle.
            statement("ReleaseLocks", ["s3:DeleteObject"], f"{bucket}/locks/*"),
            statement("UseVaultKey", ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"], key),
        ],
        "restore": [
            statement("ReadBackups", ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes"], f"{bucket}/*"),
            statement("PointInTimeRestore", ["rds:RestoreDBClusterToPointInTime", "rds:CreateDBInstance",
                                             "rds:AddTagsToResource"],
                      [f"arn:aws:rds:{account_region}:cluster:*", f"arn:aws:rds:{account_region}:db:*",
                       f"arn:aws:rds:{account_region}:subgrp:*", v["cluster_arn"]]),
            statement("DescribeDatabases", ["rds:DescribeDBClusters", "rds:DescribeDBInstances",
                                            "rds:DescribeGlobalClusters", "rds:DescribeDBClusterSnapshots"], "*"),
        ],
        "failover": [
            statement("GlobalClusterFailover", ["rds:FailoverGlobalCluster", "rds:SwitchoverGlobalCluster",
                                                "rds:RemoveFromGlobalCluster"], [global_arn, v["cluster_arn"]]),
            statement("ReadLag", ["cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricData"], "*"),
            statement("MoveTraffic", ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
                      f"arn:aws:route53:::hostedzone/{a.zone_id}"),
            statement("HealthChecks", ["route53:UpdateHealthCheck", "route53:GetHealthCheck",
                                       "route53:GetHealthCheckStatus"],
                      [f"arn:aws:route53:::healthcheck/{h}" for h in v["health_check_ids"]]),
        ],
        "rotate": [
            statement("RotateSecrets", ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                                        "secretsmanager:UpdateSecretVersionStage", "secretsmanager:DescribeSecret"],
                      list(v["secret_arns"])),
            statement("SetDatabasePassword", ["rds:ModifyDBCluster"], v["cluster_arn"]),
            statement("SetCacheToken", ["elasticache:ModifyReplicationGroup", "elasticache:DescribeReplicationGroups"],
                      v["cache_group_arn"]),
        ],
        "contain": [
            # Isolation is confined to the site's VPC.
            statement("Quarantine", ["ec2:CreateSecurityGroup", "ec2:RevokeSecurityGroupEgress",
                                     "ec2:ModifyNetworkInterfaceAttribute", "ec2:CreateTags"], "*",
                      {"StringEquals": {"ec2:Vpc": f"arn:aws:ec2:{account_region}:vpc/{a.vpc_id}"}}),
            statement("Evidence", ["ec2:CreateImage", "ec2:CreateSnapshot", "ec2:DescribeInstances",
                                   "ec2:DescribeImages", "ec2:DescribeSnapshots", "ec2:DescribeSecurityGroups",
                                   "ec2:DescribeNetworkInterfaces", "ec2:DescribeVolumes"], "*"),
            statement("Terminate", ["ec2:TerminateInstances"], f"arn:aws:ec2:{account_region}:instance/*"),
            statement("RevokeKeys", ["iam:ListAccessKeys", "iam:UpdateAccessKey", "iam:DeleteAccessKey",
                                     "iam:PutRolePolicy"], "*"),
            statement("ForensicTrail", ["cloudtrail:StartLogging", "cloudtrail:GetTrailStatus",
                                        "cloudtrail:DescribeTrails", "cloudtrail:LookupEvents"],
                      [f"arn:aws:cloudtrail:{account_region}:trail/{a.trail_name}", "*"]),
        ],
    }
    return {job: json.dumps({"Version": "2012-10-17", "Statement": s}, sort_keys=True) for job, s in docs.items()}


class RecoveryAccess(pulumi.ComponentResource):
    role: aws.iam.Role

    def __init__(self, name: str, args: RecoveryAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:RecoveryAccess", name, None, opts)
        self.role = aws.iam.Role(
            f"{name}-role",
            name=f"xai-recovery-{args.stack}",
            description="Runs the `recovery` DR runbooks",
            max_session_duration=4 * 3600,  # long enough for a full restore
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": args.trusted_principal_arns},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                sort_keys=True,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        resolved = pulumi.Output.all(
            bucket_arn=args.bucket_arn,
            bucket_key_arn=args.bucket_key_arn,
            global_cluster_id=args.global_cluster_id,
            cluster_arn=args.cluster_arn,
            cache_group_arn=args.cache_group_arn,
            secret_arns=pulumi.Output.all(*args.secret_arns),
            health_check_ids=pulumi.Output.all(*args.health_check_ids),
        )
        documents = resolved.apply(lambda v: job_policies(v, args))
        for job in ("backup", "restore", "failover", "rotate", "contain"):
            aws.iam.RolePolicy(
                f"{name}-{job}",
                name=job,
                role=self.role.id,
                policy=documents.apply(lambda d, j=job: d[j]),  # type: ignore[misc]
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"role_arn": self.role.arn})
