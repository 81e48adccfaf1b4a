"""A lease lock held in one S3 object, created with a conditional put (IfNoneMatch='*').

General purpose: backups lock per kind and stack; failover and restores can reuse it.

- acquire: ``PutObject(IfNoneMatch='*')``. S3 answers 412 if the object exists.
- held by someone else and not expired: LockHeldError naming the owner and expiry.
- expired (stale): taken over with ``PutObject(IfMatch=<etag of the stale lock>)`` so two
  contenders cannot both take it over; the takeover is reported (``took_over`` + a warning log).
- renewal: a daemon thread rewrites the lock with ``IfMatch=<our etag>`` every ttl/3; losing the
  lock (someone else took it over) is recorded and raised by ``check()``.
- release: ``DeleteObject(IfMatch=<our etag>)``, so we never delete someone else's lock.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import ClientError

from recovery.aws import aws_error, error_code
from recovery.errors import LockHeldError

log = logging.getLogger(__name__)


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LockInfo:
    owner: str
    token: str
    acquired_at: str
    expires_at: str
    purpose: str = ""

    @property
    def expired(self) -> bool:
        try:
            exp = datetime.strptime(self.expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return True  # unreadable lock: treat as stale
        return exp <= _now()


class S3Lock:
    def __init__(self, s3: Any, bucket: str, key: str, *, ttl_seconds: int = 900, owner: str | None = None,
                 purpose: str = "", renew: bool = True) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.ttl = ttl_seconds
        self.owner = owner or default_owner()
        self.purpose = purpose
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.acquired_at = _now()
        self.took_over: LockInfo | None = None
        self.lost: str | None = None
        self._renew = renew
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        info = {"owner": self.owner, "token": self.token, "purpose": self.purpose,
                "acquired_at": _iso(self.acquired_at), "expires_at": _iso(_now() + timedelta(seconds=self.ttl))}
        return json.dumps(info).encode()

    def _put(self, **cond: str) -> str:
        resp = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(),
                                  ContentType="application/json", **cond)
        return str(resp["ETag"])

    def read(self) -> tuple[LockInfo | None, str | None]:
        """The current lock holder and the lock object's ETag, or (None, None) if free."""
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None, None
            raise
        try:
            d = json.loads(resp["Body"].read())
            info = LockInfo(owner=str(d.get("owner", "?")), token=str(d.get("token", "")),
                            acquired_at=str(d.get("acquired_at", "?")), expires_at=str(d.get("expires_at", "")),
                            purpose=str(d.get("purpose", "")))
        except ValueError:
            info = LockInfo(owner="unreadable lock", token="", acquired_at="?", expires_at="")
        return info, str(resp["ETag"])

    def acquire(self) -> "S3Lock":
        doing = f"taking lock s3://{self.bucket}/{self.key}"
        try:
            for _attempt in range(3):
                try:
                    self.etag = self._put(IfNoneMatch="*")
                    break
                except ClientError as exc:
                    if error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                        raise
                holder, etag = self.read()
                if holder is None:
                    continue  # released between our put and our read: try again
                if not holder.expired:
                    raise LockHeldError(
                        f"the {self.purpose or 'lock'} is held by {holder.owner} since {holder.acquired_at}"
                        f" (expires {holder.expires_at})",
                        "wait for that run to finish; a dead run's lock is taken over after it expires",
                    )
                try:
                    self.etag = self._put(IfMatch=str(etag))
                except ClientError as exc:
                    if error_code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404", "ConditionalRequestConflict"):
                        continue  # someone else took it over or released it first
                    raise
                self.took_over = holder
                log.warning("took over the stale %s, held by %s since %s (expired %s)",
                            self.purpose or "lock", holder.owner, holder.acquired_at, holder.expires_at)
                break
            else:
                raise LockHeldError(f"the {self.purpose or 'lock'} is contended", "retry in a minute")
        except LockHeldError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, doing, bucket=self.bucket) from None
        if self._renew:
            self._thread = threading.Thread(target=self._renew_loop, name="lock-renew", daemon=True)
            self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(max(1.0, self.ttl / 3)):
            try:
                self.etag = self._put(IfMatch=str(self.etag))
            except ClientError as exc:
                if error_code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    self.lost = "the lock was taken over by another run"
                    log.error("%s: %s", self.purpose or "lock", self.lost)
                    return
                log.warning("could not renew %s: %s", self.purpose or "lock", exc)
            except Exception as exc:  # noqa: BLE001 - keep trying until the lease runs out
                log.warning("could not renew %s: %s", self.purpose or "lock", exc)

    def check(self) -> None:
        if self.lost:
            raise LockHeldError(f"the {self.purpose or 'lock'}: {self.lost}", "another run is now responsible; check it")

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.etag and not self.lost:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except ClientError as exc:
                log.warning("could not release %s (%s); it expires on its own", self.purpose or "lock", error_code(exc))
            except Exception as exc:  # noqa: BLE001
                log.warning("could not release %s (%s); it expires on its own", self.purpose or "lock", exc)
        self.etag = None

    def __enter__(self) -> "S3Lock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
