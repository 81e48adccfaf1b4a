"""The emulator's region outage, its CALCULATED / CLOUDWATCH_METRIC health checks and its DNS
server (recovery/local/emulator/outage.py, route53_health.py, route53_dns.py), observed through
real boto3 clients over HTTP and real DNS queries over UDP.

As in test_emulator_extensions.py, these tests share moto's backends with other tests: unique
names, and every outage healed before the test ends.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
import uuid
from typing import Any, Iterator

import boto3
import dns.message
import dns.query
import dns.rcode
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError
from botocore.exceptions import ConnectionError as BotoConnectionError

from recovery.local import emulator as ext
from recovery.local.emulator import outage
from recovery.local.emulator.route53_dns import DnsServer
from recovery.local.moto_server import MotoServer


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    was_installed = ext.installed()
    ext.install()
    srv = MotoServer().start()
    yield srv
    outage.heal()
    srv.stop()
    if not was_installed:
        ext.uninstall()


@pytest.fixture(scope="module")
def resolver() -> Iterator[DnsServer]:
    d = DnsServer().start()
    yield d
    d.stop()


# This module's own access key: other tests' background threads (lock renewals, replication) may
# call the shared in-process emulator during an outage, and their refusals are not ours.
KEY = f"outage-test-{uuid.uuid4().hex[:8]}"
# What a dropped connection surfaces as: closed, refused, or (TLS torn down mid-handshake) an SSL error.
DROPPED = (ConnectionClosedError, BotoConnectionError)


def one_try(server: MotoServer, service: str, region: str) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=server.endpoint, verify=server.ca_bundle,
                        aws_access_key_id=KEY, aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1}, connect_timeout=30, read_timeout=30))


def control(server: MotoServer, body: Any = None) -> dict[str, Any]:
    req = urllib.request.Request(server.endpoint + outage.CONTROL_PATH, method="GET" if body is None else "POST",
                                 data=None if body is None else json.dumps(body).encode())
    ctx = ssl.create_default_context(cafile=server.ca_bundle)
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        return dict(json.loads(r.read()))


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_an_outage_drops_the_region_and_the_global_control_planes_and_heals(server: MotoServer) -> None:
    bucket = uid("west")
    one_try(server, "s3", "us-west-2").create_bucket(Bucket=bucket,
                                                     CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    seen = len(control(server)["refused"])
    assert control(server, {"regions": ["us-east-1"]})["regions"] == ["us-east-1"]
    try:
        lost = [("s3", lambda c: c.list_buckets()), ("rds", lambda c: c.describe_db_clusters()),
                ("route53", lambda c: c.list_hosted_zones()), ("iam", lambda c: c.list_roles()),
                ("sts", lambda c: c.get_caller_identity())]  # sts in us-east-1: the global endpoint's scope
        for service, call in lost:
            t0 = time.monotonic()
            with pytest.raises(DROPPED):
                call(one_try(server, service, "us-east-1"))
            assert time.monotonic() - t0 < 10, service  # dropped at once, not a 30 s timeout
        # the DR region answers, its regional STS too; unsigned requests (this control) are served
        assert one_try(server, "s3", "us-west-2").head_bucket(Bucket=bucket)
        assert one_try(server, "sts", "us-west-2").get_caller_identity()["Account"]
        refused = [r for r in control(server)["refused"][seen:] if r["access_key"] == KEY]
        assert {(r["region"], r["service"]) for r in refused} == {
            ("us-east-1", "s3"), ("us-east-1", "rds"), ("us-east-1", "route53"), ("us-east-1", "iam"),
            ("us-east-1", "sts")}
    finally:
        control(server, {"regions": []})
    assert control(server)["regions"] == [] and control(server)["since"] is None
    assert one_try(server, "s3", "us-east-1").list_buckets()["Buckets"] is not None


def test_a_bad_outage_request_is_refused_and_changes_nothing(server: MotoServer) -> None:
    req = urllib.request.Request(server.endpoint + outage.CONTROL_PATH, method="POST", data=b'{"regions": "us-east-1"}')
    ctx = ssl.create_default_context(cafile=server.ca_bundle)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10, context=ctx)
    assert e.value.code == 400
    assert control(server)["regions"] == []


def _failover_zone(server: MotoServer) -> tuple[str, str, dict[str, str]]:
    """A zone with a PRIMARY record on a CALCULATED check (endpoint + alarm flag) and a SECONDARY."""
    r53, cw = one_try(server, "route53", "us-east-1"), one_try(server, "cloudwatch", "us-west-2")
    zone_name = f"{uid('z')}.test"
    zone = r53.create_hosted_zone(Name=zone_name, CallerReference=uid("c"))["HostedZone"]["Id"].split("/")[-1]
    alarm = uid("traffic-on-dr")
    cw.put_metric_alarm(AlarmName=alarm, Namespace="XaiDR/Traffic", MetricName="TrafficOnDr",
                        Dimensions=[{"Name": "GlobalCluster", "Value": alarm}], Statistic="Maximum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
                        TreatMissingData="ignore", ActionsEnabled=False)

    def hc(config: dict[str, Any]) -> str:
        return str(r53.create_health_check(CallerReference=uid("hc"), HealthCheckConfig=config)["HealthCheck"]["Id"])

    endpoint = hc({"Type": "HTTPS", "FullyQualifiedDomainName": "node-use1.test", "Port": 443})
    flag = hc({"Type": "CLOUDWATCH_METRIC", "AlarmIdentifier": {"Region": "us-west-2", "Name": alarm},
               "InsufficientDataHealthStatus": "LastKnownStatus"})
    record = hc({"Type": "CALCULATED", "ChildHealthChecks": [endpoint, flag], "HealthThreshold": 2})
    dr = hc({"Type": "HTTPS", "FullyQualifiedDomainName": "node-usw2.test", "Port": 443})
    name = f"api.{zone_name}"
    changes = [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": name, "Type": "CNAME", "TTL": 60, "SetIdentifier": sid, "Failover": kind, "HealthCheckId": check,
        "ResourceRecords": [{"Value": target}]}}
        for sid, kind, check, target in (("p", "PRIMARY", record, "node-use1.test"),
                                         ("s", "SECONDARY", dr, "node-usw2.test"))]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    return name, alarm, {"endpoint": endpoint, "flag": flag, "record": record, "dr": dr}


def ask(resolver: DnsServer, name: str) -> tuple[str, str | None]:
    host, _, port = resolver.address.rpartition(":")
    resp = dns.query.udp(dns.message.make_query(name, "CNAME"), host, port=int(port), timeout=3)
    target = next((str(next(iter(r)).target).rstrip(".") for r in resp.answer), None)
    return dns.rcode.to_text(resp.rcode()), target


def test_dns_follows_the_alarm_flag_through_an_outage_of_us_east_1(server: MotoServer, resolver: DnsServer) -> None:
    name, alarm, checks = _failover_zone(server)
    r53 = one_try(server, "route53", "us-east-1")
    cfg = r53.get_health_check(HealthCheckId=checks["flag"])["HealthCheck"]["HealthCheckConfig"]
    assert cfg["AlarmIdentifier"]["Name"] == alarm and cfg["InsufficientDataHealthStatus"] == "LastKnownStatus"
    assert ask(resolver, name) == ("NOERROR", "node-use1.test")  # alarm never set: the primary serves
    ext.set_health_probe(checks["endpoint"], True)
    cw = one_try(server, "cloudwatch", "us-west-2")
    control(server, {"regions": ["us-east-1"]})
    try:
        cw.put_metric_data(Namespace="XaiDR/Traffic", MetricData=[{
            "MetricName": "TrafficOnDr", "Value": 1.0, "Dimensions": [{"Name": "GlobalCluster", "Value": alarm}]}])
        cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="failover")
        assert ask(resolver, name) == ("NOERROR", "node-usw2.test")  # DNS answers while the API is gone
        with pytest.raises(DROPPED):
            one_try(server, "route53", "us-east-1").get_health_check_status(HealthCheckId=checks["record"])
    finally:
        control(server, {"regions": []})
    obs = r53.get_health_check_status(HealthCheckId=checks["record"])["HealthCheckObservations"]
    assert all(o["StatusReport"]["Status"].startswith("Failure") for o in obs)
    cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="failback")
    assert ask(resolver, name) == ("NOERROR", "node-use1.test")
    # the primary's endpoint fails: the calculated check fails with it, the SECONDARY serves
    ext.set_health_probe(checks["endpoint"], False)
    assert ask(resolver, name) == ("NOERROR", "node-usw2.test")
    # both unhealthy: Route 53 answers with the PRIMARY
    ext.set_health_probe(checks["dr"], False)
    assert ask(resolver, name) == ("NOERROR", "node-use1.test")
    for hc in checks.values():
        ext.set_health_probe(hc, None)


def test_dns_refuses_names_outside_every_zone_and_nxdomain_inside(server: MotoServer, resolver: DnsServer) -> None:
    name, _alarm, _checks = _failover_zone(server)
    assert ask(resolver, "nothing.example.invalid")[0] == "REFUSED"
    assert ask(resolver, "nope." + name.split(".", 1)[1])[0] == "NXDOMAIN"


def test_a_replica_secret_is_promoted_in_its_region_while_the_primary_is_down(server: MotoServer) -> None:
    east, west = one_try(server, "secretsmanager", "us-east-1"), one_try(server, "secretsmanager", "us-west-2")
    arn = east.create_secret(Name=uid("db"), SecretString='{"host": "old"}',
                             AddReplicaRegions=[{"Region": "us-west-2"}])["ARN"]
    replica = arn.replace(":us-east-1:", ":us-west-2:")
    with pytest.raises(Exception, match="replica"):
        west.put_secret_value(SecretId=replica, SecretString='{"host": "new"}')  # a replica is read-only
    control(server, {"regions": ["us-east-1"]})
    try:
        assert west.stop_replication_to_replica(SecretId=replica)["ARN"] == replica
        west.put_secret_value(SecretId=replica, SecretString='{"host": "new"}')
        got = west.get_secret_value(SecretId=replica, VersionStage="AWSCURRENT")["SecretString"]
        assert json.loads(got) == {"host": "new"} and "PrimaryRegion" not in west.describe_secret(SecretId=replica)
    finally:
        control(server, {"regions": []})
    assert json.loads(east.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]) == {"host": "old"}
    assert not east.describe_secret(SecretId=arn).get("ReplicationStatus")
    # the failback: the primary's secret is replicated over the promoted copy again
    east.replicate_secret_to_regions(SecretId=arn, AddReplicaRegions=[{"Region": "us-west-2"}],
                                     ForceOverwriteReplicaSecret=True)
    assert json.loads(west.get_secret_value(SecretId=replica, VersionStage="AWSCURRENT")["SecretString"]) == {"host": "old"}
    assert west.describe_secret(SecretId=replica)["PrimaryRegion"] == "us-east-1"
    with pytest.raises(Exception, match="InvalidRequest"):
        east.stop_replication_to_replica(SecretId=arn)  # not a replica
