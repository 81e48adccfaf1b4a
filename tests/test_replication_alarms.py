"""infra/replication_alarms.py under Pulumi mocks: each site alarms on its own cluster's Aurora global
replication lag over the PostgreSQL RPO, notifying its DR-events topic, which lets CloudWatch publish
(topic policy and key policy) for this stack's alarms only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra_runs import STACKS, run

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def lag_alarm(stack: str) -> Any:
    return run(stack).one(ALARM, "replication-alarms-lag")


@pytest.mark.parametrize("stack", STACKS)
def test_lag_alarm_on_the_sites_own_cluster_over_the_rpo(stack: str) -> None:
    p = run(stack)
    alarm = lag_alarm(stack)
    i = alarm.inputs
    assert alarm.region == p.outputs["region"], "the metric is published in the secondary's own region"
    assert (i["namespace"], i["metricName"]) == ("AWS/RDS", "AuroraGlobalDBRPOLag")
    assert i["dimensions"] == {"DBClusterIdentifier": p.outputs["db_cluster_id"]}
    rpo_ms = p.outputs["objectives"]["postgresql"]["rpo_minutes"] * 60 * 1000
    assert (i["statistic"], i["period"], i["evaluationPeriods"], i["threshold"]) == ("Maximum", 60, 1, rpo_ms)
    assert i["comparisonOperator"] == "GreaterThanThreshold"
    assert i["treatMissingData"] == "notBreaching", "a writer's cluster has no such metric"
    topic = p.outputs["notifications"]["topic_arn"]
    assert i["alarmActions"] == [topic] and i["okActions"] == [topic]
    assert i["name"] == f"xai-dr-{stack}-db-replication-lag"


@pytest.mark.parametrize("stack", STACKS)
def test_cloudwatch_may_publish_to_the_encrypted_topic_for_these_alarms_only(stack: str) -> None:
    p = run(stack)
    policy = json.loads(p.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    st = next(s for s in policy["Statement"] if s["Sid"] == "ReplicationAlarmsPublish")
    assert st["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and st["Action"] == "sns:Publish"
    assert st["Resource"] == p.outputs["notifications"]["topic_arn"]
    account = p.outputs["db_cluster_arn"].split(":")[4]
    assert st["Condition"]["ArnLike"]["aws:SourceArn"] == (
        f"arn:aws:cloudwatch:{p.outputs['region']}:{account}:alarm:xai-dr-{stack}-db-*")
    assert st["Condition"]["StringEquals"]["aws:SourceAccount"] == account
    # the job roles still publish, plain HTTP is still refused
    assert {s["Sid"] for s in policy["Statement"]} >= {"JobRolesPublish", "DenyInsecureTransport"}

    key_policy = p.one("aws:kms/keyPolicy:KeyPolicy")
    assert key_policy.inputs["keyId"] == p.one("aws:kms/key:Key", "events-key").outputs["keyId"]
    doc = json.loads(key_policy.inputs["policy"])
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{account}:root"}
    cw = by_sid["CloudWatchAlarmsThroughSns"]
    assert cw["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cw["Condition"] == {"StringEquals": {"kms:ViaService": f"sns.{p.outputs['region']}.amazonaws.com"}}
