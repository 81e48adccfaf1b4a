"""The Pulumi program, run under mocks for both stacks: assertions on what it registers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra_runs import STACKS, offline, run

ROOT = Path(__file__).resolve().parent.parent
PLAN_OBJECTIVES = {
    "node": {"rto_minutes": 30, "rpo_minutes": 5},
    "postgresql": {"rto_minutes": 15, "rpo_minutes": 1},
    "redis": {"rto_minutes": 10, "rpo_minutes": None},
    "explorer": {"rto_minutes": 30, "rpo_minutes": 60},
    "monitoring": {"rto_minutes": 60, "rpo_minutes": None},
}
BUCKETS = {"production": "xai-backups-production", "production-dr": "xai-backups-dr-us-west-2"}
REGIONS = {"production": "us-east-1", "production-dr": "us-west-2"}


def children_of_bucket(stack: str, type_: str) -> dict[str, Any]:
    bucket = BUCKETS[stack]
    found = [r for r in run(stack).of_type(type_) if r.inputs.get("bucket") == bucket]
    assert len(found) == 1, f"{stack}: expected one {type_} on {bucket}, found {len(found)}"
    return found[0].inputs


def key_arn_of(stack: str, name: str) -> str:
    return str(run(stack).one("aws:kms/key:Key", name).outputs["arn"])


@pytest.mark.parametrize("stack", STACKS)
class TestBackupVault:
    def test_bucket_is_named_from_config_in_its_region(self, stack: str) -> None:
        bucket = run(stack).one("aws:s3/bucket:Bucket")
        assert bucket.inputs["bucket"] == BUCKETS[stack]
        assert bucket.region == REGIONS[stack]
        assert bucket.protect, "the backup bucket must be protected from `pulumi destroy`"
        assert run(stack).outputs["backup_bucket_name"] == BUCKETS[stack]

    def test_kms_key_rotates_and_has_alias(self, stack: str) -> None:
        for key in run(stack).of_type("aws:kms/key:Key"):
            assert key.inputs["enableKeyRotation"] is True, key.name
        alias = run(stack).one("aws:kms/alias:Alias")
        assert alias.inputs["name"] == f"alias/{BUCKETS[stack]}"
        assert run(stack).outputs["backup_kms_key_arn"] == key_arn_of(stack, "backups-key")

    def test_versioning_enabled(self, stack: str) -> None:
        v = children_of_bucket(stack, "aws:s3/bucketVersioning:BucketVersioning")
        assert v["versioningConfiguration"]["status"] == "Enabled"

    def test_default_sse_kms_with_bucket_key_under_the_vault_key(self, stack: str) -> None:
        enc = children_of_bucket(stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        (rule,) = enc["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {
            "sseAlgorithm": "aws:kms",
            "kmsMasterKeyId": key_arn_of(stack, "backups-key"),
        }
        assert rule["bucketKeyEnabled"] is True

    def test_lifecycle_expires_current_noncurrent_and_aborts_multipart(self, stack: str) -> None:
        (rule,) = children_of_bucket(stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"]
        assert rule["status"] == "Enabled"
        assert rule["expiration"]["days"] == 30
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 30
        assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1

    def test_all_four_public_access_blocks(self, stack: str) -> None:
        pab = children_of_bucket(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            assert pab[flag] is True, flag

    def test_object_ownership_enforced(self, stack: str) -> None:
        own = children_of_bucket(stack, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        assert own["rule"]["objectOwnership"] == "BucketOwnerEnforced"

    def test_policy_denies_plaintext_and_foreign_or_missing_kms(self, stack: str) -> None:
        policy = json.loads(children_of_bucket(stack, "aws:s3/bucketPolicy:BucketPolicy")["policy"])
        by_sid = {s["Sid"]: s for s in policy["Statement"]}
        assert all(s["Effect"] == "Deny" for s in by_sid.values())
        tls = by_sid["DenyInsecureTransport"]
        assert tls["Action"] == "s3:*" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert by_sid["DenyUploadsWithoutKms"]["Condition"]["StringNotEquals"] == {"s3:x-amz-server-side-encryption": "aws:kms"}
        other = by_sid["DenyUploadsUnderOtherKeys"]["Condition"]["StringNotEquals"]
        assert other == {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn_of(stack, "backups-key")}

    def test_object_lock_from_config(self, stack: str) -> None:
        assert run(stack).one("aws:s3/bucket:Bucket").inputs["objectLockEnabled"] is True
        lock = children_of_bucket(stack, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
        assert lock["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": 7}


def test_object_lock_is_optional() -> None:
    config = offline.stack_config("production")
    backup = dict(config["xai-dr:backup"])
    del backup["objectLock"]
    r = offline.run_stack("production", {**config, "xai-dr:backup": backup})
    assert r.one("aws:s3/bucket:Bucket").inputs.get("objectLockEnabled") is False
    assert r.of_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration") == []


class TestReplication:
    def test_only_the_dr_stack_owns_replication(self) -> None:
        assert run("production").of_type("aws:s3/bucketReplicationConfig:BucketReplicationConfig") == []
        run("production-dr").one("aws:s3/bucketReplicationConfig:BucketReplicationConfig")

    def test_replicates_primary_bucket_into_dr_with_rtc_and_kms(self) -> None:
        cfg = run("production-dr").one("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
        assert cfg.region == "us-east-1", "configured through a provider for the primary region"
        assert cfg.inputs["bucket"] == BUCKETS["production"]
        role = run("production-dr").one("aws:iam/role:Role", "replication-role")
        assert cfg.inputs["role"] == role.outputs["arn"]
        (rule,) = cfg.inputs["rules"]
        assert rule["status"] == "Enabled"
        assert rule["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}
        dest = rule["destination"]
        assert dest["bucket"] == f"arn:aws:s3:::{BUCKETS['production-dr']}"
        assert dest["encryptionConfiguration"]["replicaKmsKeyId"] == key_arn_of("production-dr", "backups-key")
        assert dest["replicationTime"] == {"status": "Enabled", "time": {"minutes": 15}}
        assert rule["filter"] == {"prefix": "backups/"}, "only backups replicate; locks and journals are per site"
        assert dest["metrics"] == {"status": "Enabled", "eventThreshold": {"minutes": 15}}

    def test_replication_role_is_least_privilege(self) -> None:
        dr = run("production-dr")
        role = dr.one("aws:iam/role:Role", "replication-role")
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "s3.amazonaws.com"}
        policy = json.loads(dr.one("aws:iam/rolePolicy:RolePolicy", "replication-policy").inputs["policy"])
        by_sid = {s["Sid"]: s for s in policy["Statement"]}
        assert by_sid["DecryptSource"]["Action"] == "kms:Decrypt"
        assert by_sid["DecryptSource"]["Resource"] == run("production").outputs["backup_kms_key_arn"]
        assert set(by_sid["EncryptReplica"]["Action"]) == {"kms:Encrypt", "kms:GenerateDataKey"}
        assert by_sid["EncryptReplica"]["Resource"] == key_arn_of("production-dr", "backups-key")
        for s in policy["Statement"]:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            assert not any(a.endswith("*") for a in actions), s
            assert s["Resource"] != "*", s

    def test_dr_vault_lets_replication_write_replicas(self) -> None:
        dr = run("production-dr")
        policy = json.loads(children_of_bucket("production-dr", "aws:s3/bucketPolicy:BucketPolicy")["policy"])
        role_arn = dr.one("aws:iam/role:Role", "replication-role").outputs["arn"]
        kms_denies = [s for s in policy["Statement"] if s["Action"] == "s3:PutObject"]
        assert kms_denies and all(s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [role_arn] for s in kms_denies)


class TestDatabase:
    def test_primary_creates_global_cluster_and_joins_it(self) -> None:
        p = run("production")
        glob = p.one("aws:rds/globalCluster:GlobalCluster")
        assert glob.inputs["engine"] == "aurora-postgresql"
        assert glob.inputs["storageEncrypted"] is True and glob.inputs["deletionProtection"] is True
        cluster = p.one("aws:rds/cluster:Cluster")
        assert cluster.inputs["globalClusterIdentifier"] == glob.inputs["globalClusterIdentifier"]
        assert cluster.inputs["masterUsername"] == "xaiadmin"
        assert cluster.inputs["databaseName"] == "xai_blockchain"
        assert "masterPassword" in cluster.ignore_changes, "a rotation must not show as drift"

    def test_dr_adds_secondary_from_the_primary_stack(self) -> None:
        dr = run("production-dr")
        assert dr.of_type("aws:rds/globalCluster:GlobalCluster") == []
        cluster = dr.one("aws:rds/cluster:Cluster")
        assert cluster.inputs["globalClusterIdentifier"] == run("production").outputs["global_cluster_id"]
        for absent in ("databaseName", "masterUsername", "masterPassword"):
            assert absent not in cluster.inputs, absent
        # AWS Backup's continuous rule manages the retention (infra/aurora_backup.py).
        assert cluster.ignore_changes == ["backupRetentionPeriod", "replicationSourceIdentifier"]
        assert dr.outputs["global_cluster_id"] == run("production").outputs["global_cluster_id"]

    @pytest.mark.parametrize("stack", STACKS)
    def test_cluster_properties(self, stack: str) -> None:
        c = run(stack).one("aws:rds/cluster:Cluster").inputs
        assert c["engine"] == "aurora-postgresql"
        assert c["storageEncrypted"] is True
        assert c["kmsKeyId"] == key_arn_of(stack, "database-key")
        assert c["deletionProtection"] is True
        assert c["backupRetentionPeriod"] >= 7
        assert c["copyTagsToSnapshot"] is True
        assert c["iamDatabaseAuthenticationEnabled"] is True
        assert c["enabledCloudwatchLogsExports"] == ["postgresql"]
        assert run(stack).one("aws:rds/cluster:Cluster").protect

    @pytest.mark.parametrize("stack", STACKS)
    def test_at_least_two_instances_in_distinct_azs(self, stack: str) -> None:
        cluster = run(stack).one("aws:rds/cluster:Cluster").inputs["clusterIdentifier"]
        instances = [i.inputs for i in run(stack).of_type("aws:rds/clusterInstance:ClusterInstance")]
        assert len(instances) >= 2
        assert all(i["clusterIdentifier"] == cluster for i in instances)
        assert len({i["availabilityZone"] for i in instances}) == len(instances)
        assert all(i["autoMinorVersionUpgrade"] is True and i["publiclyAccessible"] is False for i in instances)

    def test_master_password_kept_in_a_secret_replicated_to_dr(self) -> None:
        p = run("production")
        secret = next(s for s in p.of_type("aws:secretsmanager/secret:Secret") if s.name == "database-master-secret")
        assert p.outputs["db_secret_arn"] == secret.outputs["arn"]
        assert secret.inputs["replicas"] == [{"region": "us-west-2"}]
        version = p.one("aws:secretsmanager/secretVersion:SecretVersion", "database-master-secret-initial")
        value = json.loads(version.inputs["secretString"])
        password = p.one("random:index/randomPassword:RandomPassword", "database-master-password")
        assert value["password"] == password.outputs["result"] == p.one("aws:rds/cluster:Cluster").inputs["masterPassword"]
        assert value["username"] == "xaiadmin"
        assert version.ignore_changes == ["secretString"]
        assert not set(password.inputs["overrideSpecial"]) & set("/'\"@ "), "RDS forbids these"
        dr_arn = run("production-dr").outputs["db_secret_arn"]
        assert dr_arn == p.outputs["db_secret_arn"].replace(":us-east-1:", ":us-west-2:")


@pytest.mark.parametrize("stack", STACKS)
def test_cache(stack: str) -> None:
    g = run(stack).one("aws:elasticache/replicationGroup:ReplicationGroup")
    i = g.inputs
    assert i["engine"] == "redis"
    assert i["multiAzEnabled"] is True and i["automaticFailoverEnabled"] is True
    assert i["numCacheClusters"] >= 2
    assert i["atRestEncryptionEnabled"] is True and i["kmsKeyId"] == key_arn_of(stack, "cache-key")
    assert i["transitEncryptionEnabled"] is True
    assert i["snapshotRetentionLimit"] >= 1
    assert i["autoMinorVersionUpgrade"] is True
    assert "authToken" in g.ignore_changes
    token = run(stack).one("random:index/randomPassword:RandomPassword", "cache-auth-token").outputs["result"]
    assert i["authToken"] == token
    stored = run(stack).one("aws:secretsmanager/secretVersion:SecretVersion", "cache-auth-secret-initial").inputs
    assert stored["secretString"] == token
    assert run(stack).outputs["cache_replication_group_id"] == i["replicationGroupId"]


def test_each_site_has_its_own_cache_group() -> None:
    ids = {run(s).outputs["cache_replication_group_id"] for s in STACKS}
    assert len(ids) == 2


class TestDns:
    @pytest.mark.parametrize("stack", STACKS)
    def test_health_check_on_node_api(self, stack: str) -> None:
        hc = run(stack).one("aws:route53/healthCheck:HealthCheck", "dns-health")
        assert hc.inputs["type"] == "HTTPS" and hc.inputs["port"] == 443
        assert hc.inputs["requestInterval"] == 10 and hc.inputs["failureThreshold"] == 3
        assert hc.inputs["resourcePath"] == "/api/v1/blockchain/info"
        assert run(stack).outputs["node_api_url"] == f"https://{hc.inputs['fqdn']}"
        assert run(stack).outputs["node_api_fqdn"] == hc.inputs["fqdn"]
        assert run(stack).outputs["health_check_id"] == hc.id
        assert hc.ignore_changes == [], "nothing inverts a health check any more"
        assert not any(h.inputs.get("invertHealthcheck") for h in run(stack).of_type("aws:route53/healthCheck:HealthCheck"))

    def test_failover_pair(self) -> None:
        records = {s: run(s).one("aws:route53/record:Record").inputs for s in STACKS}
        assert records["production"]["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
        assert records["production-dr"]["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
        assert records["production"]["name"] == records["production-dr"]["name"]
        assert records["production"]["zoneId"] == records["production-dr"]["zoneId"] == "Z1234567890ABC"
        for s, rec in records.items():
            assert rec["ttl"] == 60
            assert rec["records"] == [run(s).outputs["node_api_fqdn"]]
        # The PRIMARY follows the calculated check (endpoint AND traffic flag), the SECONDARY its own endpoint.
        assert records["production"]["healthCheckId"] == run("production").outputs["traffic_control"]["record_health_check_id"]
        assert records["production-dr"]["healthCheckId"] == run("production-dr").outputs["health_check_id"]
        assert records["production"]["setIdentifier"] != records["production-dr"]["setIdentifier"]


class TestTrafficControl:
    """The flag in the DR region that moves traffic without Route 53's API (infra/traffic_control.py)."""

    def test_alarm_in_the_traffic_control_region(self) -> None:
        alarm = run("production").one("aws:cloudwatch/metricAlarm:MetricAlarm", "dns-traffic-flag-alarm")
        assert alarm.region == "us-west-2", "declared through the traffic-control region's provider"
        assert alarm.provider and alarm.provider.split("::")[-2] == "traffic-control-region"
        i = alarm.inputs
        assert i["name"] == "xai-blockchain-global-traffic-on-dr"
        assert (i["namespace"], i["metricName"], i["dimensions"]) == ("XaiDR/Traffic", "TrafficOnDr",
                                                                      {"GlobalCluster": "xai-blockchain-global"})
        assert (i["statistic"], i["period"], i["evaluationPeriods"], i["threshold"]) == ("Maximum", 10, 1, 1)
        assert i["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert i["treatMissingData"] == "ignore", "the flag keeps its state with no new data"
        assert i["actionsEnabled"] is False

    def test_flag_and_record_checks(self) -> None:
        p = run("production")
        flag = p.one("aws:route53/healthCheck:HealthCheck", "dns-traffic-flag").inputs
        assert flag["type"] == "CLOUDWATCH_METRIC"
        assert (flag["cloudwatchAlarmName"], flag["cloudwatchAlarmRegion"]) == ("xai-blockchain-global-traffic-on-dr",
                                                                                "us-west-2")
        assert flag["insufficientDataHealthStatus"] == "LastKnownStatus"
        record = p.one("aws:route53/healthCheck:HealthCheck", "dns-traffic-record")
        assert record.inputs["type"] == "CALCULATED" and record.inputs["childHealthThreshold"] == 2
        flag_id = p.one("aws:route53/healthCheck:HealthCheck", "dns-traffic-flag").id
        assert record.inputs["childHealthchecks"] == [p.outputs["health_check_id"], flag_id]

    def test_output_on_both_stacks(self) -> None:
        p = run("production")
        expected = {"mechanism": "cloudwatch-alarm", "region": "us-west-2",
                    "alarm_name": "xai-blockchain-global-traffic-on-dr", "namespace": "XaiDR/Traffic",
                    "metric_name": "TrafficOnDr", "dimensions": {"GlobalCluster": "xai-blockchain-global"},
                    "record_health_check_id": p.one("aws:route53/healthCheck:HealthCheck", "dns-traffic-record").id,
                    "flag_health_check_id": p.one("aws:route53/healthCheck:HealthCheck", "dns-traffic-flag").id}
        assert p.outputs["traffic_control"] == expected
        assert run("production-dr").outputs["traffic_control"] == expected, "the DR stack re-exports the primary's"

    def test_only_the_primary_declares_it(self) -> None:
        dr = run("production-dr")
        # the DR stack's one alarm is its replication lag's (tests/test_replication_alarms.py), not a flag
        assert [a.name for a in dr.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")] == ["replication-alarms-lag"]
        assert [h.inputs["type"] for h in dr.of_type("aws:route53/healthCheck:HealthCheck")] == ["HTTPS"]

    @pytest.mark.parametrize("stack", STACKS)
    def test_failover_role_flips_the_flag_and_never_updates_route53(self, stack: str) -> None:
        r = run(stack)
        docs = {p.name: json.loads(p.inputs["policy"]) for p in r.of_type("aws:iam/rolePolicy:RolePolicy")}
        for name, doc in docs.items():
            for s in doc["Statement"]:
                assert "route53:UpdateHealthCheck" not in s["Action"], name
                assert not any(a.startswith("route53:Change") for a in s["Action"]), name
        by_sid = {s["Sid"]: s for s in docs["recovery-failover"]["Statement"]}
        assert by_sid["TrafficFlag"]["Action"] == ["cloudwatch:PutMetricData"]
        assert by_sid["TrafficFlag"]["Resource"] == "*"
        assert by_sid["TrafficFlag"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "XaiDR/Traffic"}}
        assert by_sid["TrafficFlagAlarm"]["Action"] == ["cloudwatch:DescribeAlarms", "cloudwatch:SetAlarmState"]
        assert by_sid["TrafficFlagAlarm"]["Resource"] == (
            "arn:aws:cloudwatch:us-west-2:123456789012:alarm:xai-blockchain-global-traffic-on-dr")
        # Route 53 reads only (`recovery sites`, `status`), of the sites' endpoint checks; nothing
        # reads the records any more: DNS itself says where traffic goes
        own = f"arn:aws:route53:::healthcheck/{r.outputs['health_check_id']}"
        assert by_sid["HealthChecks"]["Action"] == ["route53:GetHealthCheckStatus"]
        assert own in by_sid["HealthChecks"]["Resource"] and "ReadRecords" not in by_sid
        status = next(s for s in docs["recovery-backup"]["Statement"] if s["Sid"] == "HealthStatus")
        assert status["Action"] == ["route53:GetHealthCheckStatus"] and status["Resource"] == own


@pytest.mark.parametrize("stack", STACKS)
def test_one_role_per_job_each_least_privilege(stack: str) -> None:
    r = run(stack)
    jobs = ("backup", "restore", "failover", "rotate", "contain")
    roles = {x.name: x for x in r.of_type("aws:iam/role:Role") if x.name.startswith("recovery-")}
    assert set(roles) == {f"recovery-{j}-role" for j in jobs}
    for role in roles.values():
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]["AWS"]
        assert trust == ["arn:aws:iam::123456789012:role/xai-oncall"]
    assert r.outputs["recovery_role_arns"] == {j: roles[f"recovery-{j}-role"].outputs["arn"] for j in jobs}
    policies = {p.inputs["name"]: (p.inputs["role"], json.loads(p.inputs["policy"]))
                for p in r.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.startswith("recovery-")
                and not p.name.startswith("recovery-peer-")}
    assert set(policies) == set(jobs)
    bucket_arn = f"arn:aws:s3:::{BUCKETS[stack]}"
    for job, (role_name, doc) in policies.items():
        assert role_name == roles[f"recovery-{job}-role"].inputs["name"], "each job's policy on its own role"
        for s in doc["Statement"]:
            assert s["Effect"] == "Allow"
            assert not any(a == "*" or a.endswith(":*") for a in s["Action"]), (job, s["Action"])
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            if any(a.startswith(("s3:", "kms:", "secretsmanager:", "iam:", "rds:", "route53:")) for a in s["Action"]):
                assert "*" not in resources, (job, s)
            for res in resources:
                if res.startswith("arn:aws:s3:::") and s["Sid"] != "PrimaryReplication":
                    assert res == bucket_arn or res.startswith(bucket_arn + "/"), res
    if stack == "production-dr":  # the one cross-site S3 grant: verify reads the primary's replication rule
        cross = next(s for s in policies["backup"][1]["Statement"] if s["Sid"] == "PrimaryReplication")
        assert (cross["Action"], cross["Resource"]) == (["s3:GetReplicationConfiguration"],
                                                        f"arn:aws:s3:::{BUCKETS['production']}")
    rotate = next(s for s in policies["rotate"][1]["Statement"] if s["Sid"] == "RotateSecrets")["Resource"]
    assert set(rotate) == {r.outputs["db_secret_arn"], r.outputs["cache_secret_arn"], *r.outputs["app_secret_arns"]}
    deletes = [(job, s["Resource"]) for job, (_, doc) in policies.items() for s in doc["Statement"]
               if "s3:DeleteObject" in s["Action"]]
    own_locks = [("backup", f"{bucket_arn}/locks/backup-*"),
                 # `quarantine prune`: the archives `restore chain --archive-current` made, never a backup
                 ("restore", f"{bucket_arn}/quarantine/chain/corrupted-blockchain-*")]
    if stack == "production-dr":  # the one failover lock lives in the DR vault
        own_locks.append(("failover", f"{bucket_arn}/locks/failover.lock"))
    assert deletes == own_locks, ("backups are never deleted by the tool; each job releases only its own lock, "
                                  "and restore prunes only its own quarantined archives")
    revoke = next(s for s in policies["contain"][1]["Statement"] if "iam:PutRolePolicy" in s["Action"])["Resource"]
    assert roles["recovery-contain-role"].outputs["arn"] not in revoke, "containment cannot grant itself more"


