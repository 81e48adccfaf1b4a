"""Make moto 5.2.5 change state the way AWS does, where the local DR environment needs it.

moto's ThreadedMotoServer serves requests from the *same* in-process backends that
``moto.backends.get_backend`` returns, so patching moto's backend and response classes in this
process changes what every client of the server observes through plain HTTP/boto3 calls.

``install()`` (idempotent) applies every extension below; ``uninstall()`` restores moto's own
code. Each extension is one ``_install_*`` function whose docstring says what AWS does, what moto
5.2.5 does, and what the extension changes. See docs/emulator.md for the same in prose.

Extensions (priority order):

1. S3 cross-region replication            ``_install_s3_replication``
2. RDS global cluster failover/switchover ``_install_rds_global_failover``
   (+ remove_from_global_cluster across regions, describe_global_clusters ID filter)
3. Route 53 health check status           ``_install_route53_health_status``
4. Credential hooks: RDS master password  ``_install_rds_master_password_hook``
   and ElastiCache auth token             ``_install_elasticache_auth_token_hook``
5. CloudTrail lookup_events               ``_install_cloudtrail_lookup_events``

Inspectable records (cleared by ``reset_records()`` and by ``POST /moto-api/reset``; hooks and
probes survive a reset):

- ``promotion_calls()``        every failover/switchover call (also refused ones), with timestamps
- ``master_password_calls()``  every modify_db_cluster(MasterUserPassword=...)
- ``auth_token_calls()``       every modify_replication_group(AuthToken/AuthTokenUpdateStrategy)
- ``cloudtrail_events()``      the management events recorded for lookup_events

Secret values (passwords, tokens) are never stored in these records: only a short SHA-256
fingerprint (``fingerprint(value)``) so tests can still tell two values apart. The records
live in the server's process; ``configure(record_file=path)`` mirrors the promotion, password
and auth-token records to a JSON-lines file that other processes read with
``read_record_file(path, kind)`` (e.g. a test that SIGKILLs a CLI run and then asserts
"exactly one promotion call").

Integration: ``recovery/local/moto_server.py``'s ``MotoServer.start()`` should call
``install()`` before starting the server (one line), so every local server has the extensions.

Hooks for the local environment (each ``None`` restores the default, which only records):

- ``set_promotion_hook(fn)``        ``fn(target_cluster_id)`` runs while the global cluster is
  'failing-over'/'switching-over'; raising aborts the promotion (nothing changes, the client
  gets InvalidGlobalClusterStateFault). Later: ``pg_ctl promote`` of the hot standby.
- ``set_master_password_hook(fn)``  ``fn(cluster_id, new_password)``
- ``set_auth_token_hook(fn)``       ``fn(replication_group_id, token, strategy)``
- ``set_health_probe(health_check_id, probe)`` probe is a callable returning bool or an
  http(s) URL (2xx/3xx = healthy).
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import hashlib
import json
import logging
import re
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

__all__ = [
    "install", "uninstall", "installed", "configure", "reset_records", "fingerprint",
    "read_record_file",
    "set_promotion_hook", "promotion_calls",
    "set_master_password_hook", "master_password_calls",
    "set_auth_token_hook", "auth_token_calls", "cache_auth_tokens",
    "set_health_probe", "health_check_healthy",
    "cloudtrail_events",
]

# --------------------------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------------------------

_LOCK = threading.RLock()
_INSTALLED = False
_PATCHES: list[tuple[Any, str, Any, bool]] = []  # (owner, attribute, original, existed)
_TLS = threading.local()


@dataclass
class _Config:
    #: Seconds between a source put and the replica appearing. 0 = synchronous: the replica
    #: exists and the source reads COMPLETED before the PUT response is sent.
    s3_replication_delay: float = 0.0
    #: Timeout for probing a health check URL.
    health_probe_timeout: float = 2.0
    #: When set, every promotion / password / auth-token record is also appended to this file
    #: as one JSON line ({"kind": ..., ...}), so other processes (a CLI under test, a test
    #: that SIGKILLs it) can read the journal: see ``read_record_file``.
    record_file: Optional[str] = None


_CONFIG = _Config()


@dataclass
class _Records:
    promotions: list[dict[str, Any]] = field(default_factory=list)
    master_passwords: list[dict[str, Any]] = field(default_factory=list)
    auth_tokens: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: replication group id -> auth tokens currently accepted (emulated AUTH state)
    cache_tokens: dict[str, list[str]] = field(default_factory=dict)


_RECORDS = _Records()
_HOOKS: dict[str, Optional[Callable[..., Any]]] = {
    "promotion": None, "master_password": None, "auth_token": None,
}
_PROBES: dict[str, Any] = {}


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def fingerprint(secret: Optional[str]) -> Optional[str]:
    """Short SHA-256 fingerprint of a secret, the only form in which records keep secrets."""
    if secret is None:
        return None
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


_UNSET: Any = object()


def configure(*, s3_replication_delay: Optional[float] = None,
              health_probe_timeout: Optional[float] = None,
              record_file: Any = _UNSET) -> None:
    """Tune the extensions. ``s3_replication_delay > 0`` makes replication asynchronous;
    ``record_file`` (path or None) mirrors the call journals to a JSON-lines file."""
    if s3_replication_delay is not None:
        _CONFIG.s3_replication_delay = float(s3_replication_delay)
    if health_probe_timeout is not None:
        _CONFIG.health_probe_timeout = float(health_probe_timeout)
    if record_file is not _UNSET:
        _CONFIG.record_file = str(record_file) if record_file else None


def _persist(kind: str, entry: dict[str, Any]) -> None:
    path = _CONFIG.record_file
    if not path:
        return
    line = json.dumps({"kind": kind, **entry}, default=lambda o: o.isoformat()
                      if isinstance(o, _dt.datetime) else str(o))
    with _LOCK, open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()


def read_record_file(path: str, kind: Optional[str] = None) -> list[dict[str, Any]]:
    """Records mirrored by ``configure(record_file=...)``; kind is 'promotion',
    'master_password' or 'auth_token' (None: all). Times stay ISO-8601 strings."""
    try:
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
    return [r for r in rows if kind is None or r.get("kind") == kind]


def reset_records() -> None:
    """Forget every recorded call/event (hooks, probes and configuration are kept)."""
    with _LOCK:
        _RECORDS.promotions.clear()
        _RECORDS.master_passwords.clear()
        _RECORDS.auth_tokens.clear()
        _RECORDS.events.clear()
        _RECORDS.cache_tokens.clear()


def promotion_calls() -> list[dict[str, Any]]:
    """Every failover/switchover call the emulator received, oldest first (copies).

    Keys: seq, time (UTC datetime), action ('FailoverGlobalCluster'|'SwitchoverGlobalCluster'),
    mode ('failover'|'switchover'), global_cluster_id, target (as sent), target_cluster_id,
    from_cluster_id, allow_data_loss, region, outcome ('ok'|'error'), error.
    """
    with _LOCK:
        return [dict(c) for c in _RECORDS.promotions]


def master_password_calls() -> list[dict[str, Any]]:
    """Every modify_db_cluster(MasterUserPassword=...) call: time, region, cluster_id,
    password_fingerprint, outcome, error."""
    with _LOCK:
        return [dict(c) for c in _RECORDS.master_passwords]


def auth_token_calls() -> list[dict[str, Any]]:
    """Every modify_replication_group with AuthToken/AuthTokenUpdateStrategy: time, region,
    replication_group_id, strategy, token_fingerprint, outcome, error."""
    with _LOCK:
        return [dict(c) for c in _RECORDS.auth_tokens]


def cache_auth_tokens(replication_group_id: str) -> list[str]:
    """The AUTH tokens the emulated group currently accepts (after ROTATE: two, after SET: one,
    after DELETE: none). Only known for groups created/modified while installed."""
    with _LOCK:
        return list(_RECORDS.cache_tokens.get(replication_group_id, []))


def cloudtrail_events() -> list[dict[str, Any]]:
    """Recorded management events, oldest first (copies of the internal records)."""
    with _LOCK:
        return [dict(e) for e in _RECORDS.events]


def set_promotion_hook(fn: Optional[Callable[[str], Any]]) -> None:
    """Run ``fn(target_cluster_id)`` on every global cluster failover/switchover (None: record only).

    The journal entry of the running call is already in ``promotion_calls()`` (outcome
    'running') when the hook runs, so a hook can read mode and old writer from it."""
    _HOOKS["promotion"] = fn


def set_master_password_hook(fn: Optional[Callable[[str, str], Any]]) -> None:
    """Run ``fn(db_cluster_id, new_password)`` on modify_db_cluster(MasterUserPassword=...)."""
    _HOOKS["master_password"] = fn


def set_auth_token_hook(fn: Optional[Callable[[str, Optional[str], str], Any]]) -> None:
    """Run ``fn(replication_group_id, token, strategy)`` on modify_replication_group with an
    auth token change; strategy is 'ROTATE', 'SET' or 'DELETE' (token None for DELETE)."""
    _HOOKS["auth_token"] = fn


def set_health_probe(health_check_id: str, probe: Any) -> None:
    """Make a Route 53 health check's underlying health real.

    ``probe``: a callable returning truthy when the endpoint is healthy, an http(s) URL probed
    with GET (2xx/3xx healthy, anything else or no answer unhealthy), a bool, or None to
    remove the probe (then the endpoint counts as healthy, as moto assumed)."""
    with _LOCK:
        if probe is None:
            _PROBES.pop(health_check_id, None)
        else:
            _PROBES[health_check_id] = probe


def _patch(owner: Any, name: str, new: Any) -> None:
    existed = name in owner.__dict__
    _PATCHES.append((owner, name, owner.__dict__.get(name), existed))
    setattr(owner, name, new)


def installed() -> bool:
    return _INSTALLED


def install() -> None:
    """Apply every extension to moto's in-process backends. Safe to call more than once."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        _install_s3_replication()
        _install_rds_global_failover()
        _install_route53_health_status()
        _install_rds_master_password_hook()
        _install_elasticache_auth_token_hook()
        _install_cloudtrail_lookup_events()
        _install_reset_hook()
        _INSTALLED = True


