"""ElastiCache: modify_replication_group(AuthToken, AuthTokenUpdateStrategy) reaches a real Redis.

AWS: ROTATE (the default when only AuthToken is given) adds the new token and keeps the current
one valid; SET makes the new token the only one; DELETE removes AUTH (no AuthToken allowed).
AuthTokenEnabled and AuthTokenLastModifiedDate follow.

moto 5.2.5: accepts the parameters and ignores them.

This extension: validates the combination (InvalidParameterValue / InvalidParameterCombination
like AWS), calls ``fn(group_id, token, strategy)`` registered with ``set_auth_token_hook`` (the
local environment changes Redis ACL passwords), records the call (token fingerprint only), keeps
the emulated set of accepted tokens (``cache_auth_tokens(group_id)``; the creation token is
remembered too), and updates AuthTokenEnabled / AuthTokenLastModifiedDate. A hook exception
becomes InvalidReplicationGroupState and changes nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from recovery.local.emulator.records import LOCK, RECORDS, fingerprint, now, run_hook, wrap


def install() -> None:
    from moto.elasticache.responses import ElastiCacheResponse

    wrap(ElastiCacheResponse, "create_replication_group", _create_replication_group)
    wrap(ElastiCacheResponse, "modify_replication_group", _modify_replication_group)


def _error(code: str, message: str) -> Exception:
    from moto.elasticache.exceptions import ElastiCacheException

    # moto finds the error model through the exception's module, so the class must live
    # (nominally) in moto.elasticache.exceptions
    cls = type(code, (ElastiCacheException,),
               {"code": code, "__module__": ElastiCacheException.__module__})
    return cls(message)


def _create_replication_group(orig: Callable[..., Any], resp: Any) -> Any:
    result = orig(resp)
    token = resp._get_param("AuthToken")
    gid = resp._get_param("ReplicationGroupId")
    with LOCK:
        RECORDS.cache_tokens[gid] = [token] if token else []
    return result


def _modify_replication_group(orig: Callable[..., Any], resp: Any) -> Any:
    token = resp._get_param("AuthToken")
    strategy = resp._get_param("AuthTokenUpdateStrategy")
    if token is None and strategy is None:
        return orig(resp)
    strategy = _checked_strategy(token, strategy)
    gid = resp._get_param("ReplicationGroupId")
    group = resp.elasticache_backend.replication_groups.get(gid)
    if group is None:
        return orig(resp)  # moto raises ReplicationGroupNotFoundFault
    _record_and_run_hook(resp.region, gid, token, strategy)
    with LOCK:
        current = RECORDS.cache_tokens.setdefault(gid, [])
        if strategy == "ROTATE":
            current[:] = [t for t in current if t != token][-1:] + [token]
        elif strategy == "SET":
            current[:] = [token]
        else:
            current[:] = []
    group.auth_token_enabled = strategy != "DELETE"
    group.auth_token_last_modified_date = now()
    return orig(resp)


def _checked_strategy(token: Optional[str], strategy: Optional[str]) -> str:
    """The strategy (ROTATE when only a token is given), refused as AWS refuses it."""
    strategy = (strategy or "ROTATE").upper()
    if strategy not in ("ROTATE", "SET", "DELETE"):
        raise _error("InvalidParameterValue", f"Invalid AuthTokenUpdateStrategy {strategy}")
    if strategy == "DELETE" and token is not None:
        raise _error("InvalidParameterCombination",
                     "AuthToken can't be specified with the DELETE strategy.")
    if strategy != "DELETE" and not token:
        raise _error("InvalidParameterValue",
                     f"AuthToken is required with the {strategy} strategy.")
    if token is not None and not 16 <= len(token) <= 128:
        raise _error("InvalidParameterValue",
                     "The AuthToken must be between 16 and 128 characters.")
    return strategy


def _record_and_run_hook(region: str, gid: str, token: Optional[str], strategy: str) -> None:
    """Record the call (token fingerprint only) and run the hook; a failing hook refuses it."""
    entry = {"time": now(), "region": region, "replication_group_id": gid,
             "strategy": strategy, "token_fingerprint": fingerprint(token),
             "outcome": "ok", "error": None}
    with LOCK:
        RECORDS.auth_tokens.append(entry)
    run_hook("auth_token", entry, (gid, token, strategy), lambda exc: _error(
        "InvalidReplicationGroupState",
        f"could not apply the auth token change to {gid}: {exc.__class__.__name__}"))