def test_the_dr_stack_lets_the_primary_fail_back_through_the_dr_lock() -> None:
    grant = run("production-dr").one("aws:iam/rolePolicy:RolePolicy", "recovery-peer-failback")
    assert grant.inputs["role"] == run("production").outputs["recovery_role_arns"]["failover"].rsplit("/", 1)[-1]
    lock, health = json.loads(grant.inputs["policy"])["Statement"]
    assert lock["Resource"] == f"arn:aws:s3:::{BUCKETS['production-dr']}/locks/failover.lock"
    assert (health["Action"], health["Resource"]) == (
        ["route53:GetHealthCheckStatus"], f"arn:aws:route53:::healthcheck/{run('production-dr').outputs['health_check_id']}")


def test_dr_failover_role_reads_the_primary_health_check() -> None:
    doc = next(json.loads(p.inputs["policy"]) for p in run("production-dr").of_type("aws:iam/rolePolicy:RolePolicy")
               if p.name == "recovery-failover")
    hc = next(s for s in doc["Statement"] if s["Sid"] == "HealthChecks")["Resource"]
    assert f"arn:aws:route53:::healthcheck/{run('production').outputs['health_check_id']}" in hc


@pytest.mark.parametrize("stack", STACKS)
def test_objectives_are_the_plans_table(stack: str) -> None:
    assert run(stack).outputs["objectives"] == PLAN_OBJECTIVES


