"""What the emulator extensions share: configuration, call records, hooks, probes and patching.

The extensions live in one module per AWS service (see ``__init__.py`` for the list). They share
one lock, one configuration and one set of records because a test or the local environment's
daemon reads them all through one face, and ``POST /moto-api/reset`` must clear them together.

This module imports nothing of moto, so ``recovery.local.redis_cache`` can read the emulated
auth tokens without pulling moto into a command-line process.

Secret values (passwords, tokens) are never stored in the records: only a short SHA-256
fingerprint (``fingerprint(value)``), so tests can still tell two values apart. The records live
in the server's process; ``configure(record_file=path)`` mirrors the promotion, password and
auth-token records to a JSON-lines file that other processes read with
``read_record_file(path, kind)`` (e.g. a test that SIGKILLs a CLI run and then asserts
"exactly one promotion call").
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

LOCK = threading.RLock()
# Where a request's WSGI environ carries its client connection's socket (moto_server.py puts it
# there): the outage extension shuts it to answer with no response at all, as a dead region does.
SOCKET_KEY = "recovery.socket"
_PATCHES: list[tuple[Any, str, Any, bool]] = []  # (owner, attribute, original, existed)


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


CONFIG = _Config()


@dataclass
class _Records:
    promotions: list[dict[str, Any]] = field(default_factory=list)
    master_passwords: list[dict[str, Any]] = field(default_factory=list)
    auth_tokens: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: replication group id -> auth tokens currently accepted (emulated AUTH state)
    cache_tokens: dict[str, list[str]] = field(default_factory=dict)


RECORDS = _Records()
HOOKS: dict[str, Optional[Callable[..., Any]]] = {
    "promotion": None, "master_password": None, "auth_token": None,
}
PROBES: dict[str, Any] = {}


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def as_list(value: Any) -> list[Any]:
    """xmltodict/querystring values: a single item is not wrapped in a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


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
        CONFIG.s3_replication_delay = float(s3_replication_delay)
    if health_probe_timeout is not None:
        CONFIG.health_probe_timeout = float(health_probe_timeout)
    if record_file is not _UNSET:
        CONFIG.record_file = str(record_file) if record_file else None


def persist(kind: str, entry: dict[str, Any]) -> None:
    """Append one record to the record file, when ``configure(record_file=...)`` set one."""
    path = CONFIG.record_file
    if not path:
        return
    line = json.dumps({"kind": kind, **entry}, default=lambda o: o.isoformat()
                      if isinstance(o, _dt.datetime) else str(o))
    with LOCK, open(path, "a", encoding="utf-8") as fh:
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
    with LOCK:
        RECORDS.promotions.clear()
        RECORDS.master_passwords.clear()
        RECORDS.auth_tokens.clear()
        RECORDS.events.clear()
        RECORDS.cache_tokens.clear()


def promotion_calls() -> list[dict[str, Any]]:
    """Every failover/switchover call the emulator received, oldest first (copies).

    Keys: seq, time (UTC datetime), action ('FailoverGlobalCluster'|'SwitchoverGlobalCluster'),
    mode ('failover'|'switchover'), global_cluster_id, target (as sent), target_cluster_id,
    from_cluster_id, allow_data_loss, region, outcome ('ok'|'error'), error.
    """
    with LOCK:
        return [dict(c) for c in RECORDS.promotions]


def master_password_calls() -> list[dict[str, Any]]:
    """Every modify_db_cluster(MasterUserPassword=...) call: time, region, cluster_id,
    password_fingerprint, outcome, error."""
    with LOCK:
        return [dict(c) for c in RECORDS.master_passwords]


def auth_token_calls() -> list[dict[str, Any]]:
    """Every modify_replication_group with AuthToken/AuthTokenUpdateStrategy: time, region,
    replication_group_id, strategy, token_fingerprint, outcome, error."""
    with LOCK:
        return [dict(c) for c in RECORDS.auth_tokens]


