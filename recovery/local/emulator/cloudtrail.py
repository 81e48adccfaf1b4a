"""CloudTrail: record the API calls the emulator serves and answer LookupEvents from them.

AWS: CloudTrail keeps 90 days of management events per region (global services such as IAM and
Route 53 in us-east-1). LookupEvents filters by at most one LookupAttribute (EventId, EventName,
ReadOnly, Username, ResourceType, ResourceName, EventSource, AccessKeyId) and by
StartTime/EndTime, returns newest first, MaxResults <= 50 with NextToken. Events appear about 5
minutes after the call.

moto 5.2.5: LookupEvents raises NotImplementedError (HTTP 500); no calls are recorded.

This extension: wraps BaseResponse.call_action (every query/JSON/rest-XML service except S3,
which moto dispatches differently; S3 data events are not management events anyway) to record
each call at once (no delivery delay): event name, source, time, region, caller (IAM user name
when the access key belongs to an IAM user, else 'root'), access key id, error code, and
resources taken from identifier-like request parameters (...Id, ...Identifier, ...Name, ...Arn,
EC2 list members, Route 53 path ids). The request body is never stored, so secrets do not end up
in the trail. LookupEvents calls themselves are not recorded. Adds
CloudTrailResponse.lookup_events with the filters above (InvalidLookupAttributesException for
more than one attribute, InvalidTimeRangeException when StartTime > EndTime).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import uuid
from typing import Any, Callable, Optional

from recovery.local.emulator.records import LOCK, RECORDS, as_list, now, patch, wrap

log = logging.getLogger(__name__)


def install() -> None:
    from moto.cloudtrail.responses import CloudTrailResponse
    from moto.core.responses import BaseResponse

    wrap(BaseResponse, "call_action", _call_action)
    patch(CloudTrailResponse, "lookup_events", _lookup_events)


def _call_action(orig: Callable[..., Any], resp: Any) -> Any:
    status = 500
    try:
        result = orig(resp)
        status = int(result[0]) if isinstance(result, tuple) else 200
        return result
    finally:
        try:
            _record(resp, status)
        except Exception:
            log.debug("CloudTrail recording failed", exc_info=True)


def _lookup_events(resp: Any) -> str:
    from moto.core.exceptions import JsonRESTError

    attrs = resp._get_param("LookupAttributes") or []
    if len(attrs) > 1:
        raise JsonRESTError("InvalidLookupAttributesException",
                            "You cannot specify more than one lookup attribute.")
    start = _time(resp._get_param("StartTime"))
    end = _time(resp._get_param("EndTime"))
    if start and end and start > end:
        raise JsonRESTError("InvalidTimeRangeException", "StartTime must be before EndTime.")
    max_results = int(resp._get_param("MaxResults") or 50)
    if not 1 <= max_results <= 50:
        raise JsonRESTError("InvalidMaxResultsException", "MaxResults must be 1..50.")
    offset = int(resp._get_param("NextToken") or 0)
    with LOCK:
        events = [e for e in RECORDS.events
                  if e["AccountId"] == resp.current_account and e["Region"] == resp.region]
    if start:
        events = [e for e in events if e["EventTime"] >= start]
    if end:
        events = [e for e in events if e["EventTime"] <= end]
    for attr in attrs:
        events = [e for e in events
                  if _matches(e, attr.get("AttributeKey"), attr.get("AttributeValue"))]
    events.sort(key=lambda e: e["EventTime"], reverse=True)
    page = events[offset: offset + max_results]
    result: dict[str, Any] = {"Events": [_public(e) for e in page]}
    if offset + max_results < len(events):
        result["NextToken"] = str(offset + max_results)
    return json.dumps(result)


_GLOBAL_SERVICES = {"iam", "route53", "sts", "cloudfront", "organizations"}
_RESOURCE_KEY = re.compile(r"(Identifier|Id|Ids|Name|Names|Arn|ARN|Arns)$")
_NOT_RESOURCES = {"ParameterName", "AttributeName", "Name", "KeyName", "PolicyName",
                  "AttributeKey", "StatisticName", "MetricName", "Namespace",
                  "EngineName", "SnapshotName", "FilterName"}
_RESOURCE_TYPES = {
    "InstanceId": "AWS::EC2::Instance", "GroupId": "AWS::EC2::SecurityGroup",
    "VolumeId": "AWS::EC2::Volume", "SnapshotId": "AWS::EC2::Snapshot",
    "ImageId": "AWS::EC2::Ami", "NetworkInterfaceId": "AWS::EC2::NetworkInterface",
    "VpcId": "AWS::EC2::VPC", "UserName": "AWS::IAM::User",
    "AccessKeyId": "AWS::IAM::AccessKey", "RoleName": "AWS::IAM::Role",
    "DBClusterIdentifier": "AWS::RDS::DBCluster", "DbClusterIdentifier": "AWS::RDS::DBCluster",
    "TargetDbClusterIdentifier": "AWS::RDS::DBCluster",
    "DBInstanceIdentifier": "AWS::RDS::DBInstance",
    "GlobalClusterIdentifier": "AWS::RDS::GlobalCluster",
    "SecretId": "AWS::SecretsManager::Secret",
    "ReplicationGroupId": "AWS::ElastiCache::ReplicationGroup",
    "HealthCheckId": "AWS::Route53::HealthCheck", "HostedZoneId": "AWS::Route53::HostedZone",
    "KeyId": "AWS::KMS::Key", "TrailName": "AWS::CloudTrail::Trail",
}
_MAX_EVENTS = 100_000
_NO_RECORD = {"LookupEvents"}  # deliberately not recorded: repeated lookups stay stable


def _resources(params: Any, out: list[tuple[str, str]], depth: int = 0) -> None:
    if depth > 3:
        return
    if isinstance(params, dict):
        for k, v in params.items():
            base = re.sub(r"(\.member)?(\.\d+)+$", "", str(k))
            if base.endswith(".member"):
                base = base[: -len(".member")]
            if _RESOURCE_KEY.search(base) and base not in _NOT_RESOURCES:
                for item in as_list(v):
                    if isinstance(item, str) and item:
                        out.append((base, item))
            elif isinstance(v, (dict, list)):
                _resources(v, out, depth + 1)
    elif isinstance(params, list):
        for item in params:
            _resources(item, out, depth + 1)


def _request_params(resp: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for k, v in (getattr(resp, "querystring", None) or {}).items():
        params[k] = v[0] if isinstance(v, list) and len(v) == 1 else v
    body = getattr(resp, "body", None)
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.startswith("{"):
        try:
            loaded = json.loads(body)
            if isinstance(loaded, dict):
                params.update(loaded)
        except ValueError:
            pass
    path = getattr(resp, "path", "") or ""
    m = re.search(r"/(healthcheck|hostedzone)/([^/]+)", path)
    if m:
        params["HealthCheckId" if m.group(1) == "healthcheck" else "HostedZoneId"] = m.group(2)
    return params


def _user(resp: Any) -> tuple[str, str]:
    """(user name, access key id) of the caller; IAM user name when the key belongs to one."""
    auth = (getattr(resp, "headers", None) or {}).get("Authorization", "") or ""
    m = re.search(r"Credential=([^/,\s]+)/", auth)
    akid = m.group(1) if m else ""
    if akid:
        try:
            from moto.iam.models import iam_backends

            for partition in ("aws",):
                iam = iam_backends[resp.current_account][partition]
                for user in iam.users.values():
                    if any(k.access_key_id == akid for k in user.access_keys):
                        return user.name, akid
        except Exception:
            pass
    return "root", akid


def _record(resp: Any, status: int) -> None:
    try:
        action = resp._get_action()
    except Exception:
        return
    if not action or action in _NO_RECORD:
        return
    service = getattr(resp, "service_name", "") or ""
    region = "us-east-1" if service in _GLOBAL_SERVICES else (resp.region or "us-east-1")
    pairs: list[tuple[str, str]] = []
    try:
        _resources(_request_params(resp), pairs)
    except Exception:
        pass
    seen: set[tuple[str, str]] = set()
    resources = []
    for key, value in pairs:
        if (key, value) in seen:
            continue
        seen.add((key, value))
        resources.append({"ResourceType": _RESOURCE_TYPES.get(key, key), "ResourceName": value,
                          "_param": key})
    username, akid = _user(resp)
    read_only = bool(re.match(r"(Describe|Get|List|Lookup|Head)", action))
    event = {
        "EventId": str(uuid.uuid4()), "EventName": action, "ReadOnly": read_only,
        "AccessKeyId": akid, "EventTime": now(), "EventSource": f"{service}.amazonaws.com",
        "Username": username, "Resources": resources, "Region": region,
        "AccountId": resp.current_account, "ErrorCode": None if status < 400 else str(status),
    }
    with LOCK:
        RECORDS.events.append(event)
        if len(RECORDS.events) > _MAX_EVENTS:  # AWS keeps 90 days; we keep the newest N
            del RECORDS.events[: len(RECORDS.events) - _MAX_EVENTS]


def _public(event: dict[str, Any]) -> dict[str, Any]:
    resources = [{"ResourceType": r["ResourceType"], "ResourceName": r["ResourceName"]}
                 for r in event["Resources"]]
    detail = {
        "eventVersion": "1.09", "eventID": event["EventId"], "eventName": event["EventName"],
        "eventSource": event["EventSource"], "eventTime": event["EventTime"].strftime(
            "%Y-%m-%dT%H:%M:%SZ"), "awsRegion": event["Region"],
        "readOnly": event["ReadOnly"], "recipientAccountId": event["AccountId"],
        "userIdentity": {"type": "Root" if event["Username"] == "root" else "IAMUser",
                         "userName": event["Username"], "accessKeyId": event["AccessKeyId"],
                         "accountId": event["AccountId"]},
        # only identifiers, never the whole request: secrets must not leak into the trail
        "requestParameters": {r["_param"]: r["ResourceName"] for r in event["Resources"]},
        "managementEvent": True, "eventType": "AwsApiCall",
    }
    if event["ErrorCode"]:
        detail["errorCode"] = event["ErrorCode"]
    return {
        "EventId": event["EventId"], "EventName": event["EventName"],
        "ReadOnly": "true" if event["ReadOnly"] else "false",
        "AccessKeyId": event["AccessKeyId"], "EventTime": event["EventTime"].timestamp(),
        "EventSource": event["EventSource"], "Username": event["Username"],
        "Resources": resources, "CloudTrailEvent": json.dumps(detail),
    }


def _time(value: Any) -> Optional[_dt.datetime]:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
    text = str(value)
    try:
        return _dt.datetime.fromtimestamp(float(text), _dt.timezone.utc)
    except ValueError:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


def _matches(event: dict[str, Any], key: str, value: str) -> bool:
    if key == "EventId":
        return event["EventId"] == value
    if key == "EventName":
        return event["EventName"] == value
    if key == "ReadOnly":
        return str(event["ReadOnly"]).lower() == value.lower()
    if key == "Username":
        return event["Username"] == value
    if key == "AccessKeyId":
        return event["AccessKeyId"] == value
    if key == "EventSource":
        return event["EventSource"] == value
    if key == "ResourceType":
        return any(r["ResourceType"] == value for r in event["Resources"])
    if key == "ResourceName":
        return any(r["ResourceName"] == value for r in event["Resources"])
    return False