def documented_outputs() -> tuple[set[str], set[str]]:
    text = (ROOT / "README.md").read_text().split("## Stack outputs", 1)[1].split("\n## ", 1)[0]
    both, dr_only = text.split("### DR role only")
    names = lambda part: set(re.findall(r"^\| `([a-z_]+)` \|", part, re.M))  # noqa: E731
    return names(both), names(dr_only)


def test_outputs_are_exactly_the_documented_ones() -> None:
    both, dr_only = documented_outputs()
    assert set(run("production").outputs) == both
    assert set(run("production-dr").outputs) == both | dr_only
    assert run("production").outputs["role"] == "primary" and run("production-dr").outputs["role"] == "dr"
    assert run("production").outputs["peer_stack"] == "production-dr"
    assert run("production-dr").outputs["peer_stack"] == "production"


def test_no_generated_secret_appears_in_outputs() -> None:
    for stack in STACKS:
        text = json.dumps(run(stack).outputs)
        for pw in run(stack).of_type("random:index/randomPassword:RandomPassword"):
            assert pw.outputs["result"] not in text


def _broken(stack: str, key: str, path: list[str], value: Any) -> dict[str, Any]:
    config = json.loads(json.dumps(offline.stack_config(stack)))
    target = config
    full = f"xai-dr:{key}"
    if not path:
        if value is None:
            del config[full]
        else:
            config[full] = value
        return config
    target = config[full]
    for p in path[:-1]:
        target = target[p]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


