"""boto3 clients, the job role they run as, and the mapping of AWS failures to one-line errors.

Credentials come from boto3's standard chain only (env, profile, SSO, instance role): that is the
*base* identity. Every command then runs as its job's role (`act_as`): the stack's
`recovery_role_arns` name one role per job (infra/recovery_access.py), and the base identity assumes
it through the stack's own region's STS endpoint (never the global one, which lives in us-east-1).
botocore's assume-role fetcher refreshes the session before it expires, so a four-hour restore keeps
working. A base identity that already is the job's role (an instance profile) is used as it is.

boto3 itself honours ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``). A stack whose outputs
name its own AWS API (``aws_endpoint_url``, ``aws_ca_bundle``, and ``aws_credentials_file`` with
``aws_profile``: the local environment's emulator) is reached there instead, starting from that
profile of that shared credentials file; `act_as` reads them, so nothing rewrites ``os.environ``.
Retries use botocore's standard mode.

Every object the tool writes into a backup vault is encrypted under that vault's key: the vault's
bucket policy refuses any upload without those headers (infra/backup_vault.py). `vault_key()`
registers a bucket's key once its stack's outputs are read, and every S3 client adds the headers to
PutObject, CreateMultipartUpload and CopyObject into that bucket when the caller did not.
"""

from __future__ import annotations

import getpass
import socket
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, CredentialProvider, CredentialResolver, DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    NoRegionError,
    PartialCredentialsError,
)

from recovery import knobs
from recovery.errors import AwsAccessError, RecoveryError, StackOutputsError

MAX_POOL = 16
SESSION_SECONDS = 4 * 3600  # the roles' MaxSessionDuration (infra/recovery_access.py)

# The job role this process runs as now ({"job", "arn", "session"}); empty until a command says.
_CURRENT: dict[str, Any] = {}
_VAULT_KEYS: dict[str, str] = {}  # bucket -> the KMS key its policy demands
_SSE_OPERATIONS = ("PutObject", "CreateMultipartUpload", "CopyObject")
# The AWS API a stack's outputs name (endpoint_url, verify, credentials_file, profile); empty for a
# stack in AWS itself, whose clients follow boto3's own configuration.
_API: dict[str, str | None] = {}


@lru_cache(maxsize=None)
def _session() -> boto3.session.Session:
    if not _API.get("profile"):
        return boto3.session.Session()
    # An explicit profile makes botocore skip the AWS_* key variables, so the stack's identity wins.
    core = botocore.session.Session(profile=_API["profile"])
    if _API.get("credentials_file"):
        core.set_config_variable("credentials_file", _API["credentials_file"])
    return boto3.session.Session(botocore_session=core)


def _api_args() -> dict[str, Any]:
    """endpoint_url and verify for a client of the stack's own AWS API (nothing for real AWS)."""
    return {k: _API[k] for k in ("endpoint_url", "verify") if _API.get(k)}


def use_api_of(outputs: Any) -> None:
    """Reach the AWS API the stack's outputs name, if they name one (the local environment's)."""
    wanted = {"endpoint_url": getattr(outputs, "aws_endpoint_url", None), "verify": getattr(outputs, "aws_ca_bundle", None),
              "credentials_file": getattr(outputs, "aws_credentials_file", None),
              "profile": getattr(outputs, "aws_profile", None)}
    if not wanted["endpoint_url"] or wanted == _API:
        return
    forget_sessions()
    _API.update(wanted)


def max_attempts() -> int:
    """Attempts per AWS call (botocore's retries, and transfer.iter_object's resumed body reads)."""
    return knobs.int_value("RECOVERY_AWS_MAX_ATTEMPTS")


CONNECT_TIMEOUT_SECONDS = 10
# Control APIs (STS, RDS, EC2, IAM, Route 53, Secrets Manager...) answer in well under a second,
# also the asynchronous ones (they return at once and are polled), so they wait less than S3.
CONTROL_READ_TIMEOUT_SECONDS = 15.0


