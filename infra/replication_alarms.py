"""The database's continuous RPO, alarmed: CloudWatch watches Aurora global replication lag (issue 16).

Each site declares, in its own region, an alarm on ``AuroraGlobalDBRPOLag`` (AWS/RDS, ms) of its own
cluster: RDS publishes that metric for a global database's SECONDARY cluster, in the secondary's
region, so the alarm of whichever site is the secondary now (the DR site until a failover, the old
primary after a failback has made it one) is the one that can fire. Over the stack's PostgreSQL RPO
objective (``xai-dr:objectives.postgresql.rpoMinutes``) for one 1-minute period it goes to ALARM and
notifies the site's DR-events topic (infra/notifications.py); back under it, OK notifies too.

Missing data is "notBreaching": the writer's cluster has no such metric, and a lost region is
detected by the endpoint health checks and `recovery status` (which says "unknown", yellow).
`recovery status` and `recovery metrics` judge the same lag by the same objective, warning at half
of it (recovery/reports/replication_rpo.py).

LatestRestorableTime is not a CloudWatch metric (only DescribeDBClusters returns it), so no alarm
can express it: `recovery metrics` exports its age (``xai_dr_db_latest_restorable_age_seconds``)
for Prometheus alerting, and `status` judges it.

CloudWatch publishes alarm actions as the service principal ``cloudwatch.amazonaws.com``: the
topic's policy lets it publish for this stack's alarms only (``topic_statement``), and the topic's
KMS key lets it encrypt through SNS only (``events_key_policy``, which keeps the account's own
administration of the key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

METRIC, NAMESPACE = "AuroraGlobalDBRPOLag", "AWS/RDS"
PERIOD_SECONDS = 60  # RDS publishes the metric each minute


def alarm_name(stack: str) -> str:
    return f"xai-dr-{stack}-db-replication-lag"


def alarm_arn_pattern(region: str, account: str, stack: str) -> str:
    """Every replication alarm this module declares for the stack (today one)."""
    return f"arn:aws:cloudwatch:{region}:{account}:alarm:xai-dr-{stack}-db-*"


def topic_statement(topic_arn: str, region: str, account: str, stack: str) -> dict[str, Any]:
    """The DR-events topic policy statement that lets this stack's alarms notify it."""
    return {"Sid": "ReplicationAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish", "Resource": topic_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": alarm_arn_pattern(region, account, stack)},
                          "StringEquals": {"aws:SourceAccount": account}}}


def events_key_policy(region: str, account: str) -> str:
    """The DR-events key: the account administers it (as the default policy has it); CloudWatch may use it
    only through SNS in this region, to publish alarm notifications to the encrypted topic."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchAlarmsThroughSns", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}}},
    ]}, sort_keys=True)


@dataclass
class ReplicationAlarmsArgs:
    stack: str
    region: str
    cluster_identifier: pulumi.Input[str]
    rpo_minutes: int | None
    events_topic_arn: pulumi.Input[str]
    events_key_id: pulumi.Input[str]
    account: pulumi.Input[str]  # the account the cluster is in (from its ARN)


class ReplicationAlarms(pulumi.ComponentResource):
    lag_alarm: aws.cloudwatch.MetricAlarm | None
    key_policy: aws.kms.KeyPolicy

    def __init__(self, name: str, args: ReplicationAlarmsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:ReplicationAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key_policy = aws.kms.KeyPolicy(
            f"{name}-events-key-policy", key_id=args.events_key_id,
            policy=pulumi.Output.from_input(args.account).apply(lambda acct: events_key_policy(args.region, acct)),
            opts=child)
        self.lag_alarm = None
        if args.rpo_minutes:  # an objective to alarm on (the stack config allows none)
            self.lag_alarm = aws.cloudwatch.MetricAlarm(
                f"{name}-lag",
                name=alarm_name(args.stack),
                alarm_description=(f"Aurora global replication lag of this site's cluster (while it is the secondary) "
                                   f"is over the PostgreSQL RPO of {args.rpo_minutes} min: a failover now would lose "
                                   "that much. `recovery status` / `recovery sites` show it."),
                namespace=NAMESPACE, metric_name=METRIC,
                dimensions={"DBClusterIdentifier": args.cluster_identifier},
                statistic="Maximum", period=PERIOD_SECONDS, evaluation_periods=1,
                threshold=args.rpo_minutes * 60 * 1000, comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[args.events_topic_arn], ok_actions=[args.events_topic_arn],
                opts=child)
        self.register_outputs({})


__all__ = ["ReplicationAlarms", "ReplicationAlarmsArgs", "alarm_name", "topic_statement", "events_key_policy",
           "METRIC", "NAMESPACE"]
