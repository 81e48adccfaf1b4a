"""S3 transfers: streamed multipart upload through s3transfer, streamed single-stream download.

Upload: boto3's managed transfer (s3transfer) reads our non-seekable compressed stream in
RECOVERY_PART_SIZE_MB parts and uploads up to RECOVERY_UPLOAD_CONCURRENCY in parallel; at most
concurrency + 2 parts are buffered, so memory is bounded whatever the dump size. On any failure s3transfer aborts
the multipart upload; `upload_stream` then also sweeps any upload left open for the key.

Download: one GetObject stream read in chunks. Against moto a single stream is far faster
than parallel ranged GETs (see ENVIRONMENT.md); against AWS it is still ample for verify.
"""

from __future__ import annotations

import io
import logging
from typing import IO, Any, Callable, Iterator

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from recovery import knobs
from recovery.aws import aws_error

log = logging.getLogger(__name__)

MB = 1024 * 1024
DOWNLOAD_CHUNK = 1 * MB


def transfer_config() -> TransferConfig:
    """The knobs as they are now (recovery/knobs.py validates their ranges)."""
    part_size = knobs.int_value("RECOVERY_PART_SIZE_MB") * MB
    concurrency = knobs.int_value("RECOVERY_UPLOAD_CONCURRENCY")
    cfg = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                         max_concurrency=concurrency, use_threads=True)
    # s3transfer's bound on buffered parts for non-seekable streams (default 10).
    cfg.max_in_memory_upload_chunks = concurrency + 2
    return cfg


def sse_args(kms_key_id: str) -> dict[str, str]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}


def upload_stream(s3: Any, bucket: str, key: str, stream: IO[bytes] | io.RawIOBase, *, kms_key_id: str,
                  content_type: str, metadata: dict[str, str] | None = None,
                  on_bytes: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Upload `stream` to s3://bucket/key with SSE-KMS; return head_object of the result."""
    extra = {**sse_args(kms_key_id), "ContentType": content_type, "Metadata": metadata or {}}
    try:
        s3.upload_fileobj(stream, bucket, key, ExtraArgs=extra, Config=transfer_config(), Callback=on_bytes)
    except BaseException:
        abort_open_uploads(s3, bucket, key)
        raise
    return dict(s3.head_object(Bucket=bucket, Key=key))


def abort_open_uploads(s3: Any, bucket: str, key: str) -> int:
    """Abort every multipart upload still open for `key`; returns how many were aborted."""
    n = 0
    try:
        resp = s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
        for up in resp.get("Uploads", []):
            if up["Key"] == key:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"])
                n += 1
    except Exception as exc:  # noqa: BLE001 - best effort; the lifecycle rule also cleans up
        log.warning("could not sweep open multipart uploads for %s: %s", key, exc)
    if n:
        log.warning("aborted %d multipart upload(s) left open for %s", n, key)
    return n


def delete_object_version(s3: Any, bucket: str, key: str, version_id: str | None) -> None:
    try:
        if version_id:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not delete the incomplete object %s: %s", key, exc)


def iter_object(s3: Any, bucket: str, key: str, *, version_id: str | None = None,
                chunk: int = DOWNLOAD_CHUNK) -> tuple[dict[str, Any], Iterator[bytes]]:
    """(GetObject metadata, iterator of body chunks) for a single streamed download."""
    kw: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kw["VersionId"] = version_id
    try:
        resp = s3.get_object(**kw)
    except ClientError as exc:
        raise aws_error(exc, f"reading s3://{bucket}/{key}", bucket=bucket) from None
    body = resp["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    return resp, chunks()
