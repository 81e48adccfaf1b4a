"""Assemble one site (primary or DR) from the components and return its flat outputs.

The output names are the contract with `recovery/stack.py`, documented in the README and
the README ("Stack outputs"), and checked by tests/test_contract.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

import pulumi
import pulumi_aws as aws

from aurora import AuroraArgs, AuroraSite
from aurora_backup import AuroraBackupArgs, AuroraBackupPlan, key_policy_for_copies, primary_peer_vault_arn
from backup_vault import BackupVault, BackupVaultArgs
from dns_failover import DnsFailover, DnsFailoverArgs
from notifications import DrEvents, NotificationsArgs
from recovery_access import PeerAccess, RecoveryAccess, RecoveryAccessArgs, peer_failback_policy
from redis_cache import PORT as CACHE_PORT
from redis_cache import RedisCache, RedisCacheArgs
from replication import CrossRegionReplication, ReplicationArgs, replication_role
from replication_alarms import ReplicationAlarms, ReplicationAlarmsArgs, topic_statement
from secrets_store import generated_password, managed_secret
from stack_config import StackConfig

Outputs = dict[str, Any]


def replica_secret_arn(primary_secret_arn: str, region: str) -> str:
    """A Secrets Manager replica keeps the primary's ARN with the replica's region."""
    return re.sub(r"^(arn:aws[\w-]*:secretsmanager:)[a-z0-9-]+(:)", rf"\g<1>{region}\g<2>", primary_secret_arn)


def build(cfg: StackConfig) -> Outputs:
    if cfg.is_primary:
        return _primary(cfg)
    return _dr(cfg)


def _common_outputs(cfg: StackConfig) -> Outputs:
    return {
        "role": cfg.role,
        "production": cfg.production,
        "region": cfg.region,
        "peer_stack": cfg.peer_stack.rsplit("/", 1)[-1],
        "backup_retention_days": cfg.backup.retention_days,
        "offsite_retention_days": cfg.backup.offsite_retention_days,
        "backup_interval_minutes": dict(cfg.backup.interval_minutes),
        "db_port": cfg.database.port,
        "db_name": cfg.database.database_name,
        "db_username": cfg.database.master_username,
        "cache_port": CACHE_PORT,
        "dns_zone_id": cfg.dns.zone_id,
        "dns_record_name": cfg.dns.record_name,
        "node_api_url": f"https://{cfg.dns.node_api_fqdn}",
        "node_api_fqdn": cfg.dns.node_api_fqdn,
        "vpc_id": cfg.network.vpc_id,
        "trail_name": cfg.recovery.trail_name,
        # Who may assume the job roles: the breach check treats long-term keys of anyone else as suspect.
        "trusted_principal_arns": list(cfg.recovery.trusted_principal_arns),
        "objectives": {k: asdict(v) for k, v in cfg.objectives.items()},
    }


def _app_secrets(cfg: StackConfig, vault: BackupVault) -> list[pulumi.Output[str]]:
    arns = []
    for i, secret_name in enumerate(cfg.recovery.app_secret_names):
        value = generated_password(f"app-secret-{i + 1}-value", vault)
        arns.append(
            managed_secret(
                f"app-secret-{i + 1}",
                secret_name=secret_name,
                description="Application secret (rotated by `recovery rotate app`)",
                kms_key_id=None,
                value=value.result,
                parent=vault,
            ).arn
        )
    return arns


def endpoint_parameter(cfg: StackConfig, global_cluster_id: pulumi.Input[str],
                       writer: pulumi.Input[dict[str, Any]]) -> aws.ssm.Parameter:
    """Where clients find the writer: `recovery failover` rewrites it in the new writer's region.

    Each site keeps its own copy, so a client in the DR region reads it with the primary region gone.
    The value is the program's only at creation; later failovers own it.
    """
    return aws.ssm.Parameter(
        "endpoints",
        name=pulumi.Output.from_input(global_cluster_id).apply(lambda g: f"/xai-dr/{g}/endpoints"),
        type="String",
        description="The database and cache endpoints of the writing site (rewritten by `recovery failover`)",
        value=pulumi.Output.from_input(writer).apply(lambda d: json.dumps(d, sort_keys=True)),
        opts=pulumi.ResourceOptions(ignore_changes=["value"]),
    )


def writer_doc(stack: pulumi.Input[str], db: pulumi.Input[str], port: pulumi.Input[int], cache_id: pulumi.Input[str],
               cache_host: pulumi.Input[str], cache_port: pulumi.Input[int]) -> pulumi.Output[dict[str, Any]]:
    """The endpoint document `recovery failover` writes (recovery/runbooks/failover.py)."""
    return pulumi.Output.all(stack, db, port, cache_id, cache_host, cache_port).apply(lambda v: {
        "site": v[0], "db_host": v[1], "db_port": int(v[2]), "cache_replication_group_id": v[3],
        "cache_host": v[4], "cache_port": int(v[5])})


def _site(cfg: StackConfig, vault: BackupVault, db: AuroraSite, db_secret_arn: pulumi.Input[str],
          db_secret_everywhere: list[pulumi.Input[str]], peer: PeerAccess | None = None, writer: pulumi.Input[dict[str, Any]] | None = None,
          revocable_role_arns: list[pulumi.Input[str]] | None = None,
          traffic_control: pulumi.Input[dict[str, Any]] | None = None) -> Outputs:
    """Cache, DNS, app secrets, the endpoint parameter and recovery access: the same in both roles.

    The primary declares the traffic flag (`dns.traffic`); a DR site passes the primary's `traffic_control`."""
    cache = RedisCache("cache", RedisCacheArgs(cache=cfg.cache, network=cfg.network, stack=cfg.stack))
    dns = DnsFailover("dns", DnsFailoverArgs(dns=cfg.dns, role=cfg.role, stack=cfg.stack,
                                             global_cluster_id=cfg.database.global_cluster_id))
    traffic = dns.traffic.output() if dns.traffic is not None else traffic_control
    assert traffic is not None, "a DR site follows the primary's traffic control"
    app_secret_arns = _app_secrets(cfg, vault)
    endpoints = endpoint_parameter(cfg, db.global_cluster_id, writer if writer is not None else writer_doc(
        cfg.stack, db.cluster.endpoint, cfg.database.port, cache.group.replication_group_id,
        cache.group.primary_endpoint_address, CACHE_PORT))
    events = DrEvents("events", NotificationsArgs(notifications=cfg.notifications, stack=cfg.stack))
    access = RecoveryAccess(
        "recovery",
        RecoveryAccessArgs(
            stack=cfg.stack,
            region=cfg.region,
            trusted_principal_arns=cfg.recovery.trusted_principal_arns,
            bucket_arn=vault.bucket.arn,
            bucket_key_arn=vault.key.arn,
            global_cluster_id=db.global_cluster_id,
            cluster_arn=db.cluster.arn,
            cache_group_arn=cache.group.arn,
            db_secret_arn=db_secret_arn,
            db_secret_everywhere=db_secret_everywhere,
            secret_arns=[db_secret_arn, cache.secret.arn, *app_secret_arns],
            zone_id=cfg.dns.zone_id,
            health_check_id=dns.health_check.id,
            traffic_control=traffic,
            endpoint_parameter_arn=endpoints.arn,
            vpc_id=cfg.network.vpc_id,
            trail_name=cfg.recovery.trail_name,
            revocable_role_arns=revocable_role_arns or [],
            peer=peer,
            cache_secret_arn=cache.secret.arn,
            events_topic_arn=events.topic.arn,
            events_key_arn=events.key.arn,
            webhook_secret_arns=[s.arn for s in events.webhook_secrets.values()],
        ),
    )
    # issue 16: the replication lag alarm, notifying this topic
    account = db.cluster.arn.apply(lambda arn: str(arn).split(":")[4])
    ReplicationAlarms("replication-alarms", ReplicationAlarmsArgs(
        stack=cfg.stack, region=cfg.region, cluster_identifier=db.cluster.cluster_identifier,
        rpo_minutes=cfg.objectives["postgresql"].rpo_minutes, events_topic_arn=events.topic.arn,
        events_key_id=events.key.key_id, account=account))
    events.allow_publishers({job: role.arn for job, role in access.roles.items()},
                            pulumi.Output.all(events.topic.arn, account).apply(
                                lambda v: topic_statement(v[0], cfg.region, v[1], cfg.stack)))
    return {
        **_common_outputs(cfg),
        "backup_bucket_name": vault.bucket.bucket,
        "backup_bucket_arn": vault.bucket.arn,
        "backup_kms_key_arn": vault.key.arn,
        "global_cluster_id": db.global_cluster_id,
        "db_cluster_id": db.cluster.cluster_identifier,
        "db_cluster_arn": db.cluster.arn,
        "db_endpoint": db.cluster.endpoint,
        "db_reader_endpoint": db.cluster.reader_endpoint,
        "db_secret_arn": db_secret_arn,
        "db_instance_ids": [i.identifier for i in db.instances],
        "cache_replication_group_id": cache.group.replication_group_id,
        "cache_endpoint": cache.group.primary_endpoint_address,
        "cache_secret_arn": cache.secret.arn,
        "cache_settings": cache.settings,  # issue 15: `recovery cache recreate`
        "app_secret_arns": app_secret_arns,
        "health_check_id": dns.health_check.id,
        "traffic_control": traffic,
        "endpoint_parameter_name": endpoints.name,
        "recovery_role_arns": {job: role.arn for job, role in access.roles.items()},
        "notifications": events.output(cfg.notifications),
    }


