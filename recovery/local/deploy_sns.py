"""The DR-events topic (infra/notifications.py) in the emulator: SNS handlers for deploy.py's replay.

The local stack files point the DR lead's subscription and the chat webhook at
`webhook-receiver.xai.local`; `local up` starts the receiver (webhook_receiver.py) first and binds
that placeholder to its address (`RECEIVER_PLACEHOLDER`), so the emulator's SNS delivers over HTTP
to a real process, as SNS would to an https endpoint. A deployment without a receiver (the test
fixtures' `deploy_for_tests`) gets neither that subscription nor the webhooks: nothing would answer.
"""

from __future__ import annotations

from typing import Any

RECEIVER_PLACEHOLDER = "http://webhook-receiver.xai.local"
RECEIVER_BINDING = "webhook_receiver_url"  # the LOCAL_BINDINGS key naming the receiver's address


def _topic(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    attrs = {"KmsMasterKeyId": i["kmsMasterKeyId"]} if i.get("kmsMasterKeyId") else {}
    arn = d.client("sns", r.region).create_topic(Name=i["name"], Attributes=attrs)["TopicArn"]
    return {r.id: arn, r.outputs["arn"]: arn}


def _topic_policy(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    d.client("sns", r.region).set_topic_attributes(TopicArn=i["arn"], AttributeName="Policy", AttributeValue=i["policy"])
    return {}


def _subscription(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    if i["endpoint"].startswith(RECEIVER_PLACEHOLDER):
        return {}  # no receiver in this deployment
    attrs = {"FilterPolicy": i["filterPolicy"]} if i.get("filterPolicy") else {}
    arn = d.client("sns", r.region).subscribe(TopicArn=i["topic"], Protocol=i["protocol"], Endpoint=i["endpoint"],
                                              Attributes=attrs, ReturnSubscriptionArn=True)["SubscriptionArn"]
    return {r.id: arn, r.outputs["arn"]: arn}


def _key_policy(d: Any, r: Any, i: dict[str, Any]) -> dict[str, str]:
    """issue 16: the DR-events key's policy (infra/replication_alarms.py: CloudWatch alarms publish to the
    encrypted topic), put on the key as declared."""
    d.client("kms", r.region).put_key_policy(KeyId=i["keyId"], PolicyName="default", Policy=i["policy"])
    return {}


SNS_HANDLERS = {
    "aws:kms/keyPolicy:KeyPolicy": _key_policy,
    "aws:sns/topic:Topic": _topic,
    "aws:sns/topicPolicy:TopicPolicy": _topic_policy,
    "aws:sns/topicSubscription:TopicSubscription": _subscription,
}


def without_receiver(outputs: dict[str, Any]) -> dict[str, Any]:
    """A local stack's outputs with the webhooks dropped when no receiver was bound (see above)."""
    n = outputs.get("notifications")
    if isinstance(n, dict) and RECEIVER_PLACEHOLDER in repr(n.get("webhooks")):
        return {**outputs, "notifications": {**n, "webhooks": []}}
    return outputs
