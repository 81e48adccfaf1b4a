"""S3 transfers: streamed multipart upload through s3transfer, streamed single-stream download.

Upload: boto3's managed transfer (s3transfer) reads our non-seekable compressed stream in
RECOVERY_PART_SIZE_MB parts and uploads up to RECOVERY_UPLOAD_CONCURRENCY in parallel; at most
concurrency + 2 parts are buffered, so memory is bounded whatever the dump size. On any failure s3transfer aborts
the multipart upload; `upload_stream` then also sweeps any upload left open for the key.
A run that dies without either (SIGKILL, power loss) leaves its upload open: `abort_uploads`
with a prefix is the sweep the next backup runs under its lock (runbooks/backup.py).

Download: one GetObject stream read in chunks. Against moto a single stream is far faster
than parallel ranged GETs (see ENVIRONMENT.md); against AWS it is still ample for verify.
botocore retries a request until its headers arrive, never a body cut off halfway: `iter_object`
resumes such a body with a ranged GET pinned to the same object version (or its ETag), so the
consumer sees one continuous stream, within the same attempt budget as botocore's retries.
"""

from __future__ import annotations

import http.client
import io
import logging
import uuid
from datetime import datetime
from typing import IO, Any, Callable, Iterator

import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError

from recovery import knobs
from recovery.aws import aws_error, error_code, max_attempts
from recovery.errors import AwsAccessError

log = logging.getLogger(__name__)

MB = 1024 * 1024
DOWNLOAD_CHUNK = 1 * MB
UPLOAD_TOKEN = "recovery-upload"


def transfer_config(streams: int = 1) -> TransferConfig:
    """The knobs as they are now (recovery/knobs.py validates their ranges). ``streams`` uploads
    running at once (a parallel backup's parts) share the concurrency: each buffered part is
    RECOVERY_PART_SIZE_MB of memory, and N uploads with the full concurrency each buffered N times it."""
    part_size = knobs.int_value("RECOVERY_PART_SIZE_MB") * MB
    concurrency = max(1, knobs.int_value("RECOVERY_UPLOAD_CONCURRENCY") // max(1, streams))
    cfg = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                         max_concurrency=concurrency, use_threads=True)
    # s3transfer's bound on buffered parts for non-seekable streams (default 10).
    cfg.max_in_memory_upload_chunks = concurrency + 2
    return cfg


def sse_args(kms_key_id: str) -> dict[str, str]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}


def upload_stream(s3: Any, bucket: str, key: str, stream: IO[bytes] | io.RawIOBase, *, kms_key_id: str,
                  content_type: str, metadata: dict[str, str] | None = None,
                  on_bytes: Callable[[int], None] | None = None, streams: int = 1) -> dict[str, Any]:
    """Upload `stream` to s3://bucket/key with SSE-KMS; return head_object of the result.

    The object carries a fresh token (metadata ``recovery-upload``): when the reply to the final
    request is lost and botocore's retry fails (CompleteMultipartUpload of an upload that already
    completed answers NoSuchUpload), the token in the object says the upload did land.
    """
    token = uuid.uuid4().hex
    extra = {**sse_args(kms_key_id), "ContentType": content_type, "Metadata": {**(metadata or {}), UPLOAD_TOKEN: token}}
    try:
        s3.upload_fileobj(stream, bucket, key, ExtraArgs=extra, Config=transfer_config(streams), Callback=on_bytes)
    except Exception:  # noqa: BLE001 - re-raised; first see whether the upload landed anyway
        landed = _landed(s3, bucket, key, token)
        if landed is not None:
            log.warning("the upload of %s completed although its reply was lost", key)
            return landed
        abort_open_uploads(s3, bucket, key)
        raise
    except BaseException:  # Ctrl-C, SIGTERM: no more requests than the abort
        abort_open_uploads(s3, bucket, key)
        raise
    return dict(s3.head_object(Bucket=bucket, Key=key))


def _landed(s3: Any, bucket: str, key: str, token: str) -> dict[str, Any] | None:
    """head_object of s3://bucket/key if it is the object this upload (`token`) wrote, else None."""
    try:
        head = dict(s3.head_object(Bucket=bucket, Key=key))
    except Exception:  # noqa: BLE001 - absent or unknown: not known to have landed
        return None
    return head if head.get("Metadata", {}).get(UPLOAD_TOKEN) == token else None


def abort_open_uploads(s3: Any, bucket: str, key: str) -> int:
    """Abort every multipart upload still open for `key`; returns how many were aborted."""
    return len(abort_uploads(s3, bucket, key, exact=True))


