"""Provision the local sandbox in the emulator: both sites, shaped like the real stacks.

`provision(endpoint, site_services)` creates in moto what `infra/` creates in AWS for the
`local` (primary, us-east-1) and `local-dr` (DR, us-west-2) stacks, and returns each stack's
outputs with exactly the contract's names (see the README's "Stack outputs"). Where a real
stack's output names an AWS endpoint, the sandbox's names the local service that stands in for
it (the PostgreSQL cluster, the simulated node), so every runbook runs unchanged.

Two outputs exist only here and are ignored by the contract: `node_data_dir` (the simulated
node's data directory, the default for `--data-dir`) and `services_config` (the service
control file that stops and starts the local node instead of systemd units).

The bucket policy's deny-non-TLS statement is not applied: moto ignores policy conditions, so
it would lock every call out (ENVIRONMENT.md). The policy tests cover it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

ACCOUNT = "123456789012"
PRIMARY_REGION = "us-east-1"
DR_REGION = "us-west-2"
ZONE_NAME = "xai.local"
RECORD_NAME = f"api.{ZONE_NAME}"
GLOBAL_CLUSTER = "xai-local-global"
OBJECTIVES = {
    "node": {"rto_minutes": 30, "rpo_minutes": 5},
    "postgresql": {"rto_minutes": 15, "rpo_minutes": 1},
    "redis": {"rto_minutes": 10, "rpo_minutes": None},
    "explorer": {"rto_minutes": 30, "rpo_minutes": 60},
    "monitoring": {"rto_minutes": 60, "rpo_minutes": None},
}
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class SiteServices:
    """The real local services standing in for one site's AWS endpoints."""

    stack: str
    role: str  # primary | dr
    region: str
    db_host: str
    db_port: int
    db_user: str
    db_password: str
    db_name: str
    node_url: str
    node_data_dir: str
    services_config: str


def _client(endpoint: str, service: str, region: str) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=endpoint, **DUMMY_CREDENTIALS)


def create_vault(endpoint: str, region: str, bucket: str, retention_days: int = 30) -> dict[str, str]:
    """A backup vault as infra/backup_vault.py builds it (minus the bucket policy, see above)."""
    kms = _client(endpoint, "kms", region)
    key = kms.create_key(Description=f"Backups in s3://{bucket}")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    kms.create_alias(AliasName=f"alias/{bucket}", TargetKeyId=key["KeyId"])
    s3 = _client(endpoint, "s3", region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]},
        "BucketKeyEnabled": True}]})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "backup-retention", "Status": "Enabled", "Filter": {},
        "Expiration": {"Days": retention_days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": retention_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    return {"bucket": bucket, "bucket_arn": f"arn:aws:s3:::{bucket}", "key_arn": key["Arn"]}


def create_secret(endpoint: str, region: str, name: str, value: Any, replica_region: str | None = None) -> str:
    sm = _client(endpoint, "secretsmanager", region)
    kwargs: dict[str, Any] = {}
    if replica_region:
        kwargs["AddReplicaRegions"] = [{"Region": replica_region}]
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return str(sm.create_secret(Name=name, SecretString=text, **kwargs)["ARN"])


def _role(endpoint: str, name: str, service: str | None = None) -> str:
    iam = _client(endpoint, "iam", PRIMARY_REGION)
    principal = {"Service": service} if service else {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]}
    return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(doc))["Role"]["Arn"])


