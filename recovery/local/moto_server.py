"""moto in server mode over HTTPS, as the stand-in for AWS in the local mode and the tests.

`MotoServer` serves moto's app on a free local port with a throwaway certificate (see the class).
What runs inside it comes from the Pulumi program (`deploy.py`); who may do what is decided by
`iam/`, the IAM authorizer.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import logging
import os
import shutil
import ssl
import tempfile
import threading
import urllib.request
from typing import Any, Callable, TypeVar

import boto3

_T = TypeVar("_T")

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


_log = logging.getLogger(__name__)


def _https_server(app: Any, cert: str, key: str) -> Any:
    """cheroot serving ``app`` over TLS on a free 127.0.0.1 port (not yet bound).

    Not werkzeug's development server (moto's ThreadedMotoServer): that one closes the connection
    after every response and first waits 10 ms for more input, so each AWS call paid a new TCP
    connection, a TLS handshake and that wait, ~22 ms a call here against ~8 ms with cheroot's
    keep-alive (measured with 100 DescribeParameters calls from one client).
    """
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    from recovery.local.emulator.records import SOCKET_KEY

    class Gateway(wsgi.Gateway_10):  # type: ignore[misc]
        def get_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().get_environ()
            environ[SOCKET_KEY] = self.req.conn.socket
            return environ

    class Server(wsgi.Server):  # type: ignore[misc]
        def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
            # cheroot writes these to stderr; an emulator's log is where they belong
            _log.log(level, "%s", msg, exc_info=traceback)

    # Threads for concurrent requests (parallel part uploads, a runbook's threads, several CLIs);
    # an idle keep-alive connection holds none of them.
    server = Server(("127.0.0.1", 0), app, numthreads=32, request_queue_size=128, timeout=60)
    server.gateway = Gateway
    server.ssl_adapter = BuiltinSSLAdapter(cert, key)
    return server


class MotoServer:
    """moto's server app over HTTPS on a free 127.0.0.1 port.

    TLS makes aws:SecureTransport honest: the IAM authorizer (recovery/local/iam/) sees "true", so
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
        self._states: dict[str, tuple[Any, Any]] = {}  # reset_to's captured states

    def start(self) -> "MotoServer":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        # The program declares AWS Backup selections and vault policies, which moto lacks: every server
        # the program is deployed into (the local daemon's, the tests') answers them (emulator/backup.py).
        from recovery.local.emulator import backup

        backup.install()
        self._cert_dir = tempfile.mkdtemp(prefix="moto-tls-")
        self.ca_bundle, key_path = _self_signed_certificate(self._cert_dir)
        # The certificate is public (clients of any user, e.g. a command run unprivileged, must trust
        # it); the key stays the server's.
        os.chmod(self._cert_dir, 0o755)
        os.chmod(self.ca_bundle, 0o644)
        os.chmod(key_path, 0o600)
        self._server = _https_server(DomainDispatcherApplication(create_backend_app), self.ca_bundle, key_path)
        self._server.prepare()  # binds the port
        self._thread = threading.Thread(target=self._server.serve, name="moto-server", daemon=True)
        self._thread.start()
        host, port = self._server.bind_addr[:2]
        self.endpoint = f"https://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
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

    def reset_to(self, key: str, build: Callable[[], _T]) -> _T:
        """Reset the emulator to the state ``build()`` leaves an empty one in, and return a copy of
        build's result. The first call with a ``key`` runs ``build`` and captures that state; later
        ones restore it (emulator/snapshot.py), 0.2-0.6 s instead of a 4-9 s deployment. ``key`` must
        name everything ``build`` depends on."""
        from recovery.local.emulator import snapshot

        self.reset()
        if key not in self._states:
            result = build()
            self._states[key] = (snapshot.capture(), copy.deepcopy(result))
        else:
            state, _ = self._states[key]
            snapshot.restore(state)
        return copy.deepcopy(self._states[key][1])

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
