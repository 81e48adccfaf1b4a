"""The site's ElastiCache Redis replication group.

Each site gets its own group instead of an ElastiCache global datastore: the cache holds no
durable data (its RPO is N/A in the plan), so replicating it across regions buys nothing a
cold cache in the DR region does not, and it would tie the DR site's cache to the primary's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        self.settings = _declared_settings(self.group)
        self.register_outputs({"group_id": self.group.id})


def _declared_settings(g: aws.elasticache.ReplicationGroup) -> pulumi.Output[dict[str, Any]]:
    """The group as this program declares it, for `recovery cache recreate` after the whole group is
    lost: it recreates from these (CreateReplicationGroup's names), never from a copy of its own. No
    auth token: the recreate takes the current one from the cache secret."""
    fields = {
        "ReplicationGroupId": g.replication_group_id, "ReplicationGroupDescription": g.description,
        "Engine": g.engine, "EngineVersion": g.engine_version, "CacheNodeType": g.node_type,
        "NumCacheClusters": g.num_cache_clusters, "Port": g.port, "CacheSubnetGroupName": g.subnet_group_name,
        "SecurityGroupIds": g.security_group_ids, "PreferredCacheClusterAZs": g.preferred_cache_cluster_azs,
        "AutomaticFailoverEnabled": g.automatic_failover_enabled, "MultiAZEnabled": g.multi_az_enabled,
        "AtRestEncryptionEnabled": g.at_rest_encryption_enabled, "KmsKeyId": g.kms_key_id,
        "TransitEncryptionEnabled": g.transit_encryption_enabled,
        "SnapshotRetentionLimit": g.snapshot_retention_limit, "SnapshotWindow": g.snapshot_window,
        "AutoMinorVersionUpgrade": g.auto_minor_version_upgrade,
    }
    names = list(fields)
    return pulumi.Output.all(*fields.values()).apply(
        lambda vals: {n: v for n, v in zip(names, vals) if v is not None})
