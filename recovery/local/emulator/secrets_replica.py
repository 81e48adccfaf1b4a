"""Secrets Manager: StopReplicationToReplica, which promotes a replica secret in its own region.

AWS: called in the replica's region, it removes the link to the primary secret and makes the
replica a standalone (writable) secret there, with the same ARN and its current versions. It is
how a DR site writes a replicated secret while the primary's region is down.

moto 5.2.5: not implemented (the call answers HTTP 500). A replica (``ReplicaSecret``) refuses
PutSecretValue, so a failover with us-east-1 gone could not repoint clients.

This extension: StopReplicationToReplica on a replica makes it a ``FakeSecret`` of its region
(a copy of the primary's current state: versions, stages, tags, KMS key) under the replica's ARN,
and drops the region from the primary's replica list. On a secret that is not a replica it answers
InvalidRequestException, as AWS does.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from recovery.local.emulator.records import patch


def install() -> None:
    from moto.secretsmanager.models import SecretsManagerBackend
    from moto.secretsmanager.responses import SecretsManagerResponse

    patch(SecretsManagerBackend, "stop_replication_to_replica", _stop_replication)
    patch(SecretsManagerResponse, "stop_replication_to_replica", _stop_replication_response)


def _stop_replication(backend: Any, secret_id: str) -> str:
    from moto.secretsmanager.exceptions import InvalidRequestException, SecretNotFoundException
    from moto.secretsmanager.models import ReplicaSecret

    if secret_id not in backend.secrets:
        raise SecretNotFoundException()
    replica = backend.secrets[secret_id]
    if not isinstance(replica, ReplicaSecret):
        raise InvalidRequestException("StopReplicationToReplica works only on a replica secret")
    promoted = copy.deepcopy(replica.source)
    promoted.region, promoted.arn, promoted.replicas = replica.region, replica.arn, []
    backend.secrets[replica.arn] = promoted
    if replica in replica.source.replicas:
        replica.source.replicas.remove(replica)
    return str(replica.arn)


def _stop_replication_response(resp: Any) -> str:
    return json.dumps({"ARN": resp.backend.stop_replication_to_replica(resp._get_param("SecretId"))})