def _primary(cfg: StackConfig) -> Outputs:
    vault = BackupVault("backups", BackupVaultArgs(backup=cfg.backup))
    db = AuroraSite("database", AuroraArgs(database=cfg.database, network=cfg.network, stack=cfg.stack,
                                           key_policy=key_policy_for_copies(cfg.aurora_backup)))
    assert db.secret is not None
    everywhere: list[pulumi.Input[str]] = [db.secret.arn]
    replica = cfg.database.secret_replica_region
    if replica:  # the DR site's copy of the credential: a failback may read it there
        everywhere.append(db.secret.arn.apply(lambda arn: replica_secret_arn(arn, replica)))
    return {**_site(cfg, vault, db, db.secret.arn, everywhere),
            **_recovery_points(cfg, db, primary_peer_vault_arn(cfg.aurora_backup))}


def _recovery_points(cfg: StackConfig, db: AuroraSite, peer_vault_arn: pulumi.Input[str]) -> Outputs:
    """Issue 16: the AWS Backup plan of the site's cluster, its copies and the locked backup-account vault."""
    plan = AuroraBackupPlan("aurora-backup", AuroraBackupArgs(config=cfg.aurora_backup, stack=cfg.stack, region=cfg.region,
                                                                cluster_arn=db.cluster.arn, peer_vault_arn=peer_vault_arn))
    return plan.outputs(cfg.aurora_backup)