def _network(endpoint: str, region: str) -> str:
    ec2 = _client(endpoint, "ec2", region)
    return str(ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"])


def _trail(endpoint: str, region: str, name: str, bucket: str) -> str:
    ct = _client(endpoint, "cloudtrail", region)
    ct.create_trail(Name=name, S3BucketName=bucket)
    ct.start_logging(Name=name)
    return name


def _cluster(endpoint: str, region: str, cluster_id: str, site: SiteServices, primary: bool) -> dict[str, Any]:
    rds = _client(endpoint, "rds", region)
    kwargs: dict[str, Any] = {}
    if primary:
        rds.create_global_cluster(GlobalClusterIdentifier=GLOBAL_CLUSTER, Engine="aurora-postgresql",
                                  EngineVersion="15.4", StorageEncrypted=True, DeletionProtection=False)
        kwargs = {"MasterUsername": site.db_user, "MasterUserPassword": site.db_password, "DatabaseName": site.db_name}
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=cluster_id, Engine="aurora-postgresql", EngineVersion="15.4",
        GlobalClusterIdentifier=GLOBAL_CLUSTER, StorageEncrypted=True, BackupRetentionPeriod=7,
        CopyTagsToSnapshot=True, EnableIAMDatabaseAuthentication=True,
        EnableCloudwatchLogsExports=["postgresql"], **kwargs,
    )["DBCluster"]
    instances = []
    for i, az in enumerate(("a", "b")):
        ident = f"{cluster_id}-{i + 1}"
        rds.create_db_instance(DBInstanceIdentifier=ident, DBClusterIdentifier=cluster_id,
                               Engine="aurora-postgresql", DBInstanceClass="db.r6g.large",
                               AvailabilityZone=f"{region}{az}", AutoMinorVersionUpgrade=True)
        instances.append(ident)
    return {"arn": cluster["DBClusterArn"], "instances": instances}


def _cache(endpoint: str, region: str, group_id: str, token: str) -> dict[str, Any]:
    ec = _client(endpoint, "elasticache", region)
    group = ec.create_replication_group(
        ReplicationGroupId=group_id, ReplicationGroupDescription="XAI blockchain cache", Engine="redis",
        CacheNodeType="cache.t3.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True, MultiAZEnabled=True,
        AtRestEncryptionEnabled=True, TransitEncryptionEnabled=True, AuthToken=token, SnapshotRetentionLimit=1,
    )["ReplicationGroup"]
    endpoint_addr = group.get("NodeGroups", [{}])[0].get("PrimaryEndpoint", {}).get("Address", f"{group_id}.local")
    return {"endpoint": endpoint_addr}


def _health_check(endpoint: str, name: str, node_url: str) -> str:
    from urllib.parse import urlparse

    u = urlparse(node_url)
    r53 = _client(endpoint, "route53", PRIMARY_REGION)
    hc = r53.create_health_check(CallerReference=f"{name}-hc", HealthCheckConfig={
        "Type": "HTTP", "IPAddress": u.hostname, "Port": u.port or 80, "ResourcePath": "/api/v1/blockchain/info",
        "RequestInterval": 10, "FailureThreshold": 3})["HealthCheck"]
    return str(hc["Id"])


def _failover_record(endpoint: str, zone_id: str, site: SiteServices, health_check_id: str) -> None:
    from urllib.parse import urlparse

    failover = "PRIMARY" if site.role == "primary" else "SECONDARY"
    r53 = _client(endpoint, "route53", PRIMARY_REGION)
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": RECORD_NAME, "Type": "A", "TTL": 60, "SetIdentifier": f"{site.stack}-{failover.lower()}",
            "Failover": failover, "HealthCheckId": health_check_id,
            "ResourceRecords": [{"Value": urlparse(site.node_url).hostname or "127.0.0.1"}],
        }}]})