def uninstall() -> None:
    """Restore moto's original code (records, hooks and probes are left as they are)."""
    global _INSTALLED
    with _LOCK:
        while _PATCHES:
            owner, name, original, existed = _PATCHES.pop()
            if existed:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        _INSTALLED = False


def _install_reset_hook() -> None:
    """``POST /moto-api/reset`` clears moto's backends; also clear this module's records."""
    from moto.moto_api._internal.models import MotoAPIBackend

    orig = MotoAPIBackend.reset

    @functools.wraps(orig)
    def reset(self: Any) -> None:
        orig(self)
        reset_records()

    _patch(MotoAPIBackend, "reset", reset)


# --------------------------------------------------------------------------------------------
# 1. S3 cross-region replication
# --------------------------------------------------------------------------------------------

def _install_s3_replication() -> None:
    """S3 replication (CRR/SRR) of new object versions.

    AWS: with a replication configuration on a versioned bucket, every new object version
    whose key matches an Enabled rule (Filter Prefix / Tag / And, or the V1 rule Prefix) is
    copied asynchronously to the rule's destination bucket: same key, same version ID, same
    data, ETag, user metadata, content headers, tags and Last-Modified; storage class from
    Destination.StorageClass when given. SSE-KMS objects are only replicated when the rule has
    SourceSelectionCriteria.SseKmsEncryptedObjects Enabled, and the replica is encrypted with
    Destination.EncryptionConfiguration.ReplicaKmsKeyID. HEAD/GET on the source then report
    ``x-amz-replication-status: PENDING`` and later ``COMPLETED`` (``FAILED`` when the
    destination is unusable); the replica reports ``REPLICA``. Replicas are not replicated
    further. Delete markers (DELETE without a version id) are replicated only when the
    rule's DeleteMarkerReplication is Enabled; deletes of a specific version never are.
    Objects that match no rule get no replication status.

    moto 5.2.5: stores the configuration (get_bucket_replication round-trips it) but never
    copies anything, and has no replication status: FakeKey.response_dict has no
    x-amz-replication-status header at all (checked: no 'replication' in it).

    This extension: wraps S3Backend.put_object (used by PutObject, CopyObject and
    CompleteMultipartUpload) to note each new source version, and S3Response._key_response so
    the replica is made *after* moto has set metadata/tags/ACL on the new version, still
    before the HTTP response is sent. Replication is synchronous by default (PENDING ->
    COMPLETED collapsed: the first HEAD already reads COMPLETED); with
    ``configure(s3_replication_delay=s)`` it runs on a timer thread and HEAD reads PENDING
    until then. FakeKey.response_dict gains the x-amz-replication-status header. Delete
    markers are replicated per DeleteMarkerReplication. Calls made directly on the backend
    (outside an HTTP request) are replicated immediately.
    """
    from moto.s3.models import FakeKey, S3Backend
    from moto.s3.responses import S3Response

    orig_put = S3Backend.put_object

    @functools.wraps(orig_put)
    def put_object(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        key = orig_put(self, bucket_name, key_name, *args, **kwargs)
        if getattr(_TLS, "s3_replicating", False):
            return key
        pending = getattr(_TLS, "s3_pending", None)
        if pending is not None:
            pending.append((self, bucket_name, key))
        else:
            _s3_replicate_version(self, bucket_name, key)
        return key

    _patch(S3Backend, "put_object", put_object)

    orig_key_response = S3Response._key_response

    @functools.wraps(orig_key_response)
    def _key_response(self: Any, request: Any, full_url: str) -> Any:
        outer = getattr(_TLS, "s3_pending", None)
        _TLS.s3_pending = []
        try:
            return orig_key_response(self, request, full_url)
        finally:
            pending, _TLS.s3_pending = _TLS.s3_pending, outer
            for backend, bucket_name, key in pending:
                try:
                    _s3_replicate_version(backend, bucket_name, key)
                except Exception:  # never break the source request
                    log.exception("S3 replication of %s/%s failed", bucket_name, key.name)

    _patch(S3Response, "_key_response", _key_response)

    orig_delete = S3Backend.delete_object

    @functools.wraps(orig_delete)
    def delete_object(self: Any, bucket_name: str, key_name: str,
                      version_id: Optional[str] = None, bypass: bool = False) -> Any:
        result = orig_delete(self, bucket_name, key_name, version_id=version_id, bypass=bypass)
        if version_id is None and not getattr(_TLS, "s3_replicating", False):
            try:
                _s3_replicate_delete_marker(self, bucket_name, key_name)
            except Exception:
                log.exception("S3 delete-marker replication of %s/%s failed", bucket_name, key_name)
        return result

    _patch(S3Backend, "delete_object", delete_object)

    orig_response_dict = FakeKey.__dict__["response_dict"]

    def response_dict(self: Any) -> dict[str, Any]:
        res = orig_response_dict.fget(self)
        status = getattr(self, "replication_status", None)
        if status:
            res["x-amz-replication-status"] = status
        return res

    _patch(FakeKey, "response_dict", property(response_dict))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _s3_rule_filter(rule: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """(prefix, tags) of a stored rule (xmltodict shape: strings, single items not in lists)."""
    filt = rule.get("Filter")
    if filt is None:
        return rule.get("Prefix") or "", []
    filt = filt or {}
    if "And" in filt:
        and_ = filt["And"] or {}
        return and_.get("Prefix") or "", _as_list(and_.get("Tag"))
    return filt.get("Prefix") or "", _as_list(filt.get("Tag"))


def _s3_matching_rules(backend: Any, bucket: Any, key: Any) -> list[dict[str, Any]]:
    """Highest-priority Enabled rule per destination bucket that matches this key."""
    replication = getattr(bucket, "replication", None)
    if not replication:
        return []
    tags = None
    chosen: dict[str, dict[str, Any]] = {}
    for rule in _as_list(replication.get("Rule")):
        if str(rule.get("Status", "")).lower() != "enabled":
            continue
        prefix, rule_tags = _s3_rule_filter(rule)
        if not key.name.startswith(prefix):
            continue
        if rule_tags:
            if tags is None:
                tags = backend.tagger.get_tag_dict_for_resource(key.arn)
            if any(tags.get(t.get("Key")) != t.get("Value") for t in rule_tags):
                continue
        dest = str((rule.get("Destination") or {}).get("Bucket", "")).split(":::")[-1]
        if not dest:
            continue
        prio = int(rule.get("Priority") or 0)
        if dest not in chosen or prio > int(chosen[dest].get("Priority") or 0):
            chosen[dest] = rule
    return list(chosen.values())


def _s3_kms_eligible(rule: dict[str, Any], key: Any) -> bool:
    if key.encryption != "aws:kms":
        return True
    ssc = rule.get("SourceSelectionCriteria") or {}
    status = (ssc.get("SseKmsEncryptedObjects") or {}).get("Status", "")
    return str(status).lower() == "enabled"


def _s3_replicate_version(backend: Any, bucket_name: str, key: Any) -> None:
    if getattr(key, "replication_status", None) == "REPLICA":
        return
    bucket = backend.get_bucket(bucket_name)
    rules = [r for r in _s3_matching_rules(backend, bucket, key) if _s3_kms_eligible(r, key)]
    if not rules:
        return
    key.replication_status = "PENDING"
    delay = _CONFIG.s3_replication_delay
    if delay > 0:
        timer = threading.Timer(delay, _s3_copy_replicas, args=(backend, key, rules))
        timer.daemon = True
        timer.start()
    else:
        _s3_copy_replicas(backend, key, rules)


def _s3_copy_replicas(backend: Any, key: Any, rules: list[dict[str, Any]]) -> None:
    status = "COMPLETED"
    for rule in rules:
        try:
            _s3_copy_one(backend, key, rule)
        except Exception as exc:
            log.warning("S3 replication of %s/%s failed: %s", key.bucket_name, key.name, exc)
            status = "FAILED"
    key.replication_status = status


def _s3_copy_one(backend: Any, key: Any, rule: dict[str, Any]) -> None:
    dest_conf = rule.get("Destination") or {}
    dest_name = str(dest_conf.get("Bucket", "")).split(":::")[-1]
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


def _s3_replicate_delete_marker(backend: Any, bucket_name: str, key_name: str) -> None:
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
    for rule in _s3_matching_rules(backend, bucket, probe):
        dmr = (rule.get("DeleteMarkerReplication") or {}).get("Status", "Disabled")
        if str(dmr).lower() != "enabled":
            continue
        dest_name = str((rule.get("Destination") or {}).get("Bucket", "")).split(":::")[-1]
        try:
            dest = backend.get_bucket(dest_name)
        except Exception:
            continue
        if key_name in dest.keys and dest.is_versioned:
            replica_marker = backend._set_delete_marker(dest_name, key_name)
            replica_marker._version_id = marker.version_id


# --------------------------------------------------------------------------------------------
# 2. RDS global cluster failover / switchover
# --------------------------------------------------------------------------------------------

def _rds_error(code: str, message: str) -> Exception:
    from moto.rds.exceptions import RDSClientError

    return RDSClientError(code, message)


def _rds_global_backend(account: str) -> Any:
    from moto.rds.models import rds_backends

    return rds_backends[account]["us-east-1"]  # where moto keeps every global cluster


def _rds_find_global(account: str, ident: str) -> Any:
    gcs = _rds_global_backend(account).global_clusters
    if ident in gcs:
        return gcs[ident]
    for gc in gcs.values():
        if gc.global_cluster_arn == ident:
            return gc
    raise _rds_error("GlobalClusterNotFoundFault", f"Global cluster {ident} not found.")


def _rds_find_member(gc: Any, ident: str) -> Any:
    for member in gc.members:
        if ident.lower() in (member.db_cluster_identifier.lower(), member.db_cluster_arn.lower()):
            return member
    raise _rds_error("DBClusterNotFoundFault",
                     f"DBCluster {ident} is not a member of global cluster "
                     f"{gc.global_cluster_identifier}.")


def _rds_sync_topology(gc: Any) -> None:
    """Writer first; secondaries replicate from the writer, as DescribeDBClusters shows on AWS."""
    writers = [m for m in gc.members if m.is_writer]
    if not writers:
        return
    writer = writers[0]
    gc.members.sort(key=lambda m: not m.is_writer)
    readers = [m for m in gc.members if m is not writer]
    writer.replication_source_identifier = None
    writer.read_replica_identifiers = [m.db_cluster_arn for m in readers]
    for m in readers:
        m.replication_source_identifier = writer.db_cluster_arn
        m.read_replica_identifiers = [a for a in m.read_replica_identifiers
                                      if a != writer.db_cluster_arn]


def _rds_global_of(account: str, cluster: Any) -> Any:
    for gc in _rds_global_backend(account).global_clusters.values():
        if any(m is cluster for m in gc.members):
            return gc
    return None


def _rds_detach(gc: Any, cluster: Any) -> None:
    gc.members[:] = [m for m in gc.members if m is not cluster]
    cluster.global_cluster_identifier = None
    was_writer = cluster.is_writer
    cluster.is_writer = False
    cluster.replication_source_identifier = None
    cluster.read_replica_identifiers = []
    for m in gc.members:
        m.read_replica_identifiers = [a for a in m.read_replica_identifiers
                                      if a != cluster.db_cluster_arn]
        if m.replication_source_identifier == cluster.db_cluster_arn:
            m.replication_source_identifier = None
    if was_writer and gc.members and not any(m.is_writer for m in gc.members):
        gc.members[0].is_writer = True
    _rds_sync_topology(gc)


def _rds_promote(resp: Any, action: str) -> Any:
    from moto.core.responses import ActionResult

    gid = resp._get_param("GlobalClusterIdentifier")
    target = resp._get_param("TargetDbClusterIdentifier")
    allow_data_loss = str(resp._get_param("AllowDataLoss", False)).lower() == "true"
    switchover_flag = str(resp._get_param("Switchover", False)).lower() == "true"
    if action == "SwitchoverGlobalCluster":
        mode = "switchover"
    else:
        mode = "failover" if allow_data_loss else "switchover"
    entry: dict[str, Any] = {
        "seq": 0, "time": _now(), "action": action, "mode": mode,
        "global_cluster_id": gid, "target": target, "target_cluster_id": None,
        "from_cluster_id": None, "allow_data_loss": allow_data_loss,
        "region": resp.region, "outcome": "running", "error": None,
    }
    with _LOCK:
        entry["seq"] = len(_RECORDS.promotions) + 1
        _RECORDS.promotions.append(entry)
    try:
        if allow_data_loss and switchover_flag:
            raise _rds_error("InvalidParameterCombination",
                             "AllowDataLoss and Switchover can't be specified together.")
        if not gid or not target:
            raise _rds_error("InvalidParameterValue",
                             "GlobalClusterIdentifier and TargetDbClusterIdentifier are required.")
        with _LOCK:
            gc = _rds_find_global(resp.current_account, gid)
            new = _rds_find_member(gc, target)
            old = next((m for m in gc.members if m.is_writer), None)
            entry["target_cluster_id"] = new.db_cluster_identifier
            entry["from_cluster_id"] = old.db_cluster_identifier if old else None
            if gc.status != "available":
                raise _rds_error("InvalidGlobalClusterStateFault",
                                 f"Global cluster {gc.global_cluster_identifier} is in "
                                 f"{gc.status} state.")
            if new is old:
                raise _rds_error("InvalidDBClusterStateFault",
                                 f"DBCluster {entry['target_cluster_id']} is already the "
                                 "primary cluster of the global cluster.")
            gc.status = "failing-over" if mode == "failover" else "switching-over"
            gc.failover_state = {
                "Status": "failing-over" if mode == "failover" else "switching-over",
                "FromDbClusterArn": old.db_cluster_arn if old else None,
                "ToDbClusterArn": new.db_cluster_arn,
                "IsDataLossAllowed": allow_data_loss,
            }
            in_progress = copy.copy(gc)  # what the call answers: the in-progress state
            in_progress.members = [copy.copy(m) for m in gc.members]
        hook = _HOOKS["promotion"]
        try:
            if hook is not None:
                hook(new.db_cluster_identifier)
        except Exception as exc:
            with _LOCK:
                gc.status = "available"
                gc.failover_state = None
            raise _rds_error("InvalidGlobalClusterStateFault",
                             f"promotion of {new.db_cluster_identifier} failed: {exc}") from exc
        with _LOCK:
            if old is not None:
                old.is_writer = False
            new.is_writer = True
            _rds_sync_topology(gc)
            gc.status = "available"
            gc.failover_state = None
            entry["outcome"] = "ok"
        return ActionResult({"GlobalCluster": in_progress})
    except Exception as exc:
        with _LOCK:
            entry["outcome"] = "error"
            entry["error"] = str(getattr(exc, "message", None) or exc)
        raise
    finally:
        _persist("promotion", entry)


def _install_rds_global_failover() -> None:
    """Global cluster failover/switchover, cross-region detach, and the describe ID filter.

    AWS: FailoverGlobalCluster(AllowDataLoss=True) promotes a secondary at once (unplanned,
    may lose the replication lag); without AllowDataLoss, or with Switchover=True, and with
    SwitchoverGlobalCluster, it is a planned switchover without data loss. The global
    cluster reports 'failing-over'/'switching-over' (plus FailoverState) and then
    'available'; DescribeGlobalClusters then lists the target with IsWriter=True and the old
    primary as a reader member, and DescribeDBClusters shows the secondaries'
    ReplicationSourceIdentifier pointing at the new writer. RemoveFromGlobalCluster works
    from any region and makes the member a standalone cluster. DescribeGlobalClusters honours
    GlobalClusterIdentifier (GlobalClusterNotFoundFault when unknown).

    moto 5.2.5: FailoverGlobalCluster and SwitchoverGlobalCluster raise NotImplementedError
    (HTTP 500 with HTML, botocore ResponseParserError). RemoveFromGlobalCluster looks up the
    global cluster in the *request's* region while moto keeps every global cluster in the
    us-east-1 backend, so for a us-west-2 member it silently does nothing (and deleting a
    us-west-2 member leaves it listed). DescribeGlobalClusters ignores its ID filter.
    Secondaries show no ReplicationSourceIdentifier.

    This extension: adds both actions to RDSResponse. Each call is journaled
    (``promotion_calls()``), including refused ones. The status goes to
    'failing-over'/'switching-over' (also the state returned by the call itself), the
    promotion hook runs (``set_promotion_hook``; on exception nothing changes and the
    client gets InvalidGlobalClusterStateFault), then the writer flag moves, secondaries'
    replication source is re-pointed, and the status is 'available' again before the
    response is sent (the transition is collapsed). Errors: unknown global cluster
    (GlobalClusterNotFoundFault), target not a member (DBClusterNotFoundFault), target
    already the writer (InvalidDBClusterStateFault), status not available
    (InvalidGlobalClusterStateFault), AllowDataLoss with Switchover
    (InvalidParameterCombination). RemoveFromGlobalCluster and DeleteDBCluster find the
    global cluster wherever moto keeps it; DescribeGlobalClusters filters by id or ARN.
    """
    from moto.core.responses import ActionResult
    from moto.rds.models import RDSBackend
    from moto.rds.responses import RDSResponse

    def failover_global_cluster(self: Any) -> Any:
        return _rds_promote(self, "FailoverGlobalCluster")

    def switchover_global_cluster(self: Any) -> Any:
        return _rds_promote(self, "SwitchoverGlobalCluster")

    _patch(RDSResponse, "failover_global_cluster", failover_global_cluster)
    _patch(RDSResponse, "switchover_global_cluster", switchover_global_cluster)

    def describe_global_clusters(self: Any) -> Any:
        gid = self._get_param("GlobalClusterIdentifier")
        if gid:
            clusters = [_rds_find_global(self.current_account, gid)]
        else:
            clusters = self.global_backend.describe_global_clusters()
        return ActionResult({"GlobalClusters": clusters})

    _patch(RDSResponse, "describe_global_clusters", describe_global_clusters)

    def remove_from_global_cluster(self: Any) -> Any:
        gid = self._get_param("GlobalClusterIdentifier")
        member_id = self._get_param("DbClusterIdentifier")
        with _LOCK:
            gc = _rds_find_global(self.current_account, gid)
            member = _rds_find_member(gc, member_id)
            _rds_detach(gc, member)
        return ActionResult({"GlobalCluster": gc})

    _patch(RDSResponse, "remove_from_global_cluster", remove_from_global_cluster)

    orig_create = RDSBackend.create_db_cluster

    @functools.wraps(orig_create)
    def create_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        cluster = orig_create(self, kwargs)
        if cluster.global_cluster_identifier:
            with _LOCK:
                gc = _rds_global_of(self.account_id, cluster)
                if gc is not None:
                    _rds_sync_topology(gc)
        return cluster

    _patch(RDSBackend, "create_db_cluster", create_db_cluster)

    orig_delete = RDSBackend.delete_db_cluster

    @functools.wraps(orig_delete)
    def delete_db_cluster(self: Any, cluster_identifier: str,
                          snapshot_name: Optional[str] = None) -> Any:
        cluster = self.clusters.get(cluster_identifier)
        if cluster is not None and not cluster.deletion_protection and not cluster.members:
            with _LOCK:
                gc = _rds_global_of(self.account_id, cluster)
                if gc is not None:
                    _rds_detach(gc, cluster)
        return orig_delete(self, cluster_identifier, snapshot_name)

    _patch(RDSBackend, "delete_db_cluster", delete_db_cluster)


# --------------------------------------------------------------------------------------------
# 3. Route 53 health check status
# --------------------------------------------------------------------------------------------

def _probe_healthy(probe: Any) -> tuple[bool, str]:
    if isinstance(probe, bool):
        return probe, "set by the local environment"
    if isinstance(probe, str):
        try:
            req = urllib.request.Request(probe, method="GET")
            with urllib.request.urlopen(req, timeout=_CONFIG.health_probe_timeout) as r:
                code = r.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except Exception as exc:
            return False, f"Failure: connection to {probe} failed: {exc.__class__.__name__}"
        return 200 <= code < 400, f"HTTP Status Code {code}"
    try:
        return bool(probe()), "probe"
    except Exception as exc:
        return False, f"probe raised {exc.__class__.__name__}"


def health_check_healthy(health_check: Any) -> tuple[bool, str]:
    """(healthy, reason) of a moto HealthCheck as Route 53 would report it."""
    if getattr(health_check, "disabled", False):
        return True, "Success: health checking is disabled; Route 53 considers it healthy"
    probe = _PROBES.get(health_check.id)
    if probe is None:
        endpoint_ok, detail = True, "HTTP Status Code 200 (no probe registered)"
    else:
        endpoint_ok, detail = _probe_healthy(probe)
    healthy = endpoint_ok != bool(getattr(health_check, "inverted", False))
    if health_check.inverted:
        detail = f"{detail}; the health check is inverted"
    return healthy, detail


def _install_route53_health_status() -> None:
    """GetHealthCheckStatus that reflects Inverted, Disabled and a real probe.

    AWS: checkers in several regions probe the endpoint; each observation's StatusReport
    starts with 'Success' or 'Failure'. Inverted=True flips the result (a healthy endpoint
    reports Failure, which is how a runbook forces DNS failover to the SECONDARY record);
    Disabled=True makes Route 53 consider the check healthy whatever the endpoint does.

    moto 5.2.5: always answers one observation with 'Success: HTTP Status Code: 200'.

    This extension: computes the endpoint's health from the probe registered with
    ``set_health_probe`` (a callable or a URL fetched at request time; none registered =
    healthy), applies Inverted, then Disabled, and answers three observations (us-east-1,
    us-west-2, eu-west-1) with 'Success: ...' or 'Failure: ...'. DNS answers are not
    affected (moto does not serve DNS).
    """
    from moto.core.responses import ActionResult
    from moto.route53.responses import Route53

    def get_health_check_status(self: Any) -> Any:
        health_check_id = self._get_param("HealthCheckId")
        hc = self.backend.get_health_check(health_check_id)
        healthy, detail = health_check_healthy(hc)
        status = f"{'Success' if healthy else 'Failure'}: {detail}"
        observations = [
            {"Region": region, "IPAddress": ip,
             "StatusReport": {"Status": status, "CheckedTime": _now()}}
            for region, ip in (("us-east-1", "15.177.2.1"), ("us-west-2", "15.177.10.1"),
                               ("eu-west-1", "15.177.62.1"))
        ]
        return ActionResult({"HealthCheckObservations": observations})

    _patch(Route53, "get_health_check_status", get_health_check_status)


# --------------------------------------------------------------------------------------------
# 4. Credential hooks
# --------------------------------------------------------------------------------------------

def _install_rds_master_password_hook() -> None:
    """modify_db_cluster(MasterUserPassword=...) reaches a real database.

    AWS: with ApplyImmediately the cluster's master password changes within seconds; old
    connections stay open, new logins need the new password.

    moto 5.2.5: stores the attribute; nothing else changes.

    This extension: after moto accepted the modification, calls the hook registered with
    ``set_master_password_hook`` as ``fn(cluster_id, new_password)`` (the local environment
    runs ALTER ROLE on its PostgreSQL) and records the call (password as fingerprint only).
    If the hook raises, the client gets InvalidDBClusterStateFault and the record says
    outcome 'error'.
    """
    from moto.rds.responses import RDSResponse

    orig = RDSResponse.modify_db_cluster

    @functools.wraps(orig)
    def modify_db_cluster(self: Any) -> Any:
        password = self._get_param("MasterUserPassword")
        cluster_id = self._get_param("DBClusterIdentifier")  # read first: moto pops params
        result = orig(self)
        if password is None:
            return result
        entry = {"time": _now(), "region": self.region, "cluster_id": cluster_id,
                 "password_fingerprint": fingerprint(password), "outcome": "ok", "error": None}
        with _LOCK:
            _RECORDS.master_passwords.append(entry)
        hook = _HOOKS["master_password"]
        if hook is not None:
            try:
                hook(cluster_id, password)
            except Exception as exc:
                entry["outcome"], entry["error"] = "error", exc.__class__.__name__
                raise _rds_error("InvalidDBClusterStateFault",
                                 f"could not apply the new master password to {cluster_id}: "
                                 f"{exc.__class__.__name__}") from None
            finally:
                _persist("master_password", entry)
        else:
            _persist("master_password", entry)
        return result

    _patch(RDSResponse, "modify_db_cluster", modify_db_cluster)


def _install_elasticache_auth_token_hook() -> None:
    """modify_replication_group(AuthToken, AuthTokenUpdateStrategy) reaches a real Redis.

    AWS: ROTATE (the default when only AuthToken is given) adds the new token and keeps the
    current one valid; SET makes the new token the only one; DELETE removes AUTH (no
    AuthToken allowed). AuthTokenEnabled and AuthTokenLastModifiedDate follow.

    moto 5.2.5: accepts the parameters and ignores them.

    This extension: validates the combination (InvalidParameterValue /
    InvalidParameterCombination like AWS), calls ``fn(group_id, token, strategy)`` registered
    with ``set_auth_token_hook`` (the local environment changes Redis ACL passwords), records
    the call (token fingerprint only), keeps the emulated set of accepted tokens
    (``cache_auth_tokens(group_id)``; the creation token is remembered too), and updates
    AuthTokenEnabled / AuthTokenLastModifiedDate. A hook exception becomes
    InvalidReplicationGroupState and changes nothing.
    """
    from moto.elasticache.exceptions import ElastiCacheException
    from moto.elasticache.responses import ElastiCacheResponse

    def _err(code: str, message: str) -> Exception:
        # moto finds the error model through the exception's module, so the class must live
        # (nominally) in moto.elasticache.exceptions
        cls = type(code, (ElastiCacheException,),
                   {"code": code, "__module__": ElastiCacheException.__module__})
        return cls(message)

    orig_create = ElastiCacheResponse.create_replication_group

    @functools.wraps(orig_create)
    def create_replication_group(self: Any) -> Any:
        result = orig_create(self)
        token = self._get_param("AuthToken")
        gid = self._get_param("ReplicationGroupId")
        with _LOCK:
            _RECORDS.cache_tokens[gid] = [token] if token else []
        return result

    _patch(ElastiCacheResponse, "create_replication_group", create_replication_group)

    orig_modify = ElastiCacheResponse.modify_replication_group

    @functools.wraps(orig_modify)
    def modify_replication_group(self: Any) -> Any:
        token = self._get_param("AuthToken")
        strategy = self._get_param("AuthTokenUpdateStrategy")
        if token is None and strategy is None:
            return orig_modify(self)
        strategy = (strategy or "ROTATE").upper()
        gid = self._get_param("ReplicationGroupId")
        if strategy not in ("ROTATE", "SET", "DELETE"):
            raise _err("InvalidParameterValue", f"Invalid AuthTokenUpdateStrategy {strategy}")
        if strategy == "DELETE" and token is not None:
            raise _err("InvalidParameterCombination",
                       "AuthToken can't be specified with the DELETE strategy.")
        if strategy != "DELETE" and not token:
            raise _err("InvalidParameterValue",
                       f"AuthToken is required with the {strategy} strategy.")
        if token is not None and not 16 <= len(token) <= 128:
            raise _err("InvalidParameterValue",
                       "The AuthToken must be between 16 and 128 characters.")
        group = self.elasticache_backend.replication_groups.get(gid)
        if group is None:
            return orig_modify(self)  # moto raises ReplicationGroupNotFoundFault
        entry = {"time": _now(), "region": self.region, "replication_group_id": gid,
                 "strategy": strategy, "token_fingerprint": fingerprint(token),
                 "outcome": "ok", "error": None}
        with _LOCK:
            _RECORDS.auth_tokens.append(entry)
        hook = _HOOKS["auth_token"]
        if hook is not None:
            try:
                hook(gid, token, strategy)
            except Exception as exc:
                entry["outcome"], entry["error"] = "error", exc.__class__.__name__
                raise _err("InvalidReplicationGroupState",
                           f"could not apply the auth token change to {gid}: "
                           f"{exc.__class__.__name__}") from None
            finally:
                _persist("auth_token", entry)
        else:
            _persist("auth_token", entry)
        with _LOCK:
            current = _RECORDS.cache_tokens.setdefault(gid, [])
            if strategy == "ROTATE":
                current[:] = [t for t in current if t != token][-1:] + [token]
            elif strategy == "SET":
                current[:] = [token]
            else:
                current[:] = []
        group.auth_token_enabled = strategy != "DELETE"
        group.auth_token_last_modified_date = _now()
        return orig_modify(self)

    _patch(ElastiCacheResponse, "modify_replication_group", modify_replication_group)


# --------------------------------------------------------------------------------------------
# 5. CloudTrail event recording and lookup_events
# --------------------------------------------------------------------------------------------

_GLOBAL_SERVICES = {"iam", "route53", "sts", "cloudfront", "organizations"}
_RESOURCE_KEY = re.compile(r"(Identifier|Id|Ids|Name|Names|Arn|ARN|Arns)$")
_NOT_RESOURCES = {"ParameterName", "AttributeName", "Name", "KeyName", "PolicyName",
                  "AttributeKey", "StatisticName", "MetricName", "Namespace",
                  "EngineName", "SnapshotName", "FilterName"}
_RESOURCE_TYPES = {
    "InstanceId": "AWS::EC2::Instance", "GroupId": "AWS::EC2::SecurityGroup",
    "VolumeId": "AWS::EC2::Volume", "SnapshotId": "AWS::EC2::Snapshot",
    "ImageId": "AWS::EC2::Ami", "NetworkInterfaceId": "AWS::EC2::NetworkInterface",
    "VpcId": "AWS::EC2::VPC", "UserName": "AWS::IAM::User",
    "AccessKeyId": "AWS::IAM::AccessKey", "RoleName": "AWS::IAM::Role",
    "DBClusterIdentifier": "AWS::RDS::DBCluster", "DbClusterIdentifier": "AWS::RDS::DBCluster",
    "TargetDbClusterIdentifier": "AWS::RDS::DBCluster",
    "DBInstanceIdentifier": "AWS::RDS::DBInstance",
    "GlobalClusterIdentifier": "AWS::RDS::GlobalCluster",
    "SecretId": "AWS::SecretsManager::Secret",
    "ReplicationGroupId": "AWS::ElastiCache::ReplicationGroup",
    "HealthCheckId": "AWS::Route53::HealthCheck", "HostedZoneId": "AWS::Route53::HostedZone",
    "KeyId": "AWS::KMS::Key", "TrailName": "AWS::CloudTrail::Trail",
}
_MAX_EVENTS = 100_000
_NO_RECORD = {"LookupEvents"}  # deliberately not recorded: repeated lookups stay stable


def _ct_resources(params: Any, out: list[tuple[str, str]], depth: int = 0) -> None:
    if depth > 3:
        return
    if isinstance(params, dict):
        for k, v in params.items():
            base = re.sub(r"(\.member)?(\.\d+)+$", "", str(k))
            if base.endswith(".member"):
                base = base[: -len(".member")]
            if _RESOURCE_KEY.search(base) and base not in _NOT_RESOURCES:
                for item in _as_list(v):
                    if isinstance(item, str) and item:
                        out.append((base, item))
            elif isinstance(v, (dict, list)):
                _ct_resources(v, out, depth + 1)
    elif isinstance(params, list):
        for item in params:
            _ct_resources(item, out, depth + 1)


def _ct_request_params(resp: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for k, v in (getattr(resp, "querystring", None) or {}).items():
        params[k] = v[0] if isinstance(v, list) and len(v) == 1 else v
    body = getattr(resp, "body", None)
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.startswith("{"):
        try:
            loaded = json.loads(body)
            if isinstance(loaded, dict):
                params.update(loaded)
        except ValueError:
            pass
    path = getattr(resp, "path", "") or ""
    m = re.search(r"/(healthcheck|hostedzone)/([^/]+)", path)
    if m:
        params["HealthCheckId" if m.group(1) == "healthcheck" else "HostedZoneId"] = m.group(2)
    return params


def _ct_user(resp: Any) -> tuple[str, str]:
    """(user name, access key id) of the caller; IAM user name when the key belongs to one."""
    auth = (getattr(resp, "headers", None) or {}).get("Authorization", "") or ""
    m = re.search(r"Credential=([^/,\s]+)/", auth)
    akid = m.group(1) if m else ""
    if akid:
        try:
            from moto.iam.models import iam_backends

            for partition in ("aws",):
                iam = iam_backends[resp.current_account][partition]
                for user in iam.users.values():
                    if any(k.access_key_id == akid for k in user.access_keys):
                        return user.name, akid
        except Exception:
            pass
    return "root", akid


def _ct_record(resp: Any, status: int) -> None:
    try:
        action = resp._get_action()
    except Exception:
        return
    if not action or action in _NO_RECORD:
        return
    service = getattr(resp, "service_name", "") or ""
    region = "us-east-1" if service in _GLOBAL_SERVICES else (resp.region or "us-east-1")
    pairs: list[tuple[str, str]] = []
    try:
        _ct_resources(_ct_request_params(resp), pairs)
    except Exception:
        pass
    seen: set[tuple[str, str]] = set()
    resources = []
    for key, value in pairs:
        if (key, value) in seen:
            continue
        seen.add((key, value))
        resources.append({"ResourceType": _RESOURCE_TYPES.get(key, key), "ResourceName": value,
                          "_param": key})
    username, akid = _ct_user(resp)
    read_only = bool(re.match(r"(Describe|Get|List|Lookup|Head)", action))
    event = {
        "EventId": str(uuid.uuid4()), "EventName": action, "ReadOnly": read_only,
        "AccessKeyId": akid, "EventTime": _now(), "EventSource": f"{service}.amazonaws.com",
        "Username": username, "Resources": resources, "Region": region,
        "AccountId": resp.current_account, "ErrorCode": None if status < 400 else str(status),
    }
    with _LOCK:
        _RECORDS.events.append(event)
        if len(_RECORDS.events) > _MAX_EVENTS:  # AWS keeps 90 days; we keep the newest N
            del _RECORDS.events[: len(_RECORDS.events) - _MAX_EVENTS]


def _ct_public(event: dict[str, Any]) -> dict[str, Any]:
    resources = [{"ResourceType": r["ResourceType"], "ResourceName": r["ResourceName"]}
                 for r in event["Resources"]]
    detail = {
        "eventVersion": "1.09", "eventID": event["EventId"], "eventName": event["EventName"],
        "eventSource": event["EventSource"], "eventTime": event["EventTime"].strftime(
            "%Y-%m-%dT%H:%M:%SZ"), "awsRegion": event["Region"],
        "readOnly": event["ReadOnly"], "recipientAccountId": event["AccountId"],
        "userIdentity": {"type": "Root" if event["Username"] == "root" else "IAMUser",
                         "userName": event["Username"], "accessKeyId": event["AccessKeyId"],
                         "accountId": event["AccountId"]},
        # only identifiers, never the whole request: secrets must not leak into the trail
        "requestParameters": {r["_param"]: r["ResourceName"] for r in event["Resources"]},
        "managementEvent": True, "eventType": "AwsApiCall",
    }
    if event["ErrorCode"]:
        detail["errorCode"] = event["ErrorCode"]
    return {
        "EventId": event["EventId"], "EventName": event["EventName"],
        "ReadOnly": "true" if event["ReadOnly"] else "false",
        "AccessKeyId": event["AccessKeyId"], "EventTime": event["EventTime"].timestamp(),
        "EventSource": event["EventSource"], "Username": event["Username"],
        "Resources": resources, "CloudTrailEvent": json.dumps(detail),
    }


def _ct_time(value: Any) -> Optional[_dt.datetime]:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
    text = str(value)
    try:
        return _dt.datetime.fromtimestamp(float(text), _dt.timezone.utc)
    except ValueError:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


def _ct_matches(event: dict[str, Any], key: str, value: str) -> bool:
    if key == "EventId":
        return event["EventId"] == value
    if key == "EventName":
        return event["EventName"] == value
    if key == "ReadOnly":
        return str(event["ReadOnly"]).lower() == value.lower()
    if key == "Username":
        return event["Username"] == value
    if key == "AccessKeyId":
        return event["AccessKeyId"] == value
    if key == "EventSource":
        return event["EventSource"] == value
    if key == "ResourceType":
        return any(r["ResourceType"] == value for r in event["Resources"])
    if key == "ResourceName":
        return any(r["ResourceName"] == value for r in event["Resources"])
    return False


def _install_cloudtrail_lookup_events() -> None:
    """Record the API calls the server sees and serve CloudTrail LookupEvents from them.

    AWS: CloudTrail keeps 90 days of management events per region (global services such as
    IAM and Route 53 in us-east-1). LookupEvents filters by at most one LookupAttribute
    (EventId, EventName, ReadOnly, Username, ResourceType, ResourceName, EventSource,
    AccessKeyId) and by StartTime/EndTime, returns newest first, MaxResults <= 50 with
    NextToken. Events appear about 5 minutes after the call.

    moto 5.2.5: LookupEvents raises NotImplementedError (HTTP 500); no calls are recorded.

    This extension: wraps BaseResponse.call_action (every query/JSON/rest-XML service except
    S3, which moto dispatches differently — S3 data events are not management events
    anyway) to record each call at once (no delivery delay): event name, source, time,
    region, caller (IAM user name when the access key belongs to an IAM user, else 'root'),
    access key id, error code, and resources taken from identifier-like request parameters
    (…Id, …Identifier, …Name, …Arn, EC2 list members, Route 53 path ids). The request body is
    never stored, so secrets do not end up in the trail. LookupEvents calls themselves are not
    recorded. Adds CloudTrailResponse.lookup_events with the filters above
    (InvalidLookupAttributesException for more than one attribute,
    InvalidTimeRangeException when StartTime > EndTime).
    """
    from moto.cloudtrail.responses import CloudTrailResponse
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import BaseResponse

    orig_call_action = BaseResponse.call_action

    @functools.wraps(orig_call_action)
    def call_action(self: Any) -> Any:
        status = 500
        try:
            result = orig_call_action(self)
            status = int(result[0]) if isinstance(result, tuple) else 200
            return result
        finally:
            try:
                _ct_record(self, status)
            except Exception:
                log.debug("CloudTrail recording failed", exc_info=True)

    _patch(BaseResponse, "call_action", call_action)

    def lookup_events(self: Any) -> str:
        attrs = self._get_param("LookupAttributes") or []
        if len(attrs) > 1:
            raise JsonRESTError("InvalidLookupAttributesException",
                                "You cannot specify more than one lookup attribute.")
        start = _ct_time(self._get_param("StartTime"))
        end = _ct_time(self._get_param("EndTime"))
        if start and end and start > end:
            raise JsonRESTError("InvalidTimeRangeException",
                                "StartTime must be before EndTime.")
        max_results = int(self._get_param("MaxResults") or 50)
        if not 1 <= max_results <= 50:
            raise JsonRESTError("InvalidMaxResultsException", "MaxResults must be 1..50.")
        offset = int(self._get_param("NextToken") or 0)
        with _LOCK:
            events = [e for e in _RECORDS.events
                      if e["AccountId"] == self.current_account and e["Region"] == self.region]
        if start:
            events = [e for e in events if e["EventTime"] >= start]
        if end:
            events = [e for e in events if e["EventTime"] <= end]
        for attr in attrs:
            events = [e for e in events
                      if _ct_matches(e, attr.get("AttributeKey"), attr.get("AttributeValue"))]
        events.sort(key=lambda e: e["EventTime"], reverse=True)
        page = events[offset: offset + max_results]
        result: dict[str, Any] = {"Events": [_ct_public(e) for e in page]}
        if offset + max_results < len(events):
            result["NextToken"] = str(offset + max_results)
        return json.dumps(result)

    _patch(CloudTrailResponse, "lookup_events", lookup_events)
