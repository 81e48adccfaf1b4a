"""The IAM roles the `recovery` tool runs as: one role per job, each holding only what that job's
runbooks call, on exactly this site's resources (and the peer site's where a runbook crosses over).

A command assumes its job's role (recovery/aws.py); no session ever holds the union of the jobs.
Every action below is called by a runbook, and tests/test_job_permissions.py fails when one is not
(or when a runbook calls something no statement grants). The few actions that no request of ours
names but AWS checks on our behalf (KMS behind SSE-KMS) are listed there with that reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from traffic_control import NAMESPACE as TRAFFIC_NAMESPACE
from traffic_control import alarm_arn

# The jobs that publish DR events (infra/notifications.py explains which runbooks run as each).
PUBLISHING_JOBS = ("backup", "failover", "rotate", "contain")

JOBS = ("backup", "restore", "failover", "rotate", "contain")

# Runbook journals are written under runs/<runbook>/ of the target stack's bucket (recovery/runbook.py);
# each job writes only its own. A failover runs against the DR stack (and restores the chain there),
# a failback against the primary.
JOURNALS = {
    "restore": ("restore-*",),  # restore-db, -chain, -pitr, -snapshot, restore-cache-failover|recreate
    "failover-primary": ("failback", "partition-rejoin"),
    "failover-dr": ("failover", "restore-chain", "partition-rejoin"),
    "rotate": ("rotate-*",),  # rotate-db, -cache, -app, -all
    "contain": ("contain", "contain-terminate"),
}


@dataclass
class PeerAccess:
    """What a DR site's jobs may touch in the primary site (read from the primary's outputs)."""

    bucket_arn: pulumi.Input[str]
    health_check_id: pulumi.Input[str]


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
    db_secret_arn: pulumi.Input[str]
    # The DB secret wherever it lives: its home region and its replica (failover reads the one it can
    # reach and writes through the home region while that is up).
    db_secret_everywhere: list[pulumi.Input[str]]
    secret_arns: list[pulumi.Input[str]]
    zone_id: str
    health_check_id: pulumi.Input[str]
    # The primary's `traffic_control` output (infra/traffic_control.py): the flag alarm and its checks.
    traffic_control: pulumi.Input[dict[str, Any]]
    endpoint_parameter_arn: pulumi.Input[str]
    vpc_id: str
    trail_name: str
    # Roles (besides this stack's job roles) whose sessions containment may revoke.
    revocable_role_arns: list[pulumi.Input[str]] = field(default_factory=list)
    peer: PeerAccess | None = None
    # issue 15: `cache failover|recreate` verify with (and recreate with) the cache's current auth token
    cache_secret_arn: pulumi.Input[str] | None = None
    # The site's DR-events topic, its key and the webhook secrets (infra/notifications.py).
    events_topic_arn: pulumi.Input[str] = ""
    events_key_arn: pulumi.Input[str] = ""
    webhook_secret_arns: list[pulumi.Input[str]] = field(default_factory=list)


def statement(sid: str, actions: list[str], resources: Any, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        s["Condition"] = condition
    return s


def account_of(arn: str) -> str:
    return arn.split(":")[4]


def role_name(stack: str, job: str) -> str:
    return f"xai-recovery-{stack}-{job}"


def role_arn(account: str, stack: str, job: str) -> str:
    return f"arn:aws:iam::{account}:role/{role_name(stack, job)}"


def _repoint_clients(v: dict[str, Any], dr: bool, secrets: Any = None) -> list[dict[str, Any]]:
    """Where clients find the database (recovery/adapters/endpoints.py): the DB secret (written through its
    primary region) and this site's endpoints parameter; the failover's and the restore cutover's.
    ``secrets``: the DB secret's ARNs it may use (default: every region's)."""
    return [
        statement("RepointClients", ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                                     "secretsmanager:PutSecretValue"], secrets or v["db_secret_arns"]),
        statement("EndpointParameter", ["ssm:GetParameter", "ssm:PutParameter"], v["endpoint_parameter_arn"]),
    ] + ([
        # With the primary region gone the DB secret's replica here is promoted to write it; the
        # replica only, never the primary's secret.
        statement("PromoteSecretReplica", ["secretsmanager:StopReplicationToReplica"], v["db_secret_arn"]),
    ] if dr else [])


def _journals(bucket: str, job: str) -> list[dict[str, Any]]:
    keys = [f"{bucket}/runs/{rb}/*" for rb in JOURNALS[job]]
    return [statement("WriteJournals", ["s3:PutObject"], keys),
            # The engine reads a journal back only to resume an interrupted run.
            statement("ResumeJournals", ["s3:GetObject"], keys)]


def _vault_key(key: str, region: str) -> dict[str, Any]:
    # S3 calls KMS on the caller's behalf for SSE-KMS objects: the caller needs the key, but only via S3.
    return statement("UseVaultKeyThroughS3", ["kms:Decrypt", "kms:GenerateDataKey"], key,
                     {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}})


def _cache_arn(group_arn: str, kind: str) -> str:
    """arn:...:replicationgroup:ID as the ARN of another ElastiCache kind named after the group (its member
    clusters ID-001..., its subnet group ID-subnets, infra/redis_cache.py)."""
    return group_arn.replace(":replicationgroup:", f":{kind}:")


def job_policies(v: dict[str, Any], a: RecoveryAccessArgs) -> dict[str, str]:
    """Policy documents per job, from resolved ARNs. Pure, so tests can read it as JSON."""
    bucket, key, region = v["bucket_arn"], v["bucket_key_arn"], a.region
    account = account_of(v["cluster_arn"])
    global_arn = f"arn:aws:rds::{account}:global-cluster:{v['global_cluster_id']}"
    here = f"arn:aws:rds:{region}:{account}"
    dr = a.peer is not None
    list_vault = ["s3:ListBucket"]
    tc = v["traffic_control"]
    docs: dict[str, list[dict[str, Any]]] = {
        # The scheduled hosts: backups, their verification, off-site copies, status and metrics.
        "backup": [
            # ListBucketMultipartUploads: a backup sweeps the uploads a killed run left open.
            statement("ListVault", list_vault + ["s3:GetBucketVersioning", "s3:GetEncryptionConfiguration",
                                                 "s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration",
                                                 "s3:ListBucketMultipartUploads"],
                      bucket),
            statement("ReadVault", ["s3:GetObject"], f"{bucket}/*"),
            # The monthly restore tests (`drill db|chain`) read the backup version they verified.
            statement("ReadBackupVersions", ["s3:GetObjectVersion"], f"{bucket}/backups/*"),
            statement("WriteBackups", ["s3:PutObject", "s3:AbortMultipartUpload"],
                      [f"{bucket}/backups/*", f"{bucket}/locks/backup-*", f"{bucket}/verifications/*",
                       f"{bucket}/drills/*"]),
            # Only its own locks are ever deleted by the tool; backups expire through lifecycle.
            statement("ReleaseLocks", ["s3:DeleteObject"], f"{bucket}/locks/backup-*"),
            _vault_key(key, region),
            statement("ReadDatabaseSecret", ["secretsmanager:GetSecretValue"], v["db_secret_arn"]),
            statement("SiteStatus", ["elasticache:DescribeReplicationGroups"], v["cache_group_arn"]),
            # Route 53 health checks are global resources: this site's check and the traffic checks.
            statement("HealthStatus", ["route53:GetHealthCheckStatus"],
                      f"arn:aws:route53:::healthcheck/{v['health_check_id']}"),
            # issue 16: `status` and `metrics` read the global database's replication lag (the secondary's
            # AuroraGlobalDBRPOLag; CloudWatch metric reads have no resource-level permissions: AWS requires
            # "*") and this site's cluster's LatestRestorableTime.
            statement("ReplicationLag", ["cloudwatch:GetMetricStatistics"], "*"),
            statement("RestorableTime", ["rds:DescribeDBClusters"], v["cluster_arn"]),
        ] + ([
            # A DR site's verification checks that the primary bucket replicates into this one.
            statement("PrimaryReplication", ["s3:GetReplicationConfiguration"], v["peer_bucket_arn"]),
        ] if v["peer_bucket_arn"] else []),
        "restore": [
            statement("ListVault", list_vault, bucket),
            # A restore reads the backup version it verified (GetObject with a VersionId).
            statement("ReadBackups", ["s3:GetObject", "s3:GetObjectVersion"], [f"{bucket}/backups/*"]),
            *_journals(bucket, "restore"),
            # --archive-current uploads the replaced data once (it looks first: a resumed run does not repeat it).
            statement("ArchiveReplaced", ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                      f"{bucket}/quarantine/*"),
            # `quarantine prune` deletes the archives --archive-current made (their exact name is checked
            # by the tool; this is the shape's bound): a delete marker in the versioned vault.
            statement("PruneQuarantine", ["s3:DeleteObject"], f"{bucket}/quarantine/chain/corrupted-blockchain-*"),
            _vault_key(key, region),
            # `restore db` reads the DB secret's password; `restore pitr|snapshot --cutover` (issue 16) moves
            # the clients to the new cluster as a failover moves them to the other site: the DB secret's
            # host/port and the endpoints parameter. A DR site's secret is a replica, written through the
            # primary's region; the primary site's is its own.
            *_repoint_clients(v, dr, None if dr else [v["db_secret_arn"]]),
            # A point-in-time restore creates a new cluster (any name: the operator picks it) from this
            # site's cluster, and its first instance; it never modifies the source.
            statement("PointInTimeRestore", ["rds:RestoreDBClusterToPointInTime", "rds:CreateDBInstance",
                                             "rds:AddTagsToResource"],
                      [f"{here}:cluster:*", f"{here}:db:*", f"{here}:subgrp:*", v["cluster_arn"]]),
            statement("DescribeDatabases", ["rds:DescribeDBClusters", "rds:DescribeDBInstances"],
                      [f"{here}:cluster:*", f"{here}:db:*"]),
            # `restore snapshot` (issue 16): lists this site's cluster's snapshots (AWS Backup's recovery
            # points among them) and restores one of this account and region into a new cluster; its first
            # instance and the tags are granted above.
            statement("ListClusterSnapshots", ["rds:DescribeDBClusterSnapshots"], v["cluster_arn"]),
            statement("SnapshotRestore", ["rds:RestoreDBClusterFromSnapshot"],
                      [f"{here}:cluster:*", f"{here}:cluster-snapshot:*", f"{here}:subgrp:*"]),
            # `cache failover|recreate` (issue 15): this site's group only, its members and its subnet group;
            # the current auth token to verify with and to recreate the group with.
            statement("CacheRecovery", ["elasticache:DescribeReplicationGroups", "elasticache:TestFailover",
                                        "elasticache:DeleteReplicationGroup"], v["cache_group_arn"]),
            statement("CacheRecreate", ["elasticache:CreateReplicationGroup"],
                      [v["cache_group_arn"], f"{_cache_arn(v['cache_group_arn'], 'cluster')}-*",
                       _cache_arn(v["cache_group_arn"], "subnetgroup") + "-subnets"]),
        ] + ([
            statement("CacheToken", ["secretsmanager:GetSecretValue"], v["cache_secret_arn"]),
        ] if v.get("cache_secret_arn") else []),
        "failover": [
            statement("ListVault", list_vault, bucket),
            # A DR site restores the chain from the replicated backups (the version it verified).
            statement("ReadBackups", ["s3:GetObject", "s3:GetObjectVersion"] if dr else ["s3:GetObject"],
                      [f"{bucket}/backups/*"]),
            *_journals(bucket, "failover-dr" if dr else "failover-primary"),
        ] + ([
            # The one lock of both directions lives in the DR vault (the DR stack grants the primary's
            # failover role the same lock, see peer_failback_policy).
            statement("FailoverLock", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                      f"{bucket}/locks/failover.lock"),
        ] if dr else []) + [
            _vault_key(key, region),
            statement("GlobalClusterFailover", ["rds:FailoverGlobalCluster", "rds:SwitchoverGlobalCluster"],
                      [global_arn, v["cluster_arn"]]),
            statement("DescribeDatabases", ["rds:DescribeDBClusters"], v["cluster_arn"]),
            # DescribeGlobalClusters supports resource-level permissions on the global cluster.
            statement("DescribeGlobalCluster", ["rds:DescribeGlobalClusters"], global_arn),
            # CloudWatch metric reads have no resource-level permissions: AWS requires "*".
            statement("ReadLag", ["cloudwatch:GetMetricStatistics"], "*"),
            # `recovery sites` reads the sites' endpoint checks. Reads only, and never on the recovery path:
            # Route 53's API is a control plane in us-east-1; traffic moves by the flag (DNS says where it went).
            statement("HealthChecks", ["route53:GetHealthCheckStatus"],
                      [f"arn:aws:route53:::healthcheck/{h}" for h in v["health_check_ids"]]),
            # Traffic moves by the flag in the traffic-control region. PutMetricData has no resource-level
            # permissions: AWS requires "*", so the namespace condition is the bound.
            statement("TrafficFlag", ["cloudwatch:PutMetricData"], "*",
                      {"StringEquals": {"cloudwatch:namespace": TRAFFIC_NAMESPACE}}),
            statement("TrafficFlagAlarm", ["cloudwatch:SetAlarmState", "cloudwatch:DescribeAlarms"],
                      alarm_arn(tc["region"], account, tc["alarm_name"])),
            *_repoint_clients(v, dr),
        ] + ([] if dr else [
            # ... and a failback replicates the primary's secret over that copy again
            statement("RejoinSecretReplica", ["secretsmanager:ReplicateSecretToRegions"], v["db_secret_arn"]),
        ]),
        "rotate": [
            *_journals(bucket, "rotate"),
            statement("ListJournals", list_vault, bucket),
            _vault_key(key, region),
            statement("RotateSecrets", ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                                        "secretsmanager:UpdateSecretVersionStage", "secretsmanager:ListSecretVersionIds"],
                      list(v["secret_arns"])),
            statement("SetDatabasePassword", ["rds:ModifyDBCluster"], v["cluster_arn"]),
            statement("SetCacheToken", ["elasticache:ModifyReplicationGroup"], v["cache_group_arn"]),
        ],
        "contain": [
            statement("IncidentRecords", ["s3:GetObject", "s3:PutObject"], [f"{bucket}/incidents/*"]),
            *_journals(bucket, "contain"),
            statement("ListRecords", list_vault, bucket),
            _vault_key(key, region),
            # The quarantine group is created in, and interfaces moved only within, the site's VPC.
            statement("QuarantineGroup", ["ec2:CreateSecurityGroup"],
                      [f"arn:aws:ec2:{region}:{account}:vpc/{a.vpc_id}",
                       f"arn:aws:ec2:{region}:{account}:security-group/*"]),
            statement("Isolate", ["ec2:RevokeSecurityGroupEgress", "ec2:ModifyNetworkInterfaceAttribute"],
                      [f"arn:aws:ec2:{region}:{account}:security-group/*",
                       f"arn:aws:ec2:{region}:{account}:network-interface/*"],
                      {"StringEquals": {"ec2:Vpc": f"arn:aws:ec2:{region}:{account}:vpc/{a.vpc_id}"}}),
            # Tags given at creation (TagSpecifications) need CreateTags, only as part of those calls.
            statement("TagOnCreate", ["ec2:CreateTags"],
                      [f"arn:aws:ec2:{region}:{account}:security-group/*", f"arn:aws:ec2:{region}::image/*",
                       f"arn:aws:ec2:{region}::snapshot/*"],
                      {"StringEquals": {"ec2:CreateAction": ["CreateSecurityGroup", "CreateImage", "CreateSnapshot"]}}),
            statement("Evidence", ["ec2:CreateImage", "ec2:CreateSnapshot"],
                      [f"arn:aws:ec2:{region}:{account}:instance/*", f"arn:aws:ec2:{region}::image/*",
                       f"arn:aws:ec2:{region}::snapshot/*", f"arn:aws:ec2:{region}:{account}:volume/*"]),
            # The image is tagged again after creation (not every region applies TagSpecifications to images).
            statement("TagEvidence", ["ec2:CreateTags"], f"arn:aws:ec2:{region}::image/*"),
            # EC2 Describe* calls have no resource-level permissions: AWS requires "*".
            statement("DescribeInstances", ["ec2:DescribeInstances", "ec2:DescribeImages", "ec2:DescribeSnapshots",
                                            "ec2:DescribeSecurityGroups", "ec2:DescribeNetworkInterfaces"], "*"),
            # An instance has no ec2:Vpc condition key: the site's region and account are the bound here,
            # and the runbook refuses an instance outside the stack's VPC before it gets this far.
            statement("Terminate", ["ec2:TerminateInstances"], f"arn:aws:ec2:{region}:{account}:instance/*"),
            # IAM users are not tied to a stack: any user of the account may be the compromised one.
            statement("RevokeUserKeys", ["iam:GetUser", "iam:ListAccessKeys", "iam:UpdateAccessKey",
                                         "iam:DeleteAccessKey"], f"arn:aws:iam::{account}:user/*"),
            # Session revocation writes a deny-only inline policy on this stack's other roles; never on the
            # contain role itself, so containment cannot grant itself more.
            statement("RevokeRoleSessions", ["iam:PutRolePolicy", "iam:ListRolePolicies"],
                      [role_arn(account, a.stack, j) for j in JOBS if j != "contain"] + list(v["revocable_role_arns"])),
            statement("ForensicTrail", ["cloudtrail:StartLogging", "cloudtrail:GetTrailStatus"],
                      f"arn:aws:cloudtrail:{region}:{account}:trail/{a.trail_name}"),
            # LookupEvents has no resource-level permissions: AWS requires "*".
            statement("ReadTrail", ["cloudtrail:LookupEvents"], "*"),
        ],
    }
    for job in PUBLISHING_JOBS:
        docs[job] += events_statements(v, region)
    return {job: json.dumps({"Version": "2012-10-17", "Statement": s}, sort_keys=True) for job, s in docs.items()}


def events_statements(v: dict[str, Any], region: str) -> list[dict[str, Any]]:
    """What a publishing job needs to tell someone (recovery/notify.py): publish to the site's topic (SNS
    uses the topic's key on the caller's behalf) and read the webhook secrets."""
    out = [statement("PublishEvents", ["sns:Publish"], v["events_topic_arn"]),
           statement("UseEventsKeyThroughSns", ["kms:Decrypt", "kms:GenerateDataKey"], v["events_key_arn"],
                     {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}})]
    if v["webhook_secret_arns"]:
        out.append(statement("ReadWebhooks", ["secretsmanager:GetSecretValue"], list(v["webhook_secret_arns"])))
    return out


def trust_policy(principal_arns: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal_arns}, "Action": "sts:AssumeRole"}]}, sort_keys=True)


class RecoveryAccess(pulumi.ComponentResource):
    roles: dict[str, aws.iam.Role]

    def __init__(self, name: str, args: RecoveryAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:RecoveryAccess", name, None, opts)
        peer = args.peer
        resolved = pulumi.Output.all(
            bucket_arn=args.bucket_arn,
            bucket_key_arn=args.bucket_key_arn,
            global_cluster_id=args.global_cluster_id,
            cluster_arn=args.cluster_arn,
            cache_group_arn=args.cache_group_arn,
            db_secret_arn=args.db_secret_arn,
            db_secret_arns=pulumi.Output.all(*args.db_secret_everywhere),
            secret_arns=pulumi.Output.all(*args.secret_arns),
            health_check_id=args.health_check_id,
            traffic_control=args.traffic_control,
            # A DR site's failover reads the primary's endpoint check (is the primary really down?).
            health_check_ids=pulumi.Output.all(args.health_check_id, *([peer.health_check_id] if peer else [])),
            endpoint_parameter_arn=args.endpoint_parameter_arn,
            revocable_role_arns=pulumi.Output.all(*args.revocable_role_arns),
            peer_bucket_arn=peer.bucket_arn if peer else "",
            cache_secret_arn=args.cache_secret_arn or "",
            events_topic_arn=args.events_topic_arn,
            events_key_arn=args.events_key_arn,
            webhook_secret_arns=pulumi.Output.all(*args.webhook_secret_arns),
        )
        documents = resolved.apply(lambda v: job_policies(v, args))
        self.roles = {}
        for job in JOBS:
            role = aws.iam.Role(
                f"{name}-{job}-role",
                name=role_name(args.stack, job),
                description=f"Runs the `recovery` {job} runbooks of {args.stack}",
                max_session_duration=4 * 3600,  # long enough for a full restore
                assume_role_policy=trust_policy(args.trusted_principal_arns),
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.iam.RolePolicy(
                f"{name}-{job}",
                name=job,
                role=role.id,
                policy=documents.apply(lambda d, j=job: d[j]),  # type: ignore[misc]
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.roles[job] = role
        self.register_outputs({"role_arns": {j: r.arn for j, r in self.roles.items()}})


def peer_failback_policy(dr_bucket_arn: str, dr_health_check_id: str) -> str:
    """What the primary's failover role needs of the DR site for a failback: the one failover lock
    (it lives in the DR bucket, see recovery/runbooks/failover.py) and the DR site's health check."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        statement("FailoverLockInDrSite", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                  f"{dr_bucket_arn}/locks/failover.lock"),
        statement("DrSiteHealth", ["route53:GetHealthCheckStatus"], f"arn:aws:route53:::healthcheck/{dr_health_check_id}"),
    ]}, sort_keys=True)
