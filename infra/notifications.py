"""One site's DR-events topic: where the `recovery` tool announces failed backups, verifications and
drills, stale backups, replication failures, failovers, containment and rotation failures.

The topic is encrypted under a key of its own (publishers need it only through SNS). Its policy lets
exactly the job roles that publish do so, over TLS only. The plan's contacts (DR lead, infrastructure,
database, security) subscribe as the stack file says (`xai-dr:notifications.subscriptions`), each
optionally narrowed to some components by a filter policy on the `component` message attribute.
Webhooks (Slack-compatible, PagerDuty Events v2) are not AWS resources: the tool posts to them
itself. A webhook whose URL or routing key is secret names a Secrets Manager secret, which this
program declares empty; the operator puts its value (`aws secretsmanager put-secret-value`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from stack_config import Notifications

from recovery_access import PUBLISHING_JOBS  # backups, verify, status and drills run as backup;
# failover and failback as failover; rotation as rotate; containment as contain.


@dataclass
class NotificationsArgs:
    notifications: Notifications
    stack: str


def topic_policy(topic_arn: str, publisher_arns: list[str], extra: list[dict[str, Any]] | None = None) -> str:
    """Only the publishing job roles may publish (and, ``extra``, this stack's CloudWatch alarms:
    infra/replication_alarms.py), and nobody over plain HTTP."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "JobRolesPublish", "Effect": "Allow", "Principal": {"AWS": sorted(publisher_arns)},
         "Action": "sns:Publish", "Resource": topic_arn},
        *(extra or []),
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "sns:Publish",
         "Resource": topic_arn, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}, sort_keys=True)


class DrEvents(pulumi.ComponentResource):
    key: aws.kms.Key
    topic: aws.sns.Topic
    webhook_secrets: dict[str, aws.secretsmanager.Secret]

    def __init__(self, name: str, args: NotificationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:DrEvents", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.notifications
        self.key = aws.kms.Key(f"{name}-key", description=f"DR events of {args.stack} (SNS)",
                               enable_key_rotation=True, deletion_window_in_days=30, opts=child)
        self.topic = aws.sns.Topic(f"{name}-topic", name=f"xai-dr-events-{args.stack}",
                                   kms_master_key_id=self.key.arn, opts=child)
        for i, sub in enumerate(cfg.subscriptions):
            aws.sns.TopicSubscription(
                f"{name}-{sub.role}-{i + 1}", topic=self.topic.arn, protocol=sub.protocol, endpoint=sub.endpoint,
                filter_policy=json.dumps({"component": list(sub.components)}) if sub.components else None,
                opts=child)
        self.webhook_secrets = {}
        for hook in cfg.webhooks:
            if hook.secret_name:
                self.webhook_secrets[hook.name] = aws.secretsmanager.Secret(
                    f"{name}-webhook-{hook.name}", name=hook.secret_name,
                    description=f"The {hook.format} webhook '{hook.name}' for DR events ({{\"url\", \"routing_key\"}}); "
                                "its value is the operator's", recovery_window_in_days=30, opts=child)
        self.register_outputs({"topic_arn": self.topic.arn})

    def allow_publishers(self, role_arns: dict[str, pulumi.Output[str]],
                         alarms: pulumi.Output[dict[str, Any]] | None = None) -> aws.sns.TopicPolicy:
        """The topic policy, once the job roles exist (infra/recovery_access.py grants them the same);
        ``alarms``: the statement that lets the stack's CloudWatch alarms publish."""
        publishers = [role_arns[j] for j in PUBLISHING_JOBS]
        extra = [alarms] if alarms is not None else []
        return aws.sns.TopicPolicy(
            "events-policy", arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, *extra, *publishers).apply(
                lambda v: topic_policy(v[0], list(v[1 + len(extra):]), list(v[1:1 + len(extra)]))),
            opts=pulumi.ResourceOptions(parent=self))

    def output(self, cfg: Notifications) -> pulumi.Output[dict[str, Any]]:
        """The `notifications` stack output: the topic, who subscribes how, and each webhook's URL or the
        name and ARN of the secret holding it (never a secret value)."""
        names = list(self.webhook_secrets)
        return pulumi.Output.all(self.topic.arn, self.key.arn, *[self.webhook_secrets[n].arn for n in names]).apply(
            lambda v: {
                "topic_arn": v[0], "kms_key_arn": v[1],
                "subscriptions": [{"role": s.role, "protocol": s.protocol, "components": list(s.components)}
                                  for s in cfg.subscriptions],
                "webhooks": [{"name": h.name, "format": h.format,
                              **({"url": h.url} if h.url else {"secret_name": h.secret_name,
                                                               "secret_arn": v[2 + names.index(h.name)]})}
                             for h in cfg.webhooks],
            })
