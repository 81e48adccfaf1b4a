"""Which site serves traffic, moved and read without Route 53's API (a control plane in us-east-1).

The flag (infra/traffic_control.py): a CloudWatch alarm in the traffic-control region (the DR
region) that a Route 53 health check follows; the PRIMARY failover record's calculated check is
healthy only while the primary's endpoint answers AND the alarm is not in ALARM. So:

- ``set_traffic(outputs, on_dr)`` writes the flag's metric (the lasting state: the alarm treats
  missing data as "ignore", so it keeps it) and sets the alarm's state (so Route 53 sees it now,
  not at the next one-minute evaluation). Both are regional CloudWatch calls in the DR region.
- ``flag(outputs)`` reads the alarm's state there.
- ``dns_answer(outputs)`` asks DNS itself (Route 53's data plane, which answers everywhere during a
  regional outage): the emulator's DNS server in the local mode (the ``dns_server`` output), else
  the zone's authoritative name servers, never a cache.

Nothing here prints.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from recovery.aws import aws_error, client
from recovery.errors import SiteNotReadyError
from recovery.stack import StackOutputs

ON_DR, ON_PRIMARY = 1.0, 0.0
DNS_TIMEOUT_S = 3.0


def _control(outputs: StackOutputs) -> dict[str, Any]:
    tc = outputs.traffic_control or {}
    missing = [k for k in ("region", "alarm_name", "namespace", "metric_name", "dimensions") if not tc.get(k)]
    if missing:
        raise SiteNotReadyError(f"stack '{outputs.stack}' output traffic_control lacks {', '.join(missing)}",
                                "deploy the current infra program (`pulumi up`), which declares the traffic flag")
    return tc


def flag(outputs: StackOutputs) -> str:
    """The flag alarm's state: "ALARM" (traffic on the DR site), "OK" or "INSUFFICIENT_DATA" (the primary)."""
    tc = _control(outputs)
    try:
        alarms = client("cloudwatch", tc["region"]).describe_alarms(AlarmNames=[tc["alarm_name"]])["MetricAlarms"]
    except Exception as exc:  # noqa: BLE001 - one line for the operator
        raise aws_error(exc, f"reading the traffic flag {tc['alarm_name']} in {tc['region']}") from None
    if not alarms:
        raise SiteNotReadyError(f"the traffic flag alarm {tc['alarm_name']} does not exist in {tc['region']}",
                                "deploy the primary stack (`pulumi up`), which creates it")
    return str(alarms[0].get("StateValue"))


def traffic_on_dr(state: str) -> bool:
    return state == "ALARM"


def _wait_for_fresh_period(cw: Any, tc: dict[str, Any], say: Callable[[str], None]) -> None:
    """A flag changed inside the current evaluation period would be changed back by the alarm's next
    evaluation (the period's Maximum still holds the old value): wait for the next period first."""
    alarms = cw.describe_alarms(AlarmNames=[tc["alarm_name"]])["MetricAlarms"]
    if not alarms:
        return
    period = int(alarms[0].get("Period") or 60)
    changed = alarms[0].get("StateUpdatedTimestamp")
    now = time.time()
    if changed is not None and int(changed.timestamp()) // period == int(now) // period:
        wait = period - now % period + 0.5
        say(f"the traffic flag changed in this {period}s period: waiting {wait:.1f}s for the next one")
        time.sleep(wait)


def set_traffic(outputs: StackOutputs, on_dr: bool, reason: str, say: Callable[[str], None] = lambda _m: None) -> None:
    """Move traffic to the DR site (``on_dr``) or back to the primary."""
    tc = _control(outputs)
    cw = client("cloudwatch", tc["region"])
    try:
        _wait_for_fresh_period(cw, tc, say)
        cw.put_metric_data(Namespace=tc["namespace"], MetricData=[{
            "MetricName": tc["metric_name"], "Value": ON_DR if on_dr else ON_PRIMARY, "Unit": "Count",
            "StorageResolution": 1,
            "Dimensions": [{"Name": k, "Value": str(v)} for k, v in sorted(tc["dimensions"].items())]}])
        cw.set_alarm_state(AlarmName=tc["alarm_name"], StateValue="ALARM" if on_dr else "OK",
                           StateReason=reason[:1000])
    except Exception as exc:  # noqa: BLE001
        raise aws_error(exc, f"setting the traffic flag {tc['alarm_name']} in {tc['region']}") from None


# ------------------------------------------------------------------------------------------ DNS


def _authoritative(name: str) -> list[str]:
    """The IP addresses of the authoritative name servers of the zone holding ``name``."""
    import dns.resolver

    zone = dns.resolver.zone_for_name(name)
    ips: list[str] = []
    for ns in dns.resolver.resolve(zone, "NS"):
        ips += [str(a) for a in dns.resolver.resolve(str(ns), "A")]
    return ips


def dns_answer(outputs: StackOutputs) -> str | None:
    """The host name ``dns_record_name`` answers with now (its CNAME target, no trailing dot), or None
    when it has no answer. Raises SiteNotReadyError when no name server answers."""
    import dns.exception
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype

    name = outputs.dns_record_name.rstrip(".") + "."
    servers: list[tuple[str, int]]
    if outputs.dns_server:
        local_host, _, local_port = outputs.dns_server.rpartition(":")
        servers = [(local_host, int(local_port))]
    else:
        servers = [(ip, 53) for ip in _authoritative(name)]
    problems = []
    for host, port in servers:
        query = dns.message.make_query(name, dns.rdatatype.CNAME)
        try:
            resp = dns.query.udp(query, host, port=port, timeout=DNS_TIMEOUT_S)
        except (dns.exception.DNSException, OSError) as exc:
            problems.append(f"{host}:{port}: {type(exc).__name__}")
            continue
        if resp.rcode() == dns.rcode.NXDOMAIN:
            return None
        for rrset in resp.answer:
            if rrset.name == dns.name.from_text(name) and rrset.rdtype == dns.rdatatype.CNAME:
                return str(next(iter(rrset)).target).rstrip(".")
        return None
    raise SiteNotReadyError(f"no name server answered for {name} ({'; '.join(problems) or 'none known'})",
                            "check DNS from this host (dig " + name + ")")


def wait_for_answer(outputs: StackOutputs, want: str, *, timeout_s: float, interval_s: float = 1.0) -> str | None:
    """Poll DNS until it answers ``want`` (Route 53 follows a health check within its interval and
    failure threshold); returns the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = dns_answer(outputs)
        if answer == want.rstrip(".") or time.monotonic() >= deadline:
            return answer
        time.sleep(interval_s)


__all__ = ["flag", "traffic_on_dr", "set_traffic", "dns_answer", "wait_for_answer"]
