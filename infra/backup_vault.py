"""One site's backup vault: a KMS key and a locked-down, versioned S3 bucket.

Every backup object lands here. The bucket refuses plaintext transport and any upload not
encrypted under this vault's own key, so a misconfigured client fails loudly instead of
writing an unencrypted backup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from stack_config import Backup


@dataclass
class BackupVaultArgs:
    backup: Backup
    # Principals (e.g. the S3 replication role) whose writes carry the source object's
    # encryption rather than this vault's key headers; exempt them from the key-header
    # denies. They are still bound by the TLS deny.
    replication_writer_arns: list[pulumi.Input[str]] = field(default_factory=list)


class BackupVault(pulumi.ComponentResource):
    key: aws.kms.Key
    bucket: aws.s3.Bucket
    versioning: aws.s3.BucketVersioning

    def __init__(self, name: str, args: BackupVaultArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:BackupVault", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.backup

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Backups in s3://{cfg.bucket_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        self.alias = aws.kms.Alias(f"{name}-alias", name=f"alias/{cfg.bucket_name}", target_key_id=self.key.key_id, opts=child)

        # Object Lock can only be switched on when the bucket is created.
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=cfg.bucket_name,
            object_lock_enabled=cfg.object_lock is not None,
            force_destroy=False,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        bucket_id = self.bucket.id

        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket_id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        self.public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket_id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket_id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    # One data key per bucket instead of per object: fewer KMS calls on
                    # multipart uploads of large dumps.
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket_id,
            rules=[
                {
                    "id": "backup-retention",
                    "status": "Enabled",
                    "filter": {},
                    "expiration": {"days": cfg.retention_days},
                    "noncurrent_version_expiration": {"noncurrent_days": cfg.noncurrent_version_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            # Versioning must exist before noncurrent-version rules are accepted.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
        )
        if cfg.object_lock is not None:
            self.object_lock = aws.s3.BucketObjectLockConfiguration(
                f"{name}-object-lock",
                bucket=bucket_id,
                rule={"default_retention": {"mode": cfg.object_lock.mode, "days": cfg.object_lock.days}},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
            )

        policy = pulumi.Output.all(
            bucket_arn=self.bucket.arn,
            key_arn=self.key.arn,
            exempt=pulumi.Output.all(*args.replication_writer_arns),
        ).apply(lambda v: vault_policy(v["bucket_arn"], v["key_arn"], list(v["exempt"])))
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket_id,
            policy=policy,
            # A policy write races the public-access block on a new bucket.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access]),
        )

        self.register_outputs({"bucket": self.bucket.bucket, "key_arn": self.key.arn})


def vault_policy(bucket_arn: str, key_arn: str, exempt_principal_arns: list[str]) -> str:
    """Deny non-TLS access, and uploads that are not SSE-KMS under this vault's key."""
    objects = f"{bucket_arn}/*"
    exempt = {"ArnNotEquals": {"aws:PrincipalArn": exempt_principal_arns}} if exempt_principal_arns else {}

    def put_deny(sid: str, condition: dict[str, dict[str, object]]) -> dict[str, object]:
        return {
            "Sid": sid,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {**condition, **exempt},
        }

    statements: list[dict[str, object]] = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        put_deny("DenyUploadsWithoutKms", {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
        put_deny(
            "DenyUploadsUnderOtherKeys",
            {"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}},
        ),
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)
