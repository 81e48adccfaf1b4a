"""The local deploy covers the whole program: a resource type added to infra/ without a handler in
recovery/local/deploy.py fails here, and `local up` refuses it with one line naming the type."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from recovery.errors import LocalEnvError
from recovery.local import deploy

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
