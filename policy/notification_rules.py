"""The DR-events topic (infra/notifications.py): someone is told, and what they are told is encrypted.

A stack rule: every SNS topic is encrypted under a KMS key (kmsMasterKeyId) and has at least one
TopicSubscription (linked by property dependency or by ARN); unknown values (preview) are tolerated.
"""

from __future__ import annotations

from typing import List

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

SNS_TOPIC = "aws:sns/topic:Topic"
SNS_SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"


def validate_dr_events_topic(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    # fsbp_rules lists this rule in its STACK_POLICIES: its helpers are imported at call time.
    from fsbp_rules import MISSING, UNKNOWN, _of_type, present, prop

    subs = _of_type(args.resources, SNS_SUBSCRIPTION)
    for topic in _of_type(args.resources, SNS_TOPIC):
        name = prop(topic.props, "name")
        shown = topic.name if name in (UNKNOWN, MISSING) else name
        if not present(prop(topic.props, "kmsMasterKeyId")):
            report_violation(f"topic {shown} is not encrypted (no kmsMasterKeyId): DR events name the stack's "
                             "resources and failures", topic.urn)
        arn = prop(topic.props, "arn")
        linked: List[object] = []
        for sub in subs:
            deps = (getattr(sub, "property_dependencies", None) or {}).get("topic") or []
            target = prop(sub.props, "topic")
            if any(d.urn == topic.urn for d in deps) or (target is not UNKNOWN and target == arn and arn not in (UNKNOWN, MISSING)) \
                    or (target is UNKNOWN and not deps):
                linked.append(sub)
        if not linked:
            report_violation(f"topic {shown} has no subscription: nobody would be told of a DR event "
                             "(set xai-dr:notifications.subscriptions)", topic.urn)


DR_EVENTS_TOPIC = StackValidationPolicy(
    name="XAI.SNS.dr-events-topic",
    description="Every SNS topic (the DR-events topic) is encrypted under a KMS key and has at least one subscription.",
    validate=validate_dr_events_topic)

POLICIES = [DR_EVENTS_TOPIC]
