"""Route 53: a health check on this site's node API and its half of the failover record.

Both stacks write the same record name: PRIMARY in `production`, SECONDARY in
`production-dr`. The PRIMARY record follows the CALCULATED check of `infra/traffic_control.py`
(node API up AND the traffic flag in the DR region says the primary serves), so `recovery
failover` moves traffic by flipping that flag, without Route 53's API. The SECONDARY record
follows the DR site's own node API check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stack_config import Dns
from traffic_control import TrafficControl, TrafficControlArgs

TTL_SECONDS = 60
INTERVAL_SECONDS = 10
FAILURE_THRESHOLD = 3


@dataclass
class DnsFailoverArgs:
    dns: Dns
    role: str
    stack: str
    global_cluster_id: str | None = None  # the primary's: it names the traffic flag


class DnsFailover(pulumi.ComponentResource):
    health_check: aws.route53.HealthCheck
    record: aws.route53.Record
    traffic: TrafficControl | None = None  # the primary's traffic flag and record check

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
            opts=pulumi.ResourceOptions(parent=self),
        )
        record_check: pulumi.Output[str] = self.health_check.id
        failover_type = "SECONDARY"
        if args.role == "primary":
            assert args.global_cluster_id, "a primary site names its global cluster (stack_config)"
            failover_type = "PRIMARY"
            self.traffic = TrafficControl(f"{name}-traffic", TrafficControlArgs(
                region=d.traffic_control_region, global_cluster_id=args.global_cluster_id,
                endpoint_health_check_id=self.health_check.id, stack=args.stack), opts=pulumi.ResourceOptions(parent=self))
            record_check = self.traffic.record_check.id
        self.record = aws.route53.Record(
            f"{name}-record",
            zone_id=d.zone_id,
            name=d.record_name,
            type="CNAME",
            ttl=TTL_SECONDS,
            records=[d.node_api_fqdn],
            set_identifier=f"{args.stack}-{failover_type.lower()}",
            failover_routing_policies=[{"type": failover_type}],
            health_check_id=record_check,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"health_check_id": self.health_check.id})
