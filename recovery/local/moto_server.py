"""moto in server mode as a stand-in for AWS, and a sandbox site provisioned as the stack would.

`MotoServer` runs moto's ThreadedMotoServer on a free local port. `provision_site` creates what
the infra program creates for backups (KMS key, versioned SSE-KMS bucket with a lifecycle rule,
the DB master secret) and returns a complete, contract-shaped outputs mapping. Resources the
backup runbooks do not touch (Aurora, Route 53, ...) get plausible placeholder identifiers here;
the local mode extends this as later runbooks need them.

The bucket's deny-non-TLS policy is deliberately NOT applied: moto ignores policy conditions, so
it would deny every call (see ENVIRONMENT.md).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

import boto3

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> "MotoServer":
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (and awscli) at this server with dummy credentials."""
        return {**DUMMY_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self, service: str, region: str = "us-east-1") -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def moto_env(server: MotoServer) -> Iterator[None]:
    """Temporarily point this process's boto3 at the server."""
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def provision_site(
    server: MotoServer,
    *,
    stack: str = "production",
    role: str = "primary",
    region: str = "us-east-1",
    bucket: str | None = None,
    db_host: str = "127.0.0.1",
    db_port: int = 5432,
    db_name: str = "xai_blockchain",
    db_user: str = "xaiadmin",
    db_password: str = "change-me",
    retention_days: int = 30,
    offsite_retention_days: int = 90,
    replication_source_bucket: str | None = None,
) -> dict[str, Any]:
    """Create one site's backup resources in moto; return its outputs as `pulumi stack output --json`."""
    account = "123456789012"
    suffix = "production" if role == "primary" else f"dr-{region}"
    bucket = bucket or f"xai-backups-{suffix}"
    from recovery.local.sandbox import OBJECTIVES, create_secret, create_vault

    vault = create_vault(server.endpoint, region, bucket, retention_days)
    key_arn = vault["key_arn"]
    secret_arn = create_secret(server.endpoint, region, f"xai/{stack}/db-master",
                               {"username": db_user, "password": db_password})
    cache_secret = create_secret(server.endpoint, region, f"xai/{stack}/redis-auth", "redis-token")
    app_secret = create_secret(server.endpoint, region, f"xai/{stack}/app", "{}")
    outputs: dict[str, Any] = {
        "role": role,
        "region": region,
        "peer_stack": "production-dr" if role == "primary" else "production",
        "backup_bucket_name": bucket,
        "backup_bucket_arn": f"arn:aws:s3:::{bucket}",
        "backup_kms_key_arn": key_arn,
        "backup_retention_days": retention_days,
        "offsite_retention_days": offsite_retention_days,
        "backup_interval_minutes": {"database": 60, "chain": 360},
        "global_cluster_id": "xai-blockchain-global",
        "db_cluster_id": f"xai-blockchain-db-{suffix}",
        "db_cluster_arn": f"arn:aws:rds:{region}:{account}:cluster:xai-blockchain-db-{suffix}",
        "db_endpoint": db_host,
        "db_reader_endpoint": db_host,
        "db_port": db_port,
        "db_name": db_name,
        "db_username": db_user,
        "db_secret_arn": secret_arn,
        "db_instance_ids": [f"xai-blockchain-db-{suffix}-1"],
        "cache_replication_group_id": f"xai-blockchain-redis-{suffix}",
        "cache_endpoint": "127.0.0.1",
        "cache_port": 6379,
        "cache_secret_arn": cache_secret,
        "app_secret_arns": [app_secret],
        "dns_zone_id": "Z1234567890ABC",
        "dns_record_name": "node.xai.example.com",
        "health_check_id": "00000000-0000-0000-0000-000000000000",
        "node_api_url": "https://node.xai.example.com",
        "vpc_id": "vpc-0123456789abcdef0",
        "trail_name": "xai-blockchain-trail",
        "recovery_role_arn": f"arn:aws:iam::{account}:role/xai-recovery",
        "objectives": OBJECTIVES,
    }
    if role == "dr":
        outputs["replication_source_bucket_name"] = replication_source_bucket or "xai-backups-production"
        outputs["replication_role_arn"] = f"arn:aws:iam::{account}:role/s3-replication-role"
    return outputs
