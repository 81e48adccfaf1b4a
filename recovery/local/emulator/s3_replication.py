"""S3 replication (CRR/SRR) of new object versions, which moto stores but never carries out.

AWS: with a replication configuration on a versioned bucket, every new object version whose key
matches an Enabled rule (Filter Prefix / Tag / And, or the V1 rule Prefix) is copied
asynchronously to the rule's destination bucket: same key, same version ID, same data, ETag, user
metadata, content headers, tags and Last-Modified; storage class from Destination.StorageClass
when given. SSE-KMS objects are only replicated when the rule has
SourceSelectionCriteria.SseKmsEncryptedObjects Enabled, and the replica is encrypted with
Destination.EncryptionConfiguration.ReplicaKmsKeyID. HEAD/GET on the source then report
``x-amz-replication-status: PENDING`` and later ``COMPLETED`` (``FAILED`` when the destination is
unusable); the replica reports ``REPLICA``. Replicas are not replicated further. Delete markers
(DELETE without a version id) are replicated only when the rule's DeleteMarkerReplication is
Enabled; deletes of a specific version never are. Objects that match no rule get no replication
status.

moto 5.2.5: stores the configuration (get_bucket_replication round-trips it) but never copies
anything, and has no replication status: FakeKey.response_dict has no x-amz-replication-status
header at all.

This extension: wraps S3Backend.put_object (used by PutObject, CopyObject and
CompleteMultipartUpload) to note each new source version, and S3Response._key_response so the
replica is made *after* moto has set metadata/tags/ACL on the new version, still before the HTTP
response is sent. Replication is synchronous by default (PENDING -> COMPLETED collapsed: the first
HEAD already reads COMPLETED); with ``configure(s3_replication_delay=s)`` it runs on a timer
thread and HEAD reads PENDING until then. FakeKey.response_dict gains the
x-amz-replication-status header. Delete markers are replicated per DeleteMarkerReplication. Calls
made directly on the backend (outside an HTTP request) are replicated immediately.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from recovery.local.emulator.records import CONFIG, as_list, patch, wrap

log = logging.getLogger(__name__)

# Per request thread: ``s3_pending`` collects the versions a request made (replicated when the
# request is done), ``s3_replicating`` marks the replica's own put so it is not replicated again.
_TLS = threading.local()


def install() -> None:
    from moto.s3.models import FakeKey, S3Backend
    from moto.s3.responses import S3Response

    wrap(S3Backend, "put_object", _put_object)
    wrap(S3Response, "_key_response", _key_response)
    wrap(S3Backend, "delete_object", _delete_object)
    patch(FakeKey, "response_dict", property(_response_dict(FakeKey.__dict__["response_dict"])))


def _put_object(orig: Callable[..., Any], backend: Any, bucket_name: str, key_name: str,
                *args: Any, **kwargs: Any) -> Any:
    key = orig(backend, bucket_name, key_name, *args, **kwargs)
    if getattr(_TLS, "s3_replicating", False):
        return key
    pending = getattr(_TLS, "s3_pending", None)
    if pending is not None:
        pending.append((backend, bucket_name, key))
    else:
        _replicate_version(backend, bucket_name, key)
    return key


def _key_response(orig: Callable[..., Any], response: Any, request: Any, full_url: str) -> Any:
    outer = getattr(_TLS, "s3_pending", None)
    _TLS.s3_pending = []
    try:
        return orig(response, request, full_url)
    finally:
        pending, _TLS.s3_pending = _TLS.s3_pending, outer
        for backend, bucket_name, key in pending:
            try:
                _replicate_version(backend, bucket_name, key)
            except Exception:  # never break the source request
                log.exception("S3 replication of %s/%s failed", bucket_name, key.name)


def _delete_object(orig: Callable[..., Any], backend: Any, bucket_name: str, key_name: str,
                   version_id: Optional[str] = None, bypass: bool = False) -> Any:
    result = orig(backend, bucket_name, key_name, version_id=version_id, bypass=bypass)
    if version_id is None and not getattr(_TLS, "s3_replicating", False):
        try:
            _replicate_delete_marker(backend, bucket_name, key_name)
        except Exception:
            log.exception("S3 delete-marker replication of %s/%s failed", bucket_name, key_name)
    return result


def _response_dict(orig: property) -> Callable[[Any], dict[str, Any]]:
    """FakeKey.response_dict plus the x-amz-replication-status header moto never sends."""
    def response_dict(key: Any) -> dict[str, Any]:
        res: dict[str, Any] = orig.fget(key)  # type: ignore[misc]
        status = getattr(key, "replication_status", None)
        if status:
            res["x-amz-replication-status"] = status
        return res

    return response_dict


def _destination(rule: dict[str, Any]) -> str:
    """The destination bucket's name (the rule holds its ARN)."""
    return str((rule.get("Destination") or {}).get("Bucket", "")).split(":::")[-1]


