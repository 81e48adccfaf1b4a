"""Route 53: GetHealthCheckStatus that reflects Inverted, Disabled, a real probe, and the
CALCULATED and CLOUDWATCH_METRIC types.

AWS: checkers in several regions probe the endpoint; each observation's StatusReport starts with
'Success' or 'Failure'. Inverted=True flips the result (a healthy endpoint reports Failure, which
is how a runbook forces DNS failover to the SECONDARY record); Disabled=True makes Route 53
consider the check healthy whatever the endpoint does.

moto 5.2.5: always answers one observation with 'Success: HTTP Status Code: 200'.

This extension: computes the endpoint's health from the probe registered with
``set_health_probe`` (a callable or a URL fetched at request time; none registered = healthy),
applies Inverted, then Disabled, and answers three observations (us-east-1, us-west-2,
eu-west-1) with 'Success: ...' or 'Failure: ...'.

Check types (infra/traffic_control.py uses both; moto 5.2.5 drops ``AlarmIdentifier`` and
``InsufficientDataHealthStatus`` and never evaluates either type):

- CLOUDWATCH_METRIC: AWS follows the named alarm in its region: OK healthy, ALARM unhealthy,
  INSUFFICIENT_DATA per InsufficientDataHealthStatus (Healthy, Unhealthy, or LastKnownStatus: the
  last status, healthy for a new check). Here the alarm's state is read from moto's CloudWatch
  backend of that region, and both fields round-trip through Create/GetHealthCheck.
- CALCULATED: healthy when at least HealthThreshold of its ChildHealthChecks are (AWS's rule),
  each child computed as here, recursively.

``health_check_healthy`` is the one function both GetHealthCheckStatus and the emulator's DNS
server (route53_dns.py) use, as Route 53's checkers feed both its API and its answers.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from recovery.local.emulator.records import CONFIG, PROBES, now, patch, wrap

_CHECKERS = (("us-east-1", "15.177.2.1"), ("us-west-2", "15.177.10.1"), ("eu-west-1", "15.177.62.1"))


_LAST_KNOWN: dict[str, bool] = {}


def install() -> None:
    from moto.route53.models import HealthCheck
    from moto.route53.responses import Route53

    patch(Route53, "get_health_check_status", _get_health_check_status)
    wrap(Route53, "create_health_check", _create_health_check)
    original = HealthCheck.__dict__["health_check_config"]
    patch(HealthCheck, "health_check_config", property(lambda hc: _health_check_config(original, hc)))


def _create_health_check(original: Any, resp: Any) -> Any:
    result = original(resp)
    config = resp._get_param("HealthCheckConfig") or {}
    hc = result.result["HealthCheck"]
    alarm = config.get("AlarmIdentifier")
    hc.alarm_identifier = {"Region": alarm.get("Region"), "Name": alarm.get("Name")} if alarm else None
    hc.insufficient_data_health_status = config.get("InsufficientDataHealthStatus")
    return result


def _health_check_config(original: property, hc: Any) -> dict[str, Any]:
    assert original.fget is not None
    config = dict(original.fget(hc))
    if getattr(hc, "alarm_identifier", None):
        config["AlarmIdentifier"] = hc.alarm_identifier
    if getattr(hc, "insufficient_data_health_status", None):
        config["InsufficientDataHealthStatus"] = hc.insufficient_data_health_status
    return config


def _get_health_check_status(resp: Any) -> Any:
    from moto.core.responses import ActionResult

    hc = resp.backend.get_health_check(resp._get_param("HealthCheckId"))
    healthy, detail = health_check_healthy(hc)
    status = f"{'Success' if healthy else 'Failure'}: {detail}"
    observations = [
        {"Region": region, "IPAddress": ip, "StatusReport": {"Status": status, "CheckedTime": now()}}
        for region, ip in _CHECKERS
    ]
    return ActionResult({"HealthCheckObservations": observations})


def _probe_healthy(probe: Any) -> tuple[bool, str]:
    if isinstance(probe, bool):
        return probe, "set by the local environment"
    if isinstance(probe, str):
        try:
            req = urllib.request.Request(probe, method="GET")
            with urllib.request.urlopen(req, timeout=CONFIG.health_probe_timeout) as r:
                code = r.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except Exception as exc:
            return False, f"Failure: connection to {probe} failed: {exc.__class__.__name__}"
        return 200 <= code < 400, f"HTTP Status Code {code}"
    try:
        return bool(probe()), "probe"
    except Exception as exc:
        return False, f"probe raised {exc.__class__.__name__}"


def _alarm_state(region: str, name: str) -> str | None:
    from moto.cloudwatch.models import cloudwatch_backends

    for account in list(cloudwatch_backends.keys()):
        alarm = cloudwatch_backends[account][region].alarms.get(name)
        if alarm is not None:
            return str(alarm.state_value)
    return None


def _metric_healthy(hc: Any) -> tuple[bool, str]:
    alarm = getattr(hc, "alarm_identifier", None) or {}
    state = _alarm_state(str(alarm.get("Region")), str(alarm.get("Name"))) if alarm else None
    if state == "OK":
        return True, f"alarm {alarm.get('Name')} is OK"
    if state == "ALARM":
        return False, f"alarm {alarm.get('Name')} is in ALARM"
    rule = getattr(hc, "insufficient_data_health_status", None) or "LastKnownStatus"
    healthy = _LAST_KNOWN.get(hc.id, True) if rule == "LastKnownStatus" else rule == "Healthy"
    return healthy, f"alarm {alarm.get('Name')} has insufficient data ({state or 'not found'}): {rule}"


def _calculated_healthy(hc: Any) -> tuple[bool, str]:
    from moto.route53.models import route53_backends

    children = hc.children or []
    healthy = 0
    for child_id in children:
        child = next((b.health_checks[child_id] for acct in route53_backends.values() for b in acct.values()
                      if child_id in b.health_checks), None)
        if child is not None and health_check_healthy(child)[0]:
            healthy += 1
    need = hc.health_threshold if hc.health_threshold is not None else len(children)
    return healthy >= int(need), f"{healthy} of {len(children)} child health checks healthy (threshold {need})"


def health_check_healthy(health_check: Any) -> tuple[bool, str]:
    """(healthy, reason) of a moto HealthCheck as Route 53 would report it."""
    if getattr(health_check, "disabled", False):
        return True, "Success: health checking is disabled; Route 53 considers it healthy"
    probe = PROBES.get(health_check.id)
    if health_check.type_ == "CLOUDWATCH_METRIC":
        endpoint_ok, detail = _metric_healthy(health_check)
    elif health_check.type_ == "CALCULATED":
        endpoint_ok, detail = _calculated_healthy(health_check)
    elif probe is None:
        endpoint_ok, detail = True, "HTTP Status Code 200 (no probe registered)"
    else:
        endpoint_ok, detail = _probe_healthy(probe)
    healthy = endpoint_ok != bool(getattr(health_check, "inverted", False))
    _LAST_KNOWN[health_check.id] = healthy
    if health_check.inverted:
        detail = f"{detail}; the health check is inverted"
    return healthy, detail