def _dr(cfg: StackConfig) -> Outputs:
    primary = pulumi.StackReference("primary", stack_name=cfg.peer_stack)

    def from_primary(name: str) -> pulumi.Output[str]:
        return primary.require_output(name).apply(str)

    def primary_role(job: str) -> pulumi.Output[str]:
        return primary.require_output("recovery_role_arns").apply(lambda arns: str(arns[job]).rsplit("/", 1)[-1])

    role = replication_role("replication-role")
    vault = BackupVault("backups", BackupVaultArgs(backup=cfg.backup, replication_writer_arns=[role.arn]))
    CrossRegionReplication(
        "replication",
        ReplicationArgs(
            source_bucket_name=from_primary("backup_bucket_name"),
            source_bucket_arn=from_primary("backup_bucket_arn"),
            source_key_arn=from_primary("backup_kms_key_arn"),
            source_region=from_primary("region"),
            destination_bucket_arn=vault.bucket.arn,
            destination_key_arn=vault.key.arn,
            destination_region=cfg.region,
            role=role,
        ),
        # Replication requires versioning on the destination first.
        opts=pulumi.ResourceOptions(depends_on=[vault.versioning]),
    )
    db = AuroraSite(
        "database",
        AuroraArgs(database=cfg.database, network=cfg.network, stack=cfg.stack,
                   join_global_cluster_id=from_primary("global_cluster_id"),
                   key_policy=key_policy_for_copies(cfg.aurora_backup)),
    )
    db_secret_arn = from_primary("db_secret_arn").apply(lambda arn: replica_secret_arn(arn, cfg.region))
    peer = PeerAccess(bucket_arn=from_primary("backup_bucket_arn"), health_check_id=from_primary("health_check_id"))
    # Until the first failover the primary writes: the DR site's parameter says so from the start.
    writer = writer_doc(cfg.peer_stack.rsplit("/", 1)[-1], from_primary("db_endpoint"), primary.require_output("db_port"),
                        from_primary("cache_replication_group_id"), from_primary("cache_endpoint"),
                        primary.require_output("cache_port"))
    outputs = _site(cfg, vault, db, db_secret_arn, [db_secret_arn, from_primary("db_secret_arn")], peer=peer, writer=writer,
                    revocable_role_arns=[role.arn], traffic_control=primary.require_output("traffic_control"))
    # A failback runs as the primary's failover role, takes the one failover lock (it lives here) and
    # reads this site's health check. The primary stack cannot name them (it never depends on its DR
    # site), so this stack grants them. (The primary's verify needs nothing here: S3 reports each
    # object's ReplicationStatus on the source.)
    aws.iam.RolePolicy(
        "recovery-peer-failback",
        name=f"failback-via-{cfg.stack}",
        role=primary_role("failover"),
        policy=pulumi.Output.all(vault.bucket.arn, outputs["health_check_id"]).apply(
            lambda v: peer_failback_policy(v[0], v[1])),
    )
    outputs["replication_source_bucket_name"] = from_primary("backup_bucket_name")
    outputs["replication_role_arn"] = role.arn
    return {**outputs, **_recovery_points(cfg, db, from_primary("backup_vault_arn"))}


def export(outputs: Outputs) -> None:
    for name, value in outputs.items():
        pulumi.export(name, value)