@pytest.mark.parametrize(
    "stack,key,path,value,named",
    [
        ("production", "network", [], None, "xai-dr:network is missing"),
        ("production", "role", [], "tertiary", "xai-dr:role is invalid"),
        ("production", "database", ["instanceCount"], 1, "xai-dr:database.instanceCount is invalid"),
        ("production", "database", ["globalClusterId"], None, "xai-dr:database.globalClusterId is missing"),
        ("production", "database", ["masterUsername"], "postgres", "xai-dr:database.masterUsername is invalid"),
        ("production", "database", ["backupRetentionDays"], 3, "xai-dr:database.backupRetentionDays is invalid"),
        ("production", "backup", ["bucketName"], "Bad_Bucket", "xai-dr:backup.bucketName is invalid"),
        ("production", "backup", ["retentionDays"], "thirty", "xai-dr:backup.retentionDays must be an integer"),
        ("production", "network", ["availabilityZones"], ["us-east-1a"], "xai-dr:network.availabilityZones must be a list of at least 2"),
        ("production", "objectives", ["postgresql"], None, "xai-dr:objectives.postgresql is missing"),
        ("production-dr", "dns", ["zoneId"], None, "xai-dr:dns.zoneId is missing"),
        ("production", "dns", ["trafficControlRegion"], None, "xai-dr:dns.trafficControlRegion is missing"),
        ("production-dr", "dns", ["trafficControlRegion"], "west", "xai-dr:dns.trafficControlRegion is invalid"),
        ("production", "dns", ["trafficControlRegion"], "us-east-1",
         "xai-dr:dns.trafficControlRegion is the primary's own region (us-east-1)"),
    ],
)
def test_bad_config_stops_with_the_key_named(stack: str, key: str, path: list[str], value: Any, named: str) -> None:
    config = _broken(stack, key, path, value)
    with pytest.raises(Exception) as err:
        offline.run_stack(stack, config, primary=run("production") if stack == "production-dr" else None)
    message = str(err.value)
    assert named in message, message
    assert f"Pulumi.{stack}.yaml" in message
    assert "\n" not in message


def test_plan_snapshot_is_current() -> None:
    """plans/<stack>.txt is the offline preview a reviewer reads; it must match the program."""
    from plan_text import render

    for stack in STACKS:
        committed = (ROOT / "plans" / f"{stack}.txt").read_text()
        assert render(run(stack)) == committed, f"plans/{stack}.txt is stale: run `make plan` and commit it"


def test_plan_script_prints_both_stacks_and_checks(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "plan"), "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Offline plan of stack 'production'" in out.stdout
    assert "Offline plan of stack 'production-dr'" in out.stdout
    assert "[secret]" in out.stdout
    for pw in run("production").of_type("random:index/randomPassword:RandomPassword"):
        assert pw.outputs["result"] not in out.stdout
