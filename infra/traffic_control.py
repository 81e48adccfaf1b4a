"""Traffic control on Route 53's data plane: a flag in the DR region that the PRIMARY record follows.

Route 53's API (records, health checks) is a control plane hosted in us-east-1, the region a
failover runs away from, so `recovery failover` must not change a record or a health check. It
flips a CloudWatch alarm in the traffic-control region (the DR region) instead: it puts one
`TrafficOnDr` data point and sets the alarm's state. A CLOUDWATCH_METRIC health check follows that
alarm ("flag" check), and a CALCULATED check ("record" check) is healthy only while both the primary's
node API answers and the flag says the primary serves. Route 53 evaluates both checks on its data
plane, which keeps working during a us-east-1 outage. docs/traffic-control.md compares this with
ARC routing controls.

    alarm ALARM        <=> traffic on the DR site
    alarm OK / never set <=> the primary serves
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

MECHANISM = "cloudwatch-alarm"
ALARM_PERIOD_SECONDS = 10
NAMESPACE = "XaiDR/Traffic"
METRIC_NAME = "TrafficOnDr"


def alarm_name(global_cluster_id: str) -> str:
    return f"{global_cluster_id}-traffic-on-dr"


def alarm_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"


@dataclass
class TrafficControlArgs:
    region: str
    global_cluster_id: str
    endpoint_health_check_id: pulumi.Input[str]
    stack: str


class TrafficControl(pulumi.ComponentResource):
    region: str
    dimensions: dict[str, str]
    alarm: aws.cloudwatch.MetricAlarm
    flag_check: aws.route53.HealthCheck
    record_check: aws.route53.HealthCheck

    def __init__(self, name: str, args: TrafficControlArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:TrafficControl", name, None, opts)
        self.region = args.region
        self.dimensions = {"GlobalCluster": args.global_cluster_id}
        provider = aws.Provider("traffic-control-region", region=args.region, opts=pulumi.ResourceOptions(parent=self))
        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-flag-alarm",
            name=alarm_name(args.global_cluster_id),
            alarm_description="Traffic flag: ALARM sends traffic to the DR site, OK to the primary "
                              "(set by `recovery failover` / `failback`)",
            namespace=NAMESPACE,
            metric_name=METRIC_NAME,
            dimensions=self.dimensions,
            statistic="Maximum",
            # A high-resolution alarm (the runbook sends StorageResolution=1): a reversal of the flag
            # inside one period would be undone by the next evaluation (the period's maximum is still
            # the old 1), so the runbook waits for a fresh period; 10 s keeps that wait short.
            period=ALARM_PERIOD_SECONDS,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            # The runbook sends one data point and sets the state: with no new data the flag must keep
            # what it was set to, not drift to INSUFFICIENT_DATA.
            treat_missing_data="ignore",
            # A flag, not an alert: nothing is notified.
            actions_enabled=False,
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.flag_check = aws.route53.HealthCheck(
            f"{name}-flag",
            type="CLOUDWATCH_METRIC",
            cloudwatch_alarm_name=self.alarm.name,
            cloudwatch_alarm_region=args.region,
            # Should CloudWatch in the DR region stop answering, Route 53 keeps the flag's last state
            # rather than moving traffic on its own.
            insufficient_data_health_status="LastKnownStatus",
            tags={"Name": f"{args.stack}-traffic-flag"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.record_check = aws.route53.HealthCheck(
            f"{name}-record",
            type="CALCULATED",
            child_healthchecks=[args.endpoint_health_check_id, self.flag_check.id],
            # Both: the primary's node API answers AND the flag says the primary serves.
            child_health_threshold=2,
            tags={"Name": f"{args.stack}-primary-record"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"record_health_check_id": self.record_check.id})

    def output(self) -> pulumi.Output[dict[str, Any]]:
        """The `traffic_control` stack output (the contract with recovery/stack.py and the runbooks)."""
        return pulumi.Output.all(self.alarm.name, self.record_check.id, self.flag_check.id).apply(
            lambda v: {"mechanism": MECHANISM, "region": self.region, "alarm_name": v[0], "namespace": NAMESPACE,
                       "metric_name": METRIC_NAME, "dimensions": dict(self.dimensions), "record_health_check_id": v[1],
                       "flag_health_check_id": v[2]})
