"""Cross-region replication of the primary backup bucket into the DR vault.

Owned by the DR stack: the primary site must not depend on its DR site existing, while the
DR site already depends on the primary (global cluster, StackReference). The configuration
lives on the primary bucket, so it is created through a provider for the primary region.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# The plan's RTC settings: replicate within 15 minutes, alert on objects later than that.
REPLICATION_MINUTES = 15


@dataclass
class ReplicationArgs:
    source_bucket_name: pulumi.Input[str]
    source_bucket_arn: pulumi.Input[str]
    source_key_arn: pulumi.Input[str]
    source_region: pulumi.Input[str]
    destination_bucket_arn: pulumi.Input[str]
    destination_key_arn: pulumi.Input[str]
    destination_region: str
    role: aws.iam.Role


def replication_role(name: str, opts: pulumi.ResourceOptions | None = None) -> aws.iam.Role:
    """The role S3 assumes to replicate. Created before the DR vault so its policy can name it."""
    return aws.iam.Role(
        name,
        name=f"xai-s3-replication-{pulumi.get_stack()}",
        description="S3 cross-region replication of XAI backups into the DR vault",
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
        opts=opts,
    )


def replication_policy(
    source_bucket_arn: str,
    source_key_arn: str,
    source_region: str,
    destination_bucket_arn: str,
    destination_key_arn: str,
    destination_region: str,
) -> str:
    """Least privilege for replication: read versions from the source, write replicas, and
    KMS decrypt on the source key / encrypt on the destination key, only via S3."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadSourceConfiguration",
                    "Effect": "Allow",
                    "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                    "Resource": source_bucket_arn,
                },
                {
                    "Sid": "ReadSourceVersions",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionTagging",
                        "s3:GetObjectRetention",
                        "s3:GetObjectLegalHold",
                    ],
                    "Resource": f"{source_bucket_arn}/*",
                },
                {
                    "Sid": "WriteReplicas",
                    "Effect": "Allow",
                    "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                    "Resource": f"{destination_bucket_arn}/*",
                },
                {
                    "Sid": "DecryptSource",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": source_key_arn,
                    "Condition": {"StringLike": {"kms:ViaService": f"s3.{source_region}.amazonaws.com"}},
                },
                {
                    "Sid": "EncryptReplica",
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                    "Resource": destination_key_arn,
                    "Condition": {"StringLike": {"kms:ViaService": f"s3.{destination_region}.amazonaws.com"}},
                },
            ],
        },
        sort_keys=True,
    )


class CrossRegionReplication(pulumi.ComponentResource):
    def __init__(self, name: str, args: ReplicationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:CrossRegionReplication", name, None, opts)

        self.source_provider = aws.Provider(f"{name}-source-region", region=args.source_region, opts=pulumi.ResourceOptions(parent=self))

        policy = pulumi.Output.all(
            args.source_bucket_arn,
            args.source_key_arn,
            args.source_region,
            args.destination_bucket_arn,
            args.destination_key_arn,
        ).apply(lambda v: replication_policy(v[0], v[1], v[2], v[3], v[4], args.destination_region))
        self.role_policy = aws.iam.RolePolicy(
            f"{name}-policy", role=args.role.id, policy=policy, opts=pulumi.ResourceOptions(parent=self)
        )

        self.configuration = aws.s3.BucketReplicationConfig(
            f"{name}-config",
            bucket=args.source_bucket_name,
            role=args.role.arn,
            rules=[
                {
                    "id": "backups-to-dr",
                    "status": "Enabled",
                    "priority": 1,
                    # Backups only: locks, journals and records describe the site that wrote them. A
                    # replicated lock would outlive its release (delete markers do not replicate) and
                    # refuse the DR site's own backups after a failover.
                    "filter": {"prefix": "backups/"},
                    "delete_marker_replication": {"status": "Disabled"},
                    "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"}},
                    "destination": {
                        "bucket": args.destination_bucket_arn,
                        "storage_class": "STANDARD",
                        "encryption_configuration": {"replica_kms_key_id": args.destination_key_arn},
                        "replication_time": {"status": "Enabled", "time": {"minutes": REPLICATION_MINUTES}},
                        "metrics": {"status": "Enabled", "event_threshold": {"minutes": REPLICATION_MINUTES}},
                    },
                }
            ],
            # The role's permissions must exist before S3 validates the configuration.
            opts=pulumi.ResourceOptions(parent=self, provider=self.source_provider, depends_on=[self.role_policy]),
        )
        self.register_outputs({})