def abort_uploads(s3: Any, bucket: str, prefix: str, *, exact: bool = False,
                  started_before: datetime | None = None) -> list[str]:
    """Abort the multipart uploads open under `prefix` (only for that very key when `exact`, only
    those begun before `started_before` when given); the keys aborted. Best effort: a failure is
    logged, and the bucket's lifecycle rule aborts incomplete uploads in the end."""
    done: list[str] = []
    try:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for up in page.get("Uploads", []):
                if exact and up["Key"] != prefix:
                    continue
                if started_before is not None and up["Initiated"] >= started_before:
                    continue
                try:
                    s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
                except ClientError as exc:
                    if error_code(exc) != "NoSuchUpload":  # gone: our retried abort, or it completed
                        raise
                done.append(str(up["Key"]))
    except Exception as exc:  # noqa: BLE001 - best effort; the lifecycle rule also cleans up
        log.warning("could not sweep open multipart uploads under %s: %s", prefix, exc)
    if done:
        log.warning("aborted %d multipart upload(s) left open under %s: %s", len(done), prefix, ", ".join(done))
    return done


def delete_object_version(s3: Any, bucket: str, key: str, version_id: str | None) -> None:
    try:
        if version_id:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not delete the incomplete object %s: %s", key, exc)


# What a body cut off mid-stream raises (a reset, a timeout, a short read): urllib3's errors come
# wrapped by botocore (ResponseStreamingError, ReadTimeoutError) or raw, depending on where it broke.
_BODY_ERRORS = (HTTPClientError, IncompleteReadError, urllib3.exceptions.HTTPError, http.client.IncompleteRead,
                ConnectionError, TimeoutError)


def read_object(s3: Any, bucket: str, key: str) -> bytes | None:
    """The whole body of a small object (a manifest, a lock), None if there is none; other
    ClientErrors of the request are raised as they are. A body cut off is resumed as in iter_object."""
    try:
        _, chunks = iter_object(s3, bucket, key, map_errors=False)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return b"".join(chunks)


def iter_object(s3: Any, bucket: str, key: str, *, version_id: str | None = None,
                chunk: int = DOWNLOAD_CHUNK, map_errors: bool = True) -> tuple[dict[str, Any], Iterator[bytes]]:
    """(GetObject metadata, iterator of body chunks) for a single streamed download.

    A body that breaks off is resumed from the first byte not yet yielded (`Range`), pinned to
    `version_id` or else to the ETag first read (IfMatch), so the pieces are of one object.
    `map_errors=False`: the first request's ClientError is the caller's to map (e.g. NoSuchKey).
    """
    kw: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kw["VersionId"] = version_id
    where = f"s3://{bucket}/{key}"

    def get(**extra: Any) -> dict[str, Any]:
        try:
            return dict(s3.get_object(**kw, **extra))
        except Exception as exc:  # noqa: BLE001 - includes botocore's spent retries (connection errors)
            raise aws_error(exc, f"reading {where}", bucket=bucket) from None

    try:
        resp = dict(s3.get_object(**kw))
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, ClientError) and not map_errors:
            raise
        raise aws_error(exc, f"reading {where}", bucket=bucket) from None
    total = int(resp.get("ContentLength", -1))
    # IfMatch, not the VersionId just read: reading a named version needs s3:GetObjectVersion, which
    # a job role may lack; the ETag pins the same bytes.
    pin = {} if version_id else {"IfMatch": resp["ETag"]}

    def chunks() -> Iterator[bytes]:
        body, offset, attempt, budget = resp["Body"], 0, 1, max_attempts()
        try:
            while True:
                try:
                    for piece in body.iter_chunks(chunk):
                        offset += len(piece)
                        yield piece
                    return
                except _BODY_ERRORS as exc:
                    body.close()
                    if 0 <= total <= offset:
                        return  # everything arrived; only the connection's end was untidy
                    if attempt >= budget:
                        raise AwsAccessError(f"reading {where} broke off at byte {offset} of {total} "
                                             f"{budget} time(s) ({type(exc).__name__})",
                                             "retry; if it persists check the network and S3 health") from None
                    attempt += 1
                    log.warning("reading %s broke off at byte %d (%s); resuming (attempt %d of %d)",
                                where, offset, type(exc).__name__, attempt, budget)
                    body = get(**pin, Range=f"bytes={offset}-")["Body"]
        finally:
            body.close()

    return resp, chunks()
