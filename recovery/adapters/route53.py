"""Route 53: the failover record pair of a stack's DNS name and the health checks that flip it.

Nothing here prints; a missing PRIMARY record is a SiteNotReadyError.
"""

from __future__ import annotations

from typing import Any

from recovery.aws import client
from recovery.errors import SiteNotReadyError
from recovery.stack import StackOutputs


def _r53(outputs: StackOutputs) -> Any:
    return client("route53", outputs.region)


def health_status(outputs: StackOutputs, hc_id: str) -> bool:
    """A health check passes when most of its checkers report success."""
    obs = _r53(outputs).get_health_check_status(HealthCheckId=hc_id)["HealthCheckObservations"]
    texts = [o.get("StatusReport", {}).get("Status", "") for o in obs]
    return sum(t.startswith("Success") for t in texts) * 2 > len(texts)


def failover_records(outputs: StackOutputs) -> dict[str, dict[str, Any]]:
    """PRIMARY / SECONDARY record sets of ``dns_record_name``."""
    name = outputs.dns_record_name.rstrip(".") + "."
    resp = _r53(outputs).list_resource_record_sets(HostedZoneId=outputs.dns_zone_id, StartRecordName=name)
    return {r["Failover"]: r for r in resp["ResourceRecordSets"]
            if r.get("Name", "").rstrip(".") == name.rstrip(".") and r.get("Failover")}


def primary_health_check_id(outputs: StackOutputs, primary: StackOutputs | None) -> str:
    """The primary site's health check: its stack's output, else (its outputs unreadable) the one
    the PRIMARY failover record of ``outputs``' DNS name is tied to."""
    if primary is not None:
        return primary.health_check_id
    rec = failover_records(outputs).get("PRIMARY")
    if not rec or not rec.get("HealthCheckId"):
        raise SiteNotReadyError(f"no PRIMARY failover record with a health check for {outputs.dns_record_name}",
                                "check the hosted zone's failover records")
    return str(rec["HealthCheckId"])


def hc_inverted(outputs: StackOutputs, hc_id: str) -> bool:
    return bool(_r53(outputs).get_health_check(HealthCheckId=hc_id)["HealthCheck"]["HealthCheckConfig"].get("Inverted"))


def set_inverted(outputs: StackOutputs, hc_id: str, inverted: bool) -> None:
    _r53(outputs).update_health_check(HealthCheckId=hc_id, Inverted=inverted)


__all__ = ["health_status", "failover_records", "primary_health_check_id", "hc_inverted", "set_inverted"]