def _rule_filter(rule: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """(prefix, tags) of a stored rule (xmltodict shape: strings, single items not in lists)."""
    filt = rule.get("Filter")
    if filt is None:
        return rule.get("Prefix") or "", []
    filt = filt or {}
    if "And" in filt:
        and_ = filt["And"] or {}
        return and_.get("Prefix") or "", as_list(and_.get("Tag"))
    return filt.get("Prefix") or "", as_list(filt.get("Tag"))


def _matching_rules(backend: Any, bucket: Any, key: Any) -> list[dict[str, Any]]:
    """Highest-priority Enabled rule per destination bucket that matches this key."""
    replication = getattr(bucket, "replication", None)
    if not replication:
        return []
    tags = None
    chosen: dict[str, dict[str, Any]] = {}
    for rule in as_list(replication.get("Rule")):
        if str(rule.get("Status", "")).lower() != "enabled":
            continue
        prefix, rule_tags = _rule_filter(rule)
        if not key.name.startswith(prefix):
            continue
        if rule_tags:
            if tags is None:
                tags = backend.tagger.get_tag_dict_for_resource(key.arn)
            if any(tags.get(t.get("Key")) != t.get("Value") for t in rule_tags):
                continue
        dest = _destination(rule)
        if not dest:
            continue
        prio = int(rule.get("Priority") or 0)
        if dest not in chosen or prio > int(chosen[dest].get("Priority") or 0):
            chosen[dest] = rule
    return list(chosen.values())


def _kms_eligible(rule: dict[str, Any], key: Any) -> bool:
    if key.encryption != "aws:kms":
        return True
    ssc = rule.get("SourceSelectionCriteria") or {}
    status = (ssc.get("SseKmsEncryptedObjects") or {}).get("Status", "")
    return str(status).lower() == "enabled"


def _replicate_version(backend: Any, bucket_name: str, key: Any) -> None:
    if getattr(key, "replication_status", None) == "REPLICA":
        return
    bucket = backend.get_bucket(bucket_name)
    rules = [r for r in _matching_rules(backend, bucket, key) if _kms_eligible(r, key)]
    if not rules:
        return
    key.replication_status = "PENDING"
    delay = CONFIG.s3_replication_delay
    if delay > 0:
        timer = threading.Timer(delay, _copy_replicas, args=(backend, key, rules))
        timer.daemon = True
        timer.start()
    else:
        _copy_replicas(backend, key, rules)


def _copy_replicas(backend: Any, key: Any, rules: list[dict[str, Any]]) -> None:
    status = "COMPLETED"
    for rule in rules:
        try:
            _copy_one(backend, key, rule)
        except Exception as exc:
            log.warning("S3 replication of %s/%s failed: %s", key.bucket_name, key.name, exc)
            status = "FAILED"
    key.replication_status = status


def _copy_one(backend: Any, key: Any, rule: dict[str, Any]) -> None:
    dest_conf = rule.get("Destination") or {}
    dest_name = _destination(rule)
    dest = backend.get_bucket(dest_name)  # raises MissingBucket -> FAILED
    if not dest.is_versioned:
        raise RuntimeError(f"destination bucket {dest_name} is not versioned")
    encryption, kms_key_id = key.encryption, None
    if key.encryption == "aws:kms":
        kms_key_id = (dest_conf.get("EncryptionConfiguration") or {}).get("ReplicaKmsKeyID")
        kms_key_id = kms_key_id or key.kms_key_id
    _TLS.s3_replicating = True
    try:
        replica = backend.put_object(
            dest_name, key.name, key.value,
            storage=dest_conf.get("StorageClass") or key.storage_class,
            etag=key.etag.strip('"'),
            encryption=encryption, kms_key_id=kms_key_id,
            bucket_key_enabled=key.bucket_key_enabled,
            disable_notification=True,
        )
    finally:
        _TLS.s3_replicating = False
    replica.set_metadata(dict(key.metadata), replace=True)
    replica.website_redirect_location = key.website_redirect_location
    if key.version_id and key.version_id != "null":
        replica._version_id = key.version_id  # AWS keeps the version ID
    replica.last_modified = key.last_modified
    replica.checksum_algorithm = key.checksum_algorithm
    replica.checksum_value = key.checksum_value
    replica.replication_status = "REPLICA"
    tags = backend.tagger.get_tag_dict_for_resource(key.arn)
    if tags:
        backend.put_object_tagging(replica, tags)


def _replicate_delete_marker(backend: Any, bucket_name: str, key_name: str) -> None:
    bucket = backend.get_bucket(bucket_name)
    if not bucket.is_versioned or not getattr(bucket, "replication", None):
        return
    from moto.s3.models import FakeDeleteMarker

    marker = bucket.keys.get(key_name)
    if not isinstance(marker, FakeDeleteMarker):
        return
    probe = marker.key  # the version that was current; rules match on its key/tags
    while isinstance(probe, FakeDeleteMarker):
        probe = probe.key
    for rule in _matching_rules(backend, bucket, probe):
        dmr = (rule.get("DeleteMarkerReplication") or {}).get("Status", "Disabled")
        if str(dmr).lower() != "enabled":
            continue
        dest_name = _destination(rule)
        try:
            dest = backend.get_bucket(dest_name)
        except Exception:
            continue
        if key_name in dest.keys and dest.is_versioned:
            replica_marker = backend._set_delete_marker(dest_name, key_name)
            replica_marker._version_id = marker.version_id