def cache_auth_tokens(replication_group_id: str) -> list[str]:
    """The AUTH tokens the emulated group currently accepts (after ROTATE: two, after SET: one,
    after DELETE: none). Only known for groups created/modified while installed."""
    with LOCK:
        return list(RECORDS.cache_tokens.get(replication_group_id, []))


def cloudtrail_events() -> list[dict[str, Any]]:
    """Recorded management events, oldest first (copies of the internal records)."""
    with LOCK:
        return [dict(e) for e in RECORDS.events]


def set_promotion_hook(fn: Optional[Callable[[str], Any]]) -> None:
    """Run ``fn(target_cluster_id)`` on every global cluster failover/switchover (None: record only).

    The journal entry of the running call is already in ``promotion_calls()`` (outcome
    'running') when the hook runs, so a hook can read mode and old writer from it."""
    HOOKS["promotion"] = fn


def set_master_password_hook(fn: Optional[Callable[[str, str], Any]]) -> None:
    """Run ``fn(db_cluster_id, new_password)`` on modify_db_cluster(MasterUserPassword=...)."""
    HOOKS["master_password"] = fn


def set_auth_token_hook(fn: Optional[Callable[[str, Optional[str], str], Any]]) -> None:
    """Run ``fn(replication_group_id, token, strategy)`` on modify_replication_group with an
    auth token change; strategy is 'ROTATE', 'SET' or 'DELETE' (token None for DELETE)."""
    HOOKS["auth_token"] = fn


def set_health_probe(health_check_id: str, probe: Any) -> None:
    """Make a Route 53 health check's underlying health real.

    ``probe``: a callable returning truthy when the endpoint is healthy, an http(s) URL probed
    with GET (2xx/3xx healthy, anything else or no answer unhealthy), a bool, or None to
    remove the probe (then the endpoint counts as healthy, as moto assumed)."""
    with LOCK:
        if probe is None:
            PROBES.pop(health_check_id, None)
        else:
            PROBES[health_check_id] = probe


def run_hook(kind: str, entry: dict[str, Any], args: tuple[Any, ...],
             refusal: Callable[[Exception], Exception]) -> None:
    """Run the ``kind`` hook for a recorded call and persist the record.

    The hook acts on a real service (a database role, Redis ACLs); when it raises, the record says
    outcome 'error' with the exception's class (never its message: it may hold the secret) and the
    client gets ``refusal(exc)``, the AWS error for a change that could not be applied."""
    hook = HOOKS[kind]
    try:
        if hook is not None:
            hook(*args)
    except Exception as exc:
        entry["outcome"], entry["error"] = "error", exc.__class__.__name__
        raise refusal(exc) from None
    finally:
        persist(kind, entry)


# -- patching moto ------------------------------------------------------------------------------
# The patched functions live at module level in each extension module (readable, testable, short);
# ``wrap`` binds the original moto function to them, so none of them needs a closure.


def patch(owner: Any, name: str, new: Any) -> None:
    """Replace ``owner.name`` with ``new``, remembering what to restore on ``unpatch_all``."""
    existed = name in owner.__dict__
    _PATCHES.append((owner, name, owner.__dict__.get(name), existed))
    setattr(owner, name, new)


def wrap(owner: Any, name: str, replacement: Callable[..., Any]) -> None:
    """Patch ``owner.name`` with a function calling ``replacement(original, *args, **kwargs)``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> Any:
        return replacement(original, *args, **kwargs)

    patch(owner, name, patched)


def unpatch_all() -> None:
    """Restore every patched attribute, newest first."""
    with LOCK:
        while _PATCHES:
            owner, name, original, existed = _PATCHES.pop()
            if existed:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def install_reset_hook() -> None:
    """``POST /moto-api/reset`` clears moto's backends; also clear these records."""
    from moto.moto_api._internal.models import MotoAPIBackend

    wrap(MotoAPIBackend, "reset", _reset)


def _reset(orig: Callable[..., Any], backend: Any) -> None:
    orig(backend)
    reset_records()
