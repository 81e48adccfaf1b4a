"""Locks the engine holds while a run changes something: one interface, two implementations.

``HostLock`` is an flock on a file in the journal directory (one run per target on this host; the
kernel drops it when the process dies, even by SIGKILL). ``S3Lock`` is a lease held in one S3
object, for work that must be exclusive across hosts (backups per kind and stack; failover with a
stricter takeover policy). The engine enters the lock after confirmation and calls ``check()``
before every step, so a lease taken over by someone else stops the run before its next change.

S3Lock, a lease created with a conditional put (IfNoneMatch='*'):

- acquire: ``PutObject(IfNoneMatch='*')``. S3 answers 412 if the object exists.
- the body names the holder: ``owner`` (text for people) and ``host``, ``pid``, ``pid_start``
  (the process's start time in ticks, so a reused pid is not mistaken for the holder) and
  ``pid_ns`` (the pid namespace: a container sharing the host name cannot judge our pids).
- a 412 whose lock carries our own token is ours: the reply to our put was lost and botocore's
  retry found the object we had just written.
- a holder known dead (same host and pid namespace, process gone) is taken over at once; a
  crashed run must not block the next one for a whole lease.
- expired (stale): taken over, unless the lock was made with ``take_over_expired=False``.
- ``take_over_stale=True`` (the ``--take-over-stale`` flag) takes over any other holder.
- every takeover uses ``PutObject(IfMatch=<etag of the lock we judged>)`` so two contenders cannot
  both take it over, and is reported (``took_over``, ``took_over_because`` and a warning log).
- otherwise: LockHeldError naming the owner and expiry.
- renewal: a daemon thread rewrites the lock with ``IfMatch=<our etag>`` every ttl/3, so leases
  can be short; losing the lock (someone else took it over) is recorded and raised by ``check()``.
- release: ``DeleteObject(IfMatch=<our etag>)``, so we never delete someone else's lock.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import os
import socket
import threading
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from recovery.aws import aws_error, error_code
from recovery.errors import LockHeldError
from recovery.processes import pid_namespace, process_gone, start_ticks
from recovery.transfer import iter_object

log = logging.getLogger(__name__)

_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict")
_GONE = ("NoSuchKey", "404")


class Lock(ABC):
    """What the engine needs of a lock: take it, know it is still ours, give it back."""

    @abstractmethod
    def acquire(self) -> "Lock": ...

    @abstractmethod
    def release(self) -> None: ...

    def check(self) -> None:
        """Raise LockHeldError when the lock is no longer ours (a lease someone took over)."""

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class HostLock(Lock):
    """An flock on ``<dir>/locks/<name>.lock``: one run per target on this host.

    The kernel drops it when the process dies (even by SIGKILL), so a rerun after a crash is never
    locked out by a stale lock, unlike a lease in S3.
    """

    def __init__(self, name: str, directory: Path, *, what: str = "run") -> None:
        self.path = directory / "locks" / f"{name}.lock"
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "HostLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockHeldError(f"another {self.what} of the same target is running ({holder}; lock {self.path})",
                                "wait for it to finish, or check that process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):  # no passwd entry in some containers (KeyError; OSError from 3.13)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


@dataclass
class LockInfo:
    owner: str
    token: str
    acquired_at: str
    expires_at: str
    purpose: str = ""
    host: str = ""
    pid: int | None = None
    pid_start: int | None = None
    pid_ns: str | None = None

    @property
    def expired(self) -> bool:
        try:
            exp = datetime.strptime(self.expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return True  # unreadable lock: treat as stale
        return exp <= _now()

    @property
    def dead_here(self) -> bool:
        """The holder ran on this host, in our pid namespace, and its process is gone."""
        if not self.pid or self.host != socket.gethostname() or self.pid_ns != pid_namespace():
            return False
        return process_gone(self.pid, self.pid_start)

    @classmethod
    def parse(cls, raw: bytes) -> "LockInfo":
        try:
            d = json.loads(raw)
            return cls(owner=str(d.get("owner", "?")), token=str(d.get("token", "")),
                       acquired_at=str(d.get("acquired_at", "?")), expires_at=str(d.get("expires_at", "")),
                       purpose=str(d.get("purpose", "")), host=str(d.get("host", "")), pid=_int(d.get("pid")),
                       pid_start=_int(d.get("pid_start")), pid_ns=d.get("pid_ns"))
        except (ValueError, AttributeError):
            return cls(owner="unreadable lock", token="", acquired_at="?", expires_at="")


class S3Lock(Lock):
    def __init__(self, s3: Any, bucket: str, key: str, *, ttl_seconds: int = 120, owner: str | None = None,
                 purpose: str = "", renew: bool = True, take_over_stale: bool = False,
                 take_over_expired: bool = True) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.ttl = ttl_seconds
        self.owner = owner or default_owner()
        self.purpose = purpose
        self.take_over_stale = take_over_stale
        self.take_over_expired = take_over_expired
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.acquired_at = _now()
        self.took_over: LockInfo | None = None
        self.took_over_because = ""
        self.lost: str | None = None
        self._renew = renew
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _what(self) -> str:
        return self.purpose or "lock"

    def _body(self) -> bytes:
        info = {"owner": self.owner, "token": self.token, "purpose": self.purpose,
                "acquired_at": _iso(self.acquired_at), "expires_at": _iso(_now() + timedelta(seconds=self.ttl)),
                "host": socket.gethostname(), "pid": os.getpid(), "pid_start": start_ticks(os.getpid()),
                "pid_ns": pid_namespace()}
        return json.dumps(info).encode()

    def _put(self, **cond: str) -> str:
        resp = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(),
                                  ContentType="application/json", **cond)
        return str(resp["ETag"])

    def read(self) -> tuple[LockInfo | None, str | None]:
        """The current lock holder and the lock object's ETag, or (None, None) if free."""
        try:
            resp, chunks = iter_object(self.s3, self.bucket, self.key, map_errors=False)
        except ClientError as exc:
            if error_code(exc) in _GONE:
                return None, None
            raise
        return LockInfo.parse(b"".join(chunks)), str(resp["ETag"])

    def _takeover_reason(self, holder: LockInfo) -> str | None:
        """Why `holder` may be displaced, or None when it must be respected."""
        if holder.dead_here:
            return f"its process {holder.pid} on {holder.host} is gone"
        if self.take_over_stale:
            return "--take-over-stale"
        if holder.expired and self.take_over_expired:
            return f"expired {holder.expires_at}"
        return None

    def _refusal(self, holder: LockInfo) -> LockHeldError:
        if holder.expired:
            return LockHeldError(f"the {self._what} s3://{self.bucket}/{self.key} is stale (held by {holder.owner},"
                                 f" expired {holder.expires_at})", "make sure that run is gone, then rerun with --take-over-stale")
        return LockHeldError(f"the {self._what} is held by {holder.owner} since {holder.acquired_at}"
                             f" (expires {holder.expires_at})",
                             "wait for that run to finish; if it is gone, rerun with --take-over-stale")

    def acquire(self) -> "S3Lock":
        doing = f"taking lock s3://{self.bucket}/{self.key}"
        try:
            for _attempt in range(3):
                try:
                    self.etag = self._put(IfNoneMatch="*")
                    self.took_over, self.took_over_because = None, ""  # it was free: nobody displaced
                    break
                except ClientError as exc:
                    if error_code(exc) not in _CONFLICT:
                        raise
                holder, etag = self.read()
                if holder is None:
                    continue  # released between our put and our read: try again
                if holder.token == self.token:
                    self.etag = etag  # our own put, whose reply was lost (botocore retried it)
                    break
                why = self._takeover_reason(holder)
                if why is None:
                    raise self._refusal(holder)
                # Recorded before the put: if its reply is lost, the next round finds our token.
                self.took_over, self.took_over_because = holder, why
                try:
                    self.etag = self._put(IfMatch=str(etag))
                except ClientError as exc:
                    if error_code(exc) in _CONFLICT + _GONE:
                        continue  # someone else took it over or released it first (or it was us: see above)
                    raise
                break
            else:
                raise LockHeldError(f"the {self._what} is contended", "retry in a minute")
            if self.took_over:
                h = self.took_over
                log.warning("took over the stale %s, held by %s since %s (%s)", self._what, h.owner, h.acquired_at,
                            self.took_over_because)
        except LockHeldError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a one-line error (aws_error)
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
                if error_code(exc) not in _CONFLICT + _GONE:
                    log.warning("could not renew %s: %s", self._what, exc)
                    continue
                if self._still_ours():
                    continue  # our renewal landed but its reply was lost
                self.lost = "the lock was taken over by another run"
                log.error("%s: %s", self._what, self.lost)
                return
            except Exception as exc:  # noqa: BLE001 - keep trying until the lease runs out
                log.warning("could not renew %s: %s", self._what, exc)

    def _still_ours(self) -> bool:
        try:
            holder, etag = self.read()
        except Exception:  # noqa: BLE001 - unknown: the next renewal asks again
            return True
        if holder is not None and holder.token == self.token:
            self.etag = etag
            return True
        return False

    def check(self) -> None:
        if self.lost:
            raise LockHeldError(f"the {self._what}: {self.lost}", "another run is now responsible; check it")

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.etag and not self.lost:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except ClientError as exc:
                # Gone, or no longer ours: our retried delete after a lost reply, or a takeover.
                if error_code(exc) not in _CONFLICT + _GONE:
                    log.warning("could not release %s (%s); it expires on its own", self._what, error_code(exc))
            except Exception as exc:  # noqa: BLE001 - best effort: the lease expires on its own
                log.warning("could not release %s (%s); it expires on its own", self._what, exc)
        self.etag = None
