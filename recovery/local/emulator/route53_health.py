"""Route 53: GetHealthCheckStatus that reflects Inverted, Disabled and a real probe.

AWS: checkers in several regions probe the endpoint; each observation's StatusReport starts with
'Success' or 'Failure'. Inverted=True flips the result (a healthy endpoint reports Failure, which
is how a runbook forces DNS failover to the SECONDARY record); Disabled=True makes Route 53
consider the check healthy whatever the endpoint does.

moto 5.2.5: always answers one observation with 'Success: HTTP Status Code: 200'.

This extension: computes the endpoint's health from the probe registered with
``set_health_probe`` (a callable or a URL fetched at request time; none registered = healthy),
applies Inverted, then Disabled, and answers three observations (us-east-1, us-west-2,
eu-west-1) with 'Success: ...' or 'Failure: ...'. DNS answers are not affected (moto does not
serve DNS).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from recovery.local.emulator.records import CONFIG, PROBES, now, patch

_CHECKERS = (("us-east-1", "15.177.2.1"), ("us-west-2", "15.177.10.1"), ("eu-west-1", "15.177.62.1"))


def install() -> None:
    from moto.route53.responses import Route53

    patch(Route53, "get_health_check_status", _get_health_check_status)


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


def health_check_healthy(health_check: Any) -> tuple[bool, str]:
    """(healthy, reason) of a moto HealthCheck as Route 53 would report it."""
    if getattr(health_check, "disabled", False):
        return True, "Success: health checking is disabled; Route 53 considers it healthy"
    probe = PROBES.get(health_check.id)
    if probe is None:
        endpoint_ok, detail = True, "HTTP Status Code 200 (no probe registered)"
    else:
        endpoint_ok, detail = _probe_healthy(probe)
    healthy = endpoint_ok != bool(getattr(health_check, "inverted", False))
    if health_check.inverted:
        detail = f"{detail}; the health check is inverted"
    return healthy, detail
