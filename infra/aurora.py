"""The Aurora PostgreSQL global database: the primary site creates the global cluster and a
writer cluster; the DR site adds a secondary regional cluster that replicates from it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from secrets_store import generated_password, managed_secret
from stack_config import Database, Network

ENGINE = aws.rds.EngineType.AURORA_POSTGRESQL
# AWS Backup's continuous rule (infra/aurora_backup.py) takes over the cluster's automated-backup
# retention (up to 35 days); reverting it to backupRetentionDays on every `up` would fight the plan.
BACKUP_MANAGED = ["backupRetentionPeriod"]


@dataclass
class AuroraArgs:
    database: Database
    network: Network
    stack: str
    # DR only: the global cluster to join, read from the primary stack.
    join_global_cluster_id: pulumi.Input[str] | None = None
    # The storage key's policy (None: AWS's default, the account's root). Its snapshots are encrypted
    # under it, so the AWS Backup plan shares it with the backup account (infra/aurora_backup.py).
    key_policy: pulumi.Input[str] | None = None


class AuroraSite(pulumi.ComponentResource):
    global_cluster_id: pulumi.Output[str]
    cluster: aws.rds.Cluster
    instances: list[aws.rds.ClusterInstance]
    secret: aws.secretsmanager.Secret | None

    def __init__(self, name: str, args: AuroraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:AuroraSite", name, None, opts)
        db, net = args.database, args.network
        primary = args.join_global_cluster_id is None
        child = pulumi.ResourceOptions(parent=self)

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Aurora storage of {db.cluster_id}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=args.key_policy,
            opts=child,
        )
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name=f"{db.cluster_id}-subnets",
            subnet_ids=net.subnet_ids,
            description=f"Existing subnets for {db.cluster_id}",
            opts=child,
        )

        self.secret = None
        password = None
        if primary:
            assert db.global_cluster_id, "validated by stack_config"
            glob = aws.rds.GlobalCluster(
                f"{name}-global",
                global_cluster_identifier=db.global_cluster_id,
                engine=ENGINE,
                engine_version=db.engine_version,
                database_name=db.database_name,
                storage_encrypted=True,
                deletion_protection=True,
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            self.global_cluster_id = glob.id
            # A global cluster cannot use an RDS-managed master password, so we generate one
            # and keep it in Secrets Manager, where `recovery rotate` takes over.
            password = generated_password(f"{name}-master-password", self)
            # The password is rotated by `recovery rotate db`: do not roll it back on the next
            # `up`. After a failover this cluster is a secondary, with a source AWS sets.
            ignore = ["masterPassword", "replicationSourceIdentifier", *BACKUP_MANAGED]
        else:
            self.global_cluster_id = pulumi.Output.from_input(args.join_global_cluster_id).apply(str)
            # AWS sets the replication source on a secondary; it changes after a failover.
            ignore = ["replicationSourceIdentifier", *BACKUP_MANAGED]

        # One call for both roles, so the type checker sees every argument. A secondary
        # inherits database name and master user from the global cluster: they stay None.
        self.cluster = aws.rds.Cluster(
            f"{name}-cluster",
            cluster_identifier=db.cluster_id,
            global_cluster_identifier=self.global_cluster_id,
            database_name=db.database_name if primary else None,
            master_username=db.master_username if primary else None,
            master_password=password.result if password else None,
            engine=ENGINE,
            engine_version=db.engine_version,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=net.database_security_group_ids,
            port=db.port,
            storage_encrypted=True,
            kms_key_id=self.key.arn,
            deletion_protection=True,
            backup_retention_period=db.backup_retention_days,
            preferred_backup_window="03:00-04:00",
            copy_tags_to_snapshot=True,
            iam_database_authentication_enabled=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{db.cluster_id}-final",
            apply_immediately=False,
            opts=pulumi.ResourceOptions(parent=self, protect=True, ignore_changes=ignore),
        )
        if password is not None:
            self.secret = managed_secret(
                f"{name}-master-secret",
                secret_name=f"xai-dr/{args.stack}/db-master",
                description=f"Master credentials of {db.cluster_id} (rotated by `recovery rotate db`)",
                kms_key_id=None,
                value=pulumi.Output.all(password.result, self.cluster.endpoint).apply(
                    lambda v: {
                        "engine": "postgres",
                        "username": db.master_username,
                        "password": v[0],
                        "host": v[1],
                        "port": db.port,
                        "dbname": db.database_name,
                    }
                ),
                parent=self,
                replica_region=db.secret_replica_region,
            )

        self.instances = [
            aws.rds.ClusterInstance(
                f"{name}-instance-{i + 1}",
                identifier=f"{db.cluster_id}-{i + 1}",
                cluster_identifier=self.cluster.id,
                instance_class=db.instance_class,
                engine=ENGINE,
                engine_version=db.engine_version,
                db_subnet_group_name=subnets.name,
                # Spread instances over the AZs so one AZ loss leaves a writer candidate.
                availability_zone=net.availability_zones[i % len(net.availability_zones)],
                auto_minor_version_upgrade=True,
                publicly_accessible=False,
                performance_insights_enabled=True,
                performance_insights_kms_key_id=self.key.arn,
                promotion_tier=i,
                opts=child,
            )
            for i in range(db.instance_count)
        ]
        self.register_outputs({"cluster_id": self.cluster.id})