def _config(region: str | None, service: str, attempts: int | None = None) -> Config:
    """Every client's config (the STS fetcher's too). An endpoint that accepts connections and never
    answers fails after (retries + 1) x read timeout: 6 x 30 s for S3 and 6 x 15 s for the others at
    the defaults (STS measured: 91.6 s). botocore's `max_attempts` counts the retries."""
    read = knobs.value("RECOVERY_AWS_READ_TIMEOUT_SECONDS")
    return Config(
        region_name=region or None,
        retries={"mode": "standard", "max_attempts": attempts or max_attempts()},
        max_pool_connections=MAX_POOL,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        # S3 answers an UploadPart within seconds of its body and keeps a slow CompleteMultipartUpload
        # alive with whitespace; 30 s covers a loaded endpoint.
        read_timeout=read if service == "s3" else min(read, CONTROL_READ_TIMEOUT_SECONDS),
    )


def client(service: str, region: str | None = None, *, attempts: int | None = None) -> Any:
    """A boto3 client for `service` in `region` (the stack's region) as the current job's role.
    ``attempts`` lowers the retry budget for a read whose failure is an answer (a region away)."""
    knobs.check_endpoints()  # boto3 would fail mid-run with a bare ValueError
    session = _CURRENT.get("session") or _session()
    try:
        c = session.client(service, config=_config(region, service, attempts), **_api_args())
    except NoRegionError:
        raise AwsAccessError("no AWS region known", "set AWS_REGION or check the stack's 'region' output") from None
    if service == "s3":
        encrypt_into_vaults(c)
    return c


def vault_key(bucket: str, kms_key_arn: str) -> None:
    """Remember that objects written into `bucket` must be encrypted under `kms_key_arn`."""
    _VAULT_KEYS[bucket] = kms_key_arn


def encrypt_into_vaults(s3: Any) -> Any:
    """Make the S3 client `s3` send the vault's SSE-KMS headers on every write into a known vault."""
    for op in _SSE_OPERATIONS:
        s3.meta.events.register(f"provide-client-params.s3.{op}", _add_vault_key)
    return s3


def _add_vault_key(params: dict[str, Any], **_: Any) -> None:
    key = _VAULT_KEYS.get(str(params.get("Bucket", "")))
    if key and "ServerSideEncryption" not in params:
        params["ServerSideEncryption"] = "aws:kms"
        params["SSEKMSKeyId"] = key


# ------------------------------------------------------------------------------------ job roles


class _Fixed(CredentialProvider):
    METHOD = "assume-role"

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def load(self) -> Any:
        return self._credentials


@lru_cache(maxsize=None)
def _base_identity(region: str) -> str:
    knobs.check_endpoints()
    sts = _session().client("sts", config=_config(region, "sts"), **_api_args())
    try:
        return str(sts.get_caller_identity()["Arn"])
    except Exception as exc:  # noqa: BLE001 - mapped to a one-line error
        raise aws_error(exc, "finding out who the AWS credentials belong to") from None


def _is_role(identity: str, role_arn: str) -> bool:
    """arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION is a session of arn:aws:iam::ACCOUNT:role/NAME."""
    parts = identity.split(":", 5)
    if len(parts) < 6 or not parts[5].startswith("assumed-role/"):
        return False
    return role_arn.rsplit("/", 1)[-1] == parts[5].split("/")[1] and parts[4] == role_arn.split(":")[4]


@lru_cache(maxsize=None)
def _role_session(role_arn: str, region: str, job: str) -> boto3.session.Session:
    base = _session()
    source = base.get_credentials()
    if source is None:
        raise AwsAccessError(f"no AWS credentials to assume the {job} role with",
                             "configure the standard chain (AWS_PROFILE, env vars, SSO or an instance role)")
    core = botocore.session.Session()
    # The base session's loader has parsed endpoints.json, the partitions and the retry rules already:
    # sharing it (read-only caches of botocore's data files) saves parsing them again for every
    # client of this session, ~0.1-0.2 s of start-up on a loaded 2-core machine.
    core.register_component("data_loader", base._session.get_component("data_loader"))
    # The stack's own region's STS: the global endpoint lives in us-east-1, the region we may be losing.
    core.set_config_variable("sts_regional_endpoints", "regional")
    who = f"{getpass.getuser()}@{socket.gethostname()}"[:40]
    fetcher = AssumeRoleCredentialFetcher(
        # our retry budget and timeouts for AssumeRole too: botocore's default client (60 s + 60 s,
        # legacy retries) would outlast ours, and gave up after 3 faults in the chaos test
        client_creator=lambda service, **kw: base.client(service, region_name=region, config=_config(region, service),
                                                         **{**_api_args(), **kw}),
        source_credentials=source,
        role_arn=role_arn,
        extra_args={"RoleSessionName": f"recovery-{job}-{who}".replace("@", "-")[:64],
                    "DurationSeconds": SESSION_SECONDS},
    )
    creds = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")
    core.register_component("credential_provider", CredentialResolver(providers=[_Fixed(creds)]))
    return boto3.session.Session(botocore_session=core, region_name=region)