def provision(endpoint: str, primary: SiteServices, dr: SiteServices) -> dict[str, dict[str, Any]]:
    """Create both sites in the emulator at `endpoint`; return {stack: outputs}."""
    r53 = _client(endpoint, "route53", PRIMARY_REGION)
    zone_id = r53.create_hosted_zone(Name=ZONE_NAME, CallerReference="xai-local")["HostedZone"]["Id"].split("/")[-1]
    db_secret = {"engine": "postgres", "username": primary.db_user, "password": primary.db_password,
                 "host": primary.db_host, "port": primary.db_port, "dbname": primary.db_name}
    db_secret_arn = create_secret(endpoint, PRIMARY_REGION, f"xai-dr/{primary.stack}/db-master", db_secret,
                            replica_region=DR_REGION)
    outputs: dict[str, dict[str, Any]] = {}
    vaults: dict[str, dict[str, str]] = {}
    for site in (primary, dr):
        is_primary = site.role == "primary"
        bucket = "xai-backups-local" if is_primary else f"xai-backups-local-dr-{site.region}"
        vault = vaults[site.stack] = create_vault(endpoint, site.region, bucket)
        cluster_id = f"xai-local-db-{'primary' if is_primary else 'dr'}"
        cluster = _cluster(endpoint, site.region, cluster_id, site, is_primary)
        group_id = f"xai-local-redis{'' if is_primary else '-dr'}"
        import secrets as _secrets

        token = _secrets.token_urlsafe(32)
        cache = _cache(endpoint, site.region, group_id, token)
        cache_secret_arn = create_secret(endpoint, site.region, f"xai-dr/{site.stack}/cache-auth", token)
        app_secret_arns = [
            create_secret(endpoint, site.region, f"xai/{site.stack}/{name}", _secrets.token_urlsafe(32))
            for name in ("node-api-key", "explorer-session-key")
        ]
        hc_id = _health_check(endpoint, site.stack, site.node_url)
        _failover_record(endpoint, zone_id, site, hc_id)
        vpc_id = _network(endpoint, site.region)
        trail = _trail(endpoint, site.region, f"xai-{site.stack}-trail", bucket)
        outputs[site.stack] = {
            "role": site.role,
            "region": site.region,
            "peer_stack": dr.stack if is_primary else primary.stack,
            "backup_bucket_name": vault["bucket"],
            "backup_bucket_arn": vault["bucket_arn"],
            "backup_kms_key_arn": vault["key_arn"],
            "backup_retention_days": 30,
            "offsite_retention_days": 90,
            "backup_interval_minutes": {"database": 60, "chain": 360},
            "global_cluster_id": GLOBAL_CLUSTER,
            "db_cluster_id": cluster_id,
            "db_cluster_arn": cluster["arn"],
            "db_endpoint": site.db_host,
            "db_reader_endpoint": site.db_host,
            "db_port": site.db_port,
            "db_name": site.db_name,
            "db_username": site.db_user,
            "db_secret_arn": db_secret_arn if is_primary else db_secret_arn.replace(f":{PRIMARY_REGION}:", f":{DR_REGION}:"),
            "db_instance_ids": cluster["instances"],
            "cache_replication_group_id": group_id,
            "cache_endpoint": cache["endpoint"],
            "cache_port": 6379,
            "cache_secret_arn": cache_secret_arn,
            "app_secret_arns": app_secret_arns,
            "dns_zone_id": zone_id,
            "dns_record_name": RECORD_NAME,
            "health_check_id": hc_id,
            "node_api_url": site.node_url,
            "vpc_id": vpc_id,
            "trail_name": trail,
            "recovery_role_arn": _role(endpoint, f"xai-recovery-{site.stack}"),
            "objectives": OBJECTIVES,
            # local-only: defaults for --data-dir and service control (see the module docstring)
            "node_data_dir": site.node_data_dir,
            "services_config": site.services_config,
        }
    # The DR site owns replication of the primary vault into its own (as infra/replication.py).
    role_arn = _role(endpoint, f"xai-s3-replication-{dr.stack}", service="s3.amazonaws.com")
    _client(endpoint, "s3", PRIMARY_REGION).put_bucket_replication(
        Bucket=vaults[primary.stack]["bucket"],
        ReplicationConfiguration={"Role": role_arn, "Rules": [{
            "ID": "backups-to-dr", "Status": "Enabled", "Priority": 1, "Filter": {},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
            "Destination": {
                "Bucket": vaults[dr.stack]["bucket_arn"],
                "EncryptionConfiguration": {"ReplicaKmsKeyID": vaults[dr.stack]["key_arn"]},
                "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}},
                "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}},
            },
        }]},
    )
    outputs[dr.stack]["replication_source_bucket_name"] = vaults[primary.stack]["bucket"]
    outputs[dr.stack]["replication_role_arn"] = role_arn
    return outputs
