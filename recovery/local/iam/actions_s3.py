"""S3 request -> IAM checks. moto hands the hook one ARN per bucket or object operation; the
operation is told apart by level (service, bucket, object), method and sub-resource, as S3's
REST API does, and some headers (copy source, tagging, object lock) need further actions."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from urllib.parse import unquote

from recovery.local.iam.call import _Call
from recovery.local.iam.facts import _Check

# (level, method) -> [(sub-resource in the query, API operation, IAM action)], first match wins;
# None matches a request without a sub-resource.
_S3_OPERATIONS: dict[tuple[str, str], list[tuple[str | None, str, str]]] = {
    ("service", "GET"): [(None, "ListBuckets", "s3:ListAllMyBuckets")],
    ("bucket", "HEAD"): [(None, "HeadBucket", "s3:ListBucket")],
    ("bucket", "GET"): [
        ("uploads", "ListMultipartUploads", "s3:ListBucketMultipartUploads"),
        ("location", "GetBucketLocation", "s3:GetBucketLocation"),
        ("lifecycle", "GetBucketLifecycleConfiguration", "s3:GetLifecycleConfiguration"),
        ("versioning", "GetBucketVersioning", "s3:GetBucketVersioning"),
        ("policyStatus", "GetBucketPolicyStatus", "s3:GetBucketPolicyStatus"),
        ("policy", "GetBucketPolicy", "s3:GetBucketPolicy"),
        ("website", "GetBucketWebsite", "s3:GetBucketWebsite"),
        ("acl", "GetBucketAcl", "s3:GetBucketAcl"),
        ("tagging", "GetBucketTagging", "s3:GetBucketTagging"),
        ("logging", "GetBucketLogging", "s3:GetBucketLogging"),
        ("cors", "GetBucketCors", "s3:GetBucketCORS"),
        ("notification", "GetBucketNotificationConfiguration", "s3:GetBucketNotification"),
        ("accelerate", "GetBucketAccelerateConfiguration", "s3:GetAccelerateConfiguration"),
        ("publicAccessBlock", "GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
        ("object-lock", "GetObjectLockConfiguration", "s3:GetBucketObjectLockConfiguration"),
        ("inventory", "GetBucketInventoryConfiguration", "s3:GetInventoryConfiguration"),
        ("versions", "ListObjectVersions", "s3:ListBucketVersions"),
        ("encryption", "GetBucketEncryption", "s3:GetEncryptionConfiguration"),
        ("replication", "GetBucketReplication", "s3:GetReplicationConfiguration"),
        ("ownershipControls", "GetBucketOwnershipControls", "s3:GetBucketOwnershipControls"),
        ("list-type", "ListObjectsV2", "s3:ListBucket"),
        (None, "ListObjects", "s3:ListBucket"),
    ],
    ("bucket", "PUT"): [
        ("versioning", "PutBucketVersioning", "s3:PutBucketVersioning"),
        ("encryption", "PutBucketEncryption", "s3:PutEncryptionConfiguration"),
        ("lifecycle", "PutBucketLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
        ("policy", "PutBucketPolicy", "s3:PutBucketPolicy"),
        ("replication", "PutBucketReplication", "s3:PutReplicationConfiguration"),
        ("ownershipControls", "PutBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
        ("publicAccessBlock", "PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ("object-lock", "PutObjectLockConfiguration", "s3:PutBucketObjectLockConfiguration"),
        ("tagging", "PutBucketTagging", "s3:PutBucketTagging"),
        ("acl", "PutBucketAcl", "s3:PutBucketAcl"),
        ("cors", "PutBucketCors", "s3:PutBucketCORS"),
        ("website", "PutBucketWebsite", "s3:PutBucketWebsite"),
        ("logging", "PutBucketLogging", "s3:PutBucketLogging"),
        ("notification", "PutBucketNotificationConfiguration", "s3:PutBucketNotification"),
        ("accelerate", "PutBucketAccelerateConfiguration", "s3:PutAccelerateConfiguration"),
        ("inventory", "PutBucketInventoryConfiguration", "s3:PutInventoryConfiguration"),
        (None, "CreateBucket", "s3:CreateBucket"),
    ],
    ("bucket", "DELETE"): [
        ("policy", "DeleteBucketPolicy", "s3:DeleteBucketPolicy"),
        ("tagging", "DeleteBucketTagging", "s3:PutBucketTagging"),
        ("website", "DeleteBucketWebsite", "s3:DeleteBucketWebsite"),
        ("cors", "DeleteBucketCors", "s3:PutBucketCORS"),
        ("lifecycle", "DeleteBucketLifecycle", "s3:PutLifecycleConfiguration"),
        ("publicAccessBlock", "DeletePublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ("encryption", "DeleteBucketEncryption", "s3:PutEncryptionConfiguration"),
        ("replication", "DeleteBucketReplication", "s3:PutReplicationConfiguration"),
        ("ownershipControls", "DeleteBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
        ("inventory", "DeleteBucketInventoryConfiguration", "s3:PutInventoryConfiguration"),
        (None, "DeleteBucket", "s3:DeleteBucket"),
    ],
    ("bucket", "POST"): [("delete", "DeleteObjects", "s3:DeleteObject"), (None, "PostObject", "s3:PutObject")],
    ("object", "GET"): [
        ("uploadId", "ListParts", "s3:ListMultipartUploadParts"),
        ("acl", "GetObjectAcl", "s3:GetObjectAcl"),
        ("tagging", "GetObjectTagging", "s3:GetObjectTagging"),
        ("legal-hold", "GetObjectLegalHold", "s3:GetObjectLegalHold"),
        ("retention", "GetObjectRetention", "s3:GetObjectRetention"),
        ("attributes", "GetObjectAttributes", "s3:GetObjectAttributes"),
        (None, "GetObject", "s3:GetObject"),
    ],
    ("object", "HEAD"): [(None, "HeadObject", "s3:GetObject")],
    ("object", "PUT"): [
        ("partNumber", "UploadPart", "s3:PutObject"),
        ("retention", "PutObjectRetention", "s3:PutObjectRetention"),
        ("legal-hold", "PutObjectLegalHold", "s3:PutObjectLegalHold"),
        ("acl", "PutObjectAcl", "s3:PutObjectAcl"),
        ("tagging", "PutObjectTagging", "s3:PutObjectTagging"),
        (None, "PutObject", "s3:PutObject"),
    ],
    ("object", "DELETE"): [
        ("uploadId", "AbortMultipartUpload", "s3:AbortMultipartUpload"),
        ("tagging", "DeleteObjectTagging", "s3:DeleteObjectTagging"),
        (None, "DeleteObject", "s3:DeleteObject"),
    ],
    ("object", "POST"): [
        ("uploads", "CreateMultipartUpload", "s3:PutObject"),
        ("uploadId", "CompleteMultipartUpload", "s3:PutObject"),
        ("restore", "RestoreObject", "s3:RestoreObject"),
        ("select", "SelectObjectContent", "s3:GetObject"),
    ],
}

# With ?versionId= AWS checks the version's own action.
_S3_VERSIONED = {
    "s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl", "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging", "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
}

# Headers of an object write that need a further permission in AWS.
_S3_OBJECT_HEADER_ACTIONS = {
    "x-amz-tagging": "s3:PutObjectTagging",
    "x-amz-object-lock-mode": "s3:PutObjectRetention",
    "x-amz-object-lock-legal-hold": "s3:PutObjectLegalHold",
}

_S3_SSE_KEYS = ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id")
_S3_NEW_OBJECT_OPERATIONS = {"PutObject", "CopyObject", "CreateMultipartUpload", "PostObject"}
_S3_PART_OPERATIONS = {"UploadPart", "UploadPartCopy", "CompleteMultipartUpload"}


def _s3_checks(call: _Call) -> tuple[str, list[_Check]] | None:
    # moto passes arn:aws:s3:::BUCKET[/KEY] (or arn:aws:s3:::* for ListBuckets), parsed its way.
    path = call.moto_resource.split(":::", 1)[1]
    bucket, _, key = path.partition("/")
    level = "service" if bucket == "*" else "object" if key else "bucket"
    found = _s3_operation(call, level)
    if found is None:
        return None
    operation, action = found
    if level == "service":
        return operation, [call.check("*", action)]
    if operation == "DeleteObjects":
        return operation, _s3_delete_objects(call, bucket)
    if operation == "PostObject":
        key = call.response.querystring.get("key", [""])[0]
    arn = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    copy_source = call.response.headers.get("x-amz-copy-source")
    if copy_source and operation in ("PutObject", "UploadPart"):
        operation = "CopyObject" if operation == "PutObject" else "UploadPartCopy"
    checks = [_s3_check(call, bucket, arn, action, _s3_context(call, operation, bucket, key))]
    if copy_source:
        checks.append(_s3_copy_source_check(call, copy_source))
    checks += [_s3_check(call, bucket, arn, extra) for extra in _s3_header_actions(call, operation)]
    return operation, checks


def _s3_operation(call: _Call, level: str) -> tuple[str, str] | None:
    for subresource, operation, action in _S3_OPERATIONS.get((level, call.response.method), []):
        if subresource is None or subresource in call.query:
            if "versionId" in call.query:
                action = _S3_VERSIONED.get(action, action)
            return operation, action
    return None


def _s3_header_actions(call: _Call, operation: str) -> list[str]:
    headers = call.response.headers
    if operation == "CreateBucket":
        locked = headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true"
        return ["s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning"] if locked else []
    if operation in _S3_NEW_OBJECT_OPERATIONS:
        return [action for header, action in _S3_OBJECT_HEADER_ACTIONS.items() if headers.get(header)]
    return []


def _s3_check(call: _Call, bucket: str, arn: str, action: str, context: dict[str, str] | None = None) -> _Check:
    s3_bucket = call.response.backend.buckets.get(bucket)
    policy = json.loads(s3_bucket.policy) if s3_bucket is not None and s3_bucket.policy else None
    return _Check(action, arn, context or {}, policy, s3_bucket.account_id if s3_bucket is not None else None)


def _s3_context(call: _Call, operation: str, bucket: str, key: str) -> dict[str, str]:
    headers = call.response.headers
    if operation in _S3_NEW_OBJECT_OPERATIONS:
        fields = call.response.querystring if operation == "PostObject" else {}
        values = {k: headers.get(k) or (fields.get(k) or [None])[0] for k in _S3_SSE_KEYS}
    elif operation in _S3_PART_OPERATIONS:
        values = _s3_upload_encryption(call, bucket)
    elif operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
        values = {f"s3:{k}": call.query.get(k) for k in ("prefix", "delimiter", "max-keys")}
        return {k: v for k, v in values.items() if v is not None}
    else:
        return {}
    # A missing header is a missing key, so StringNotEquals matches it (as in AWS).
    return {f"s3:{k}": v for k, v in values.items() if v}


def _s3_upload_encryption(call: _Call, bucket: str) -> dict[str, str | None]:
    """UploadPart/CompleteMultipartUpload carry no SSE headers: AWS applies the upload's own."""
    s3_bucket = call.response.backend.buckets.get(bucket)
    upload = s3_bucket.multiparts.get(call.query.get("uploadId", "")) if s3_bucket is not None else None
    if upload is None:
        return {}
    return {_S3_SSE_KEYS[0]: upload.sse_encryption, _S3_SSE_KEYS[1]: upload.kms_key_id}


def _s3_copy_source_check(call: _Call, copy_source: str) -> _Check:
    source, _, version = unquote(copy_source).lstrip("/").partition("?versionId=")
    source_bucket = source.split("/", 1)[0]
    return _s3_check(call, source_bucket, f"arn:aws:s3:::{source}",
                     "s3:GetObjectVersion" if version else "s3:GetObject")


def _s3_delete_objects(call: _Call, bucket: str) -> list[_Check]:
    try:
        objects = ET.fromstring(call.response.body).findall("{*}Object")
    except ET.ParseError:
        objects = []  # moto answers MalformedXML itself
    checks = []
    for obj in objects:
        key, version = obj.findtext("{*}Key", ""), obj.findtext("{*}VersionId")
        action = "s3:DeleteObjectVersion" if version else "s3:DeleteObject"
        checks.append(_s3_check(call, bucket, f"arn:aws:s3:::{bucket}/{key}", action))
    return checks or [_s3_check(call, bucket, f"arn:aws:s3:::{bucket}/*", "s3:DeleteObject")]
