"""Secrets Manager entries whose first value Pulumi generates and `recovery rotate` owns after.

The secret value is set once at creation. Later rotations by the recovery tool (AWSPENDING ->
AWSCURRENT) change it outside Pulumi, so the version's secret string is ignored for diffs:
otherwise the next `pulumi up` would roll every credential back to the original.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

# RDS master passwords may not contain '/', '\'', '"', '@' or spaces. ElastiCache auth
# tokens share most of that and forbid more, so this set is safe for both.
SAFE_SPECIALS = "!&#$^<>-"


def generated_password(name: str, parent: pulumi.Resource, length: int = 40) -> random.RandomPassword:
    return random.RandomPassword(
        name,
        length=length,
        special=True,
        override_special=SAFE_SPECIALS,
        min_special=2,
        min_numeric=2,
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result"]),
    )


def managed_secret(
    name: str,
    *,
    secret_name: str,
    description: str,
    kms_key_id: pulumi.Input[str] | None,
    value: pulumi.Input[Any],
    parent: pulumi.Resource,
    replica_region: str | None = None,
) -> aws.secretsmanager.Secret:
    """A secret plus its first version. `value` is a dict (stored as JSON) or a string."""
    secret = aws.secretsmanager.Secret(
        name,
        name=secret_name,
        description=description,
        kms_key_id=kms_key_id,
        recovery_window_in_days=30,
        # The replica keeps the credential readable in the DR region with the primary gone.
        # It uses the DR region's AWS-managed key: this stack cannot see the DR site's keys.
        replicas=[{"region": replica_region}] if replica_region else None,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    aws.secretsmanager.SecretVersion(
        f"{name}-initial",
        secret_id=secret.id,
        secret_string=pulumi.Output.secret(pulumi.Output.from_input(value)).apply(
            lambda v: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        ),
        opts=pulumi.ResourceOptions(parent=parent, ignore_changes=["secretString"]),
    )
    return secret
