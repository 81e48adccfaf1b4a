"""The local deploy covers the whole program: a resource type added to infra/ without a handler in
recovery/local/deploy.py fails here, and `local up` refuses it with one line naming the type."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from recovery.errors import LocalEnvError
from recovery.local import deploy, deploy_bound

import infra_runs


@pytest.mark.parametrize("stack", ["production", "production-dr", "local", "local-dr"])
def test_every_type_the_program_registers_is_created_or_deliberately_skipped(stack: str) -> None:
    run = infra_runs.run(stack) if stack.startswith("production") else dict(zip(
        (deploy.PRIMARY, deploy.DR), deploy.program_runs({})))[stack]
    missing = sorted({r.type for r in run.resources
                      if r.type not in deploy.HANDLERS and not deploy.not_emulated(r.type)})
    assert missing == [], f"add a handler to recovery/local/deploy.py for {missing}"


def test_an_unknown_type_stops_the_deploy_with_one_line_before_creating_anything() -> None:
    primary, _ = deploy.program_runs({})
    queue = dataclasses.replace(primary.resources[-1], type="aws:sqs/queue:Queue", name="jobs")
    run = dataclasses.replace(primary, resources=[*primary.resources, queue])
    d = deploy.Deployment("https://127.0.0.1:9")  # nothing listens: any creation would fail differently
    with pytest.raises(LocalEnvError) as err:
        deploy.replay(d, run)
    assert err.value.line() == ("stack local registers aws:sqs/queue:Queue, which the local environment cannot "
                                "create - add a handler to recovery/local/deploy.py, or list it in NOT_EMULATED "
                                "with a reason")
    assert err.value.exit_code == 16 and d.created == []


def test_the_traffic_flag_is_deployed_where_the_program_declares_it(moto_server: Any) -> None:
    """The alarm in the traffic-control region (its provider's), the flag and record checks in Route 53,
    the PRIMARY record on the record check, and the outputs naming what the emulator made."""
    moto_server.reset()
    outputs = deploy.deploy(moto_server.endpoint, ca_bundle=moto_server.ca_bundle).outputs
    tc = outputs[deploy.PRIMARY]["traffic_control"]
    assert outputs[deploy.DR]["traffic_control"] == tc
    west = moto_server.client("cloudwatch", "us-west-2").describe_alarms(AlarmNames=[tc["alarm_name"]])["MetricAlarms"]
    assert [(a["Namespace"], a["MetricName"], a["TreatMissingData"], a["ActionsEnabled"]) for a in west] == [
        ("XaiDR/Traffic", "TrafficOnDr", "ignore", False)]
    # us-east-1 holds only the primary site's replication lag alarm (infra/replication_alarms.py), no flag
    east = moto_server.client("cloudwatch", "us-east-1").describe_alarms()["MetricAlarms"]
    assert [a["AlarmName"] for a in east] == ["xai-dr-local-db-replication-lag"]
    r53 = moto_server.client("route53")
    checks = {h["Id"]: h["HealthCheckConfig"] for h in r53.list_health_checks()["HealthChecks"]}
    record = checks[tc["record_health_check_id"]]
    assert (record["Type"], record["HealthThreshold"]) == ("CALCULATED", 2)
    assert record["ChildHealthChecks"] == [outputs[deploy.PRIMARY]["health_check_id"], tc["flag_health_check_id"]]
    assert checks[tc["flag_health_check_id"]]["Type"] == "CLOUDWATCH_METRIC"
    rrsets = r53.list_resource_record_sets(HostedZoneId=outputs[deploy.PRIMARY]["dns_zone_id"])["ResourceRecordSets"]
    by_role = {r["Failover"]: r["HealthCheckId"] for r in rrsets if r.get("Failover")}
    assert by_role == {"PRIMARY": tc["record_health_check_id"], "SECONDARY": outputs[deploy.DR]["health_check_id"]}


def test_the_flag_check_is_sent_with_its_alarm() -> None:
    """moto 5.2.5 drops AlarmIdentifier and InsufficientDataHealthStatus (the emulator keeps them):
    the handler must send them all the same, as the program declares them."""
    primary, _ = deploy.program_runs({})
    flag = next(r for r in primary.resources if r.name == "dns-traffic-flag")
    sent: list[dict[str, Any]] = []

    class Route53:
        def create_health_check(self, **kw: Any) -> dict[str, Any]:
            sent.append(kw["HealthCheckConfig"])
            return {"HealthCheck": {"Id": "hc-1"}}

        def change_tags_for_resource(self, **kw: Any) -> None:
            pass

    d = deploy.Deployment("https://127.0.0.1:9")
    d._clients[("route53", "us-east-1")] = Route53()
    assert deploy.HANDLERS[flag.type](d, flag, flag.inputs) == {flag.id: "hc-1"}
    assert sent == [{"Type": "CLOUDWATCH_METRIC", "InsufficientDataHealthStatus": "LastKnownStatus",
                     "AlarmIdentifier": {"Region": "us-west-2", "Name": "xai-local-global-traffic-on-dr"}}]


def _account_view(moto_server: Any, outputs: dict[str, Any]) -> dict[str, Any]:
    """What a runbook would see of the deployed site: buckets with policy and versions, roles, the secret."""
    s3 = moto_server.client("s3", outputs["region"])
    buckets = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    vault = outputs["backup_bucket_name"]
    roles = sorted(r["RoleName"] for r in moto_server.client("iam").list_roles()["Roles"])
    secret = moto_server.client("secretsmanager", outputs["region"]).get_secret_value(SecretId=outputs["db_secret_arn"])
    return {"buckets": buckets, "vault_policy": s3.get_bucket_policy(Bucket=vault)["Policy"],
            "vault_objects": [o["Key"] for o in s3.list_object_versions(Bucket=vault).get("Versions", [])],
            "roles": roles, "secret": secret["SecretString"]}


def test_a_restored_deployment_is_the_deployed_one_and_forgets_what_a_test_changed(moto_server: Any) -> None:
    """deploy_for_tests replays the program once per process and arguments, then restores its captured state:
    the next test must get exactly that state back, none of what the last one did, with working KMS keys."""
    outputs, oncall = deploy_bound.site_for_tests(moto_server, db_password="first-test-password")
    fresh = _account_view(moto_server, outputs)
    s3 = moto_server.client("s3", outputs["region"])
    vault = outputs["backup_bucket_name"]
    # a test's changes: an object written with the vault's key, the bucket policy removed, a role deleted
    s3.put_object(Bucket=vault, Key="backups/db/x.sql.gz", Body=b"x", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=outputs["backup_kms_key_arn"])
    s3.delete_bucket_policy(Bucket=vault)
    iam = moto_server.client("iam")
    victim = fresh["roles"][0]
    for p in iam.list_role_policies(RoleName=victim)["PolicyNames"]:
        iam.delete_role_policy(RoleName=victim, PolicyName=p)
    for p in iam.list_attached_role_policies(RoleName=victim)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=victim, PolicyArn=p["PolicyArn"])
    iam.delete_role(RoleName=victim)

    again, oncall_again = deploy_bound.site_for_tests(moto_server, db_password="first-test-password")
    assert again == outputs and oncall_again.env() == oncall.env()
    assert _account_view(moto_server, again) == fresh
    # the restored KMS key encrypts and decrypts, and the restored vault takes a write under it again
    kms = moto_server.client("kms", outputs["region"])
    blob = kms.encrypt(KeyId=outputs["backup_kms_key_arn"], Plaintext=b"payload")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"payload"
    s3.put_object(Bucket=vault, Key="backups/db/y.sql.gz", Body=b"y", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=outputs["backup_kms_key_arn"])
    assert s3.get_object(Bucket=vault, Key="backups/db/y.sql.gz")["Body"].read() == b"y"
    # other arguments are another deployment, replayed and bound to them
    other, _ = deploy_bound.site_for_tests(moto_server, db_password="other", db_name="another_db")
    assert other["db_name"] == "another_db" and outputs["db_name"] == "xai_blockchain"
    assert json.loads(_account_view(moto_server, other)["secret"])["password"] == "other"
