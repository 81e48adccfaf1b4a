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

import datetime
import ipaddress
import json
import logging
import os
import shutil
import ssl
import tempfile
import threading
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


def _self_signed_certificate(directory: str) -> tuple[str, str]:
    """Write a throwaway certificate for 127.0.0.1/localhost and its key; return (cert, key) paths.

    The certificate is its own CA, so the cert file doubles as the CA bundle clients trust.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class MotoServer:
    """moto's server app over HTTPS on a free 127.0.0.1 port.

    TLS makes aws:SecureTransport honest: the IAM authorizer (iam_authorizer.py) sees "true", so
    a bucket policy that denies insecure transport applies as in AWS. The certificate is
    self-signed and made per server; `ca_bundle` is its path, which `env()` hands on as
    AWS_CA_BUNDLE and `client()` as `verify=`. It is deleted by `stop()`.
    """

    def __init__(self) -> None:
        self.endpoint = ""
        self.ca_bundle = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._cert_dir = ""

    def start(self) -> "MotoServer":
        # moto's ThreadedMotoServer._server_entry, plus the ssl_context (it takes none itself).
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
        self._cert_dir = tempfile.mkdtemp(prefix="moto-tls-")
        self.ca_bundle, key_path = _self_signed_certificate(self._cert_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_bundle, key_path)
        self._server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app),
                                   threaded=True, request_handler=MotoRequestHandler, ssl_context=context)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint = f"https://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._cert_dir:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
            self._cert_dir = ""

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        context = ssl.create_default_context(cafile=self.ca_bundle)
        urllib.request.urlopen(req, timeout=10, context=context).read()

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (and awscli) at this server with dummy credentials."""
        return {**DUMMY_ENV, "AWS_ENDPOINT_URL": self.endpoint, "AWS_CA_BUNDLE": self.ca_bundle}

    def client(self, service: str, region: str = "us-east-1") -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint, verify=self.ca_bundle,
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
