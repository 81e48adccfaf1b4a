"""The site's ElastiCache Redis replication group.

Each site gets its own group instead of an ElastiCache global datastore: the cache holds no
durable data (its RPO is N/A in the plan), so replicating it across regions buys nothing a
cold cache in the DR region does not, and it would tie the DR site's cache to the primary's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from secrets_store import generated_password, managed_secret
from stack_config import Cache, Network

PORT = 6379


@dataclass
class RedisCacheArgs:
    cache: Cache
    network: Network
    stack: str


class RedisCache(pulumi.ComponentResource):
    group: aws.elasticache.ReplicationGroup
    secret: aws.secretsmanager.Secret

    def __init__(self, name: str, args: RedisCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:RedisCache", name, None, opts)
        c, net = args.cache, args.network
        child = pulumi.ResourceOptions(parent=self)

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"ElastiCache {c.replication_group_id} at rest",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            name=f"{c.replication_group_id}-subnets",
            subnet_ids=net.subnet_ids,
            description=f"Existing subnets for {c.replication_group_id}",
            opts=child,
        )
        token = generated_password(f"{name}-auth-token", self, length=64)
        self.group = aws.elasticache.ReplicationGroup(
            f"{name}-group",
            replication_group_id=c.replication_group_id,
            description="XAI blockchain cache",
            engine="redis",
            engine_version=c.engine_version,
            node_type=c.node_type,
            num_cache_clusters=c.node_count,
            port=PORT,
            subnet_group_name=subnets.name,
            security_group_ids=net.cache_security_group_ids,
            preferred_cache_cluster_azs=[net.availability_zones[i % len(net.availability_zones)] for i in range(c.node_count)],
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            at_rest_encryption_enabled=True,
            kms_key_id=self.key.arn,
            transit_encryption_enabled=True,
            auth_token=token.result,
            auth_token_update_strategy="ROTATE",
            snapshot_retention_limit=c.snapshot_retention_days,
            snapshot_window="04:00-05:00",
            auto_minor_version_upgrade=True,
            apply_immediately=False,
            # Rotated by `recovery rotate cache` (ROTATE, then SET); do not roll it back.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["authToken", "authTokenUpdateStrategy"]),
        )
        self.secret = managed_secret(
            f"{name}-auth-secret",
            secret_name=f"xai-dr/{args.stack}/cache-auth",
            description=f"Auth token of {c.replication_group_id} (rotated by `recovery rotate cache`)",
            kms_key_id=None,
            value=token.result,
            parent=self,
        )
        self.register_outputs({"group_id": self.group.id})
