"""Route 53: a health check on this site's node API and its half of the failover record.

Both stacks write the same record name: PRIMARY in `production`, SECONDARY in
`production-dr`. `recovery failover` moves traffic by inverting the primary's health check
(so Route 53 answers with SECONDARY), which works with the primary region gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stack_config import Dns

TTL_SECONDS = 60
INTERVAL_SECONDS = 10
FAILURE_THRESHOLD = 3


@dataclass
class DnsFailoverArgs:
    dns: Dns
    role: str
    stack: str


class DnsFailover(pulumi.ComponentResource):
    health_check: aws.route53.HealthCheck
    record: aws.route53.Record

    def __init__(self, name: str, args: DnsFailoverArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("xai:dr:DnsFailover", name, None, opts)
        d = args.dns
        self.health_check = aws.route53.HealthCheck(
            f"{name}-health",
            type="HTTPS",
            fqdn=d.node_api_fqdn,
            port=443,
            resource_path=d.health_check_path,
            request_interval=INTERVAL_SECONDS,
            failure_threshold=FAILURE_THRESHOLD,
            measure_latency=True,
            enable_sni=True,
            tags={"Name": f"{args.stack}-node-api"},
            # `recovery failover` inverts this check to move traffic and `failback` restores
            # it. A routine `pulumi up` during an incident must not silently undo a failover.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["invertHealthcheck"]),
        )
        failover_type = "PRIMARY" if args.role == "primary" else "SECONDARY"
        self.record = aws.route53.Record(
            f"{name}-record",
            zone_id=d.zone_id,
            name=d.record_name,
            type="CNAME",
            ttl=TTL_SECONDS,
            records=[d.node_api_fqdn],
            set_identifier=f"{args.stack}-{failover_type.lower()}",
            failover_routing_policies=[{"type": failover_type}],
            health_check_id=self.health_check.id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"health_check_id": self.health_check.id})