def act_as(outputs: Any, job: str) -> None:
    """From now on every client of this process runs as `job`'s role of the stack `outputs` describe."""
    arn = outputs.recovery_role_arns.get(job)
    if not arn:
        raise StackOutputsError(f"stack '{outputs.stack}' names no role for the {job} job in recovery_role_arns",
                                "deploy the current infra program (`pulumi up`), which creates one role per job")
    use_api_of(outputs)
    vault_key(outputs.backup_bucket_name, outputs.backup_kms_key_arn)
    if _is_role(_base_identity(outputs.region), arn):
        _CURRENT.clear()
        _CURRENT.update(job=job, arn=arn, session=None)
        return
    _CURRENT.update(job=job, arn=arn, session=_role_session(arn, outputs.region, job))


@contextmanager
def acting_as(outputs: Any, job: str) -> Iterator[None]:
    """`act_as` for a block (a drill runs several jobs' runbooks one after the other)."""
    before = dict(_CURRENT)
    act_as(outputs, job)
    try:
        yield
    finally:
        _CURRENT.clear()
        _CURRENT.update(before)


def current_job() -> str | None:
    return _CURRENT.get("job")


def forget_sessions() -> None:
    """Drop the cached sessions and identities: the credentials this process starts from changed."""
    _CURRENT.clear()
    _API.clear()
    _session.cache_clear()
    _role_session.cache_clear()
    _base_identity.cache_clear()


_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404", "NotFound", "ResourceNotFoundException"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AccessDeniedException", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException", "KMS.AccessDeniedException"}


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def aws_error(exc: BaseException, doing: str, *, bucket: str | None = None) -> RecoveryError:
    """A one-line AwsAccessError for an AWS failure while `doing` something."""
    if isinstance(exc, RecoveryError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AwsAccessError(f"no AWS credentials while {doing}",
                              "configure the standard chain (AWS_PROFILE, env vars, SSO or an instance role)")
    if isinstance(exc, ReadTimeoutError):
        return AwsAccessError(f"AWS did not answer while {doing} ({exc})",
                              "check AWS health, the network and AWS_ENDPOINT_URL; RECOVERY_AWS_READ_TIMEOUT_SECONDS "
                              "sets how long to wait")
    if isinstance(exc, EndpointConnectionError):
        if _API.get("endpoint_url"):
            return AwsAccessError(f"cannot reach the stack's AWS API at {_API['endpoint_url']} while {doing}",
                                  "is the local environment running? `recovery local status`; restart it with "
                                  "`recovery local down && recovery local up`")
        return AwsAccessError(f"cannot reach AWS while {doing}: {exc}", "check the network, region and AWS_ENDPOINT_URL")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        msg = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and bucket and "bucket" in doing):
            return AwsAccessError(f"bucket '{bucket}' does not exist ({doing})",
                                  "check the stack's backup_bucket_name output and the region")
        if code in ("403", "AccessDenied") and bucket and "bucket" in doing:
            # S3 answers 403, not 404, for a bucket the caller may not list, whether or not it exists.
            return AwsAccessError(f"cannot use bucket '{bucket}' ({doing}): it does not exist, or the "
                                  f"{current_job() or 'job'} role may not list it",
                                  "check the stack's backup_bucket_name output and the role's policy (recovery_role_arns)")
        if code in _DENIED:
            return AwsAccessError(f"AWS denied access while {doing} ({code})",
                                  f"check the {current_job() or 'job'} role's policy (recovery_role_arns) and the bucket policy")
        if code in _NOT_FOUND:
            return AwsAccessError(f"not found while {doing} ({code}: {msg})", "check the stack outputs")
        return AwsAccessError(f"AWS error while {doing}: {code}: {msg}", "retry; if it persists check AWS health")
    if isinstance(exc, BotoCoreError):
        return AwsAccessError(f"AWS client error while {doing}: {exc}", "retry; rerun with --debug for details")
    return AwsAccessError(f"unexpected failure while {doing}: {type(exc).__name__}: {exc}", "rerun with --debug")
