"""boto3 clients and the mapping of AWS failures to one-line errors.

Credentials come from boto3's standard chain only (env, profile, SSO, instance role). boto3
itself honours ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``), which is how the local
moto sandbox is reached; nothing here special-cases it. Retries use botocore's standard mode.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from recovery.errors import AwsAccessError, RecoveryError

MAX_POOL = 16


@lru_cache(maxsize=None)
def _session() -> boto3.session.Session:
    return boto3.session.Session()


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client for `service` in `region` (the stack's region), standard retries."""
    config = Config(
        region_name=region or None,
        retries={"mode": "standard", "max_attempts": int(os.environ.get("RECOVERY_AWS_MAX_ATTEMPTS", "5"))},
        max_pool_connections=MAX_POOL,
        connect_timeout=10,
        read_timeout=120,
    )
    try:
        return _session().client(service, config=config)
    except NoRegionError:
        raise AwsAccessError("no AWS region known", "set AWS_REGION or check the stack's 'region' output") from None


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
    if isinstance(exc, EndpointConnectionError):
        return AwsAccessError(f"cannot reach AWS while {doing}: {exc}", "check the network, region and AWS_ENDPOINT_URL")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        msg = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and bucket and "bucket" in doing):
            return AwsAccessError(f"bucket '{bucket}' does not exist ({doing})",
                                  "check the stack's backup_bucket_name output and the region")
        if code in _DENIED:
            return AwsAccessError(f"AWS denied access while {doing} ({code})",
                                  "check the IAM permissions of the credentials in use (recovery_role_arn)")
        if code in _NOT_FOUND:
            return AwsAccessError(f"not found while {doing} ({code}: {msg})", "check the stack outputs")
        return AwsAccessError(f"AWS error while {doing}: {code}: {msg}", "retry; if it persists check AWS health")
    if isinstance(exc, BotoCoreError):
        return AwsAccessError(f"AWS client error while {doing}: {exc}", "retry; rerun with --debug for details")
    return AwsAccessError(f"unexpected failure while {doing}: {type(exc).__name__}: {exc}", "rerun with --debug")
