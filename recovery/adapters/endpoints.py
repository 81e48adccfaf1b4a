"""Where clients find a site's database: the DB secret's host/port and the SSM endpoints parameter.

The secret may be a replica (read-only): writes go through its primary region, and when that region
is down the replica is promoted first. Nothing here prints: ``on_primary_down`` is told why.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from recovery import redact
from recovery.aws import client, error_code
from recovery.stack import StackOutputs


def read_secret_doc(outputs: StackOutputs) -> dict[str, Any]:
    """The DB secret's JSON document (AWSCURRENT), registered for redaction, password included."""
    sm = client("secretsmanager", outputs.region)
    raw = sm.get_secret_value(SecretId=outputs.db_secret_arn, VersionStage="AWSCURRENT")["SecretString"]
    redact.register(raw)
    doc = json.loads(raw)
    if isinstance(doc, dict) and "password" in doc:
        redact.register(str(doc["password"]))
    return dict(doc)


def write_secret_doc(outputs: StackOutputs, doc: dict[str, Any],
                     on_primary_down: Callable[[str], None] = lambda _m: None, *,
                     primary_region_reachable: bool = True) -> str:
    """Store ``doc`` as the DB secret; returns how (which region, replica promoted or not).
    ``primary_region_reachable=False`` (the failover found the peer site unreachable) does not try
    the secret's primary region at all: a call into a lost region only waits out its timeouts."""
    text = json.dumps(doc, sort_keys=True)
    sm = client("secretsmanager", outputs.region)
    primary_region = sm.describe_secret(SecretId=outputs.db_secret_arn).get("PrimaryRegion") or outputs.region
    if primary_region != outputs.region and not primary_region_reachable:
        on_primary_down(f"the DB secret's primary region {primary_region} is presumed down (the peer site is "
                        f"unreachable); promoting the replica in {outputs.region}")
    elif primary_region == outputs.region:
        sm.put_secret_value(SecretId=outputs.db_secret_arn, SecretString=text)
        return f"updated in {outputs.region}"
    else:
        try:
            # A replica is read-only: write through the secret's primary region (replication brings it here).
            client("secretsmanager", primary_region).put_secret_value(
                SecretId=outputs.db_secret_arn.replace(f":{outputs.region}:", f":{primary_region}:"), SecretString=text)
            return f"updated in {primary_region}"
        except Exception as exc:  # noqa: BLE001 - that region is down: promote the replica, then write here
            on_primary_down(f"the DB secret's primary region {primary_region} is unreachable ({error_code(exc) or exc}); "
                            f"promoting the replica in {outputs.region}")
    sm.stop_replication_to_replica(SecretId=outputs.db_secret_arn)
    sm.put_secret_value(SecretId=outputs.db_secret_arn, SecretString=text)
    return f"replica promoted and updated in {outputs.region}"


def replica_missing(outputs: StackOutputs, region: str) -> bool:
    """Whether ``outputs``' DB secret, a primary secret, no longer replicates into ``region`` (a
    failover with its region down promoted the replica there)."""
    d = client("secretsmanager", outputs.region).describe_secret(SecretId=outputs.db_secret_arn)
    if d.get("PrimaryRegion") not in (None, outputs.region):
        return False  # itself a replica: nothing to re-join from here
    return not any(r.get("Region") == region and r.get("Status") != "Failed" for r in d.get("ReplicationStatus") or [])


def rejoin_replica(outputs: StackOutputs, region: str) -> str:
    """Replicate the DB secret into ``region`` again, over the standalone copy a failover promoted
    there, so that later rotations reach that site (the failback's repoint)."""
    client("secretsmanager", outputs.region).replicate_secret_to_regions(
        SecretId=outputs.db_secret_arn, AddReplicaRegions=[{"Region": region}], ForceOverwriteReplicaSecret=True)
    return f"replication into {region} restored"


def read_parameter(outputs: StackOutputs) -> dict[str, Any]:
    """The SSM endpoints parameter (``endpoint_parameter_name``) as JSON."""
    value = client("ssm", outputs.region).get_parameter(Name=outputs.endpoint_parameter_name)["Parameter"]["Value"]
    return dict(json.loads(value))


def write_parameter(outputs: StackOutputs, doc: dict[str, Any]) -> None:
    client("ssm", outputs.region).put_parameter(Name=outputs.endpoint_parameter_name, Type="String", Overwrite=True,
                                                Value=json.dumps(doc, sort_keys=True))


__all__ = ["read_secret_doc", "write_secret_doc", "replica_missing", "rejoin_replica", "read_parameter",
           "write_parameter"]
