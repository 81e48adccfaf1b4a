"""The run journal: what happened in one run, step by step, and where it is kept.

A journal is saved when each step starts (carrying the previous step's result), when one fails and
when the run ends, so a crash at any point leaves a record a rerun can resume from. Stores: the
stack's bucket under ``runs/`` (S3), a local directory, and the usual pairing of both (S3 first,
the local directory when S3 is unreachable, which it may be in a disaster).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from recovery.errors import AwsAccessError, RecoveryError, one_line

SCHEMA = 1

# Step results as the journal records them.
PENDING = "pending"  # not reached yet
RUNNING = "running"  # started, no end recorded (in flight, or the process died)
OK = "ok"  # the action ran and returned
HELD = "held"  # the step's check said it already holds, so the action did not run
SKIPPED = "skipped"  # no check, and an earlier attempt of this run completed it
FAILED = "failed"  # the action or the check raised

DONE = (OK, HELD, SKIPPED)

# Run states.
RUN_RUNNING = "running"
RUN_OK = "ok"
# Every step ran, but some reported what they could not restore (detail key "not_restored"):
# finished (nothing to resume), and never said to be "ok".
RUN_PARTIAL = "partial"
RUN_FAILED = "failed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_run_id() -> str:
    """Sortable by start time: 20261125T171600Z-3f9a1c."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_stamp(run_id: str) -> str:
    """The run's start time as used in quarantine names: 20261125T171600Z."""
    return run_id.split("-", 1)[0]


# --------------------------------------------------------------------------------------------
# The journal
# --------------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    name: str
    touches: str = ""
    status: str = PENDING
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    attempts: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "touches": self.touches,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "attempts": self.attempts,
            "detail": self.detail,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepRecord:
        return cls(
            name=str(d["name"]),
            touches=str(d.get("touches", "")),
            status=str(d.get("status", PENDING)),
            started_at=d.get("started_at"),
            ended_at=d.get("ended_at"),
            duration_s=d.get("duration_s"),
            attempts=int(d.get("attempts", 0)),
            detail=dict(d.get("detail") or {}),
            error=d.get("error"),
        )


@dataclass
class Journal:
    """What happened in one run, step by step. Its JSON form is the runbook's --json result."""

    runbook: str
    run_id: str
    target: str
    production: bool
    params: dict[str, Any]
    steps: list[StepRecord]
    status: str = RUN_RUNNING
    started_at: str = field(default_factory=_now)
    ended_at: str | None = None
    error: str | None = None
    failed_step: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    location: str | None = None  # where the store keeps it; set by the store

    @property
    def finished(self) -> bool:
        return self.status in (RUN_OK, RUN_PARTIAL)

    def not_restored(self) -> list[str]:
        """What the steps said they could not restore, in step order."""
        return [str(x) for rec in self.steps for x in (rec.detail or {}).get("not_restored") or []]

    def completed(self, name: str) -> bool:
        """Whether the step `name` is done in this run (ran, held, or skipped as done before)."""
        return any(rec.name == name and rec.status in DONE for rec in self.steps)

    def step(self, name: str) -> StepRecord:
        for rec in self.steps:
            if rec.name == name:
                return rec
        raise KeyError(name)

    def step_durations(self) -> dict[str, float | None]:
        """Seconds each step's last attempt took (None for steps that did not run). RTO input."""
        return {rec.name: rec.duration_s for rec in self.steps}

    def elapsed_s(self) -> float | None:
        """Wall time from the first attempt's start to the run's end, crashes included."""
        if not self.ended_at:
            return None
        start = datetime.fromisoformat(self.started_at)
        end = datetime.fromisoformat(self.ended_at)
        return (end - start).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "runbook": self.runbook,
            "run_id": self.run_id,
            "target": self.target,
            "production": self.production,
            "params": self.params,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "elapsed_s": self.elapsed_s(),
            "error": self.error,
            "failed_step": self.failed_step,
            "not_restored": self.not_restored(),
            "attempts": self.attempts,
            "location": self.location,
            "steps": [rec.to_dict() for rec in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Journal:
        return cls(
            runbook=str(d["runbook"]),
            run_id=str(d["run_id"]),
            target=str(d["target"]),
            production=bool(d.get("production", False)),
            params=dict(d.get("params") or {}),
            steps=[StepRecord.from_dict(s) for s in d.get("steps", [])],
            status=str(d.get("status", RUN_RUNNING)),
            started_at=str(d.get("started_at") or _now()),
            ended_at=d.get("ended_at"),
            error=d.get("error"),
            failed_step=d.get("failed_step"),
            attempts=list(d.get("attempts") or []),
            location=d.get("location"),
        )


def journal_key(prefix: str, runbook: str, run_id: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{runbook}/{run_id}.json" if prefix else f"{runbook}/{run_id}.json"


class JournalStore(ABC):
    """Where journals live. ``save`` is called at each step's start, at a failure and at the run's end."""

    @abstractmethod
    def save(self, journal: Journal) -> None: ...

    @abstractmethod
    def run_ids(self, runbook: str) -> list[str]:
        """Every stored run id of this runbook, any order."""

    @abstractmethod
    def load(self, runbook: str, run_id: str) -> Journal | None: ...

    @abstractmethod
    def runbooks(self) -> list[str]:
        """Every runbook name with a folder of journals here, any order (for `recovery runs`)."""

    @abstractmethod
    def describe(self, runbook: str, run_id: str) -> str:
        """Where this journal is (s3://... or a path), for messages."""

    def latest(self, runbook: str, target: str) -> Journal | None:
        """The newest journal of ``runbook`` aimed at ``target``, finished or not."""
        for run_id in sorted(self.run_ids(runbook), reverse=True):
            journal = self.load(runbook, run_id)
            if journal is not None and journal.target == target:
                return journal
        return None


class LocalJournalStore(JournalStore):
    """``<root>/runs/<runbook>/<run-id>.json``, each write a temp file renamed into place."""

    def __init__(self, root: str | os.PathLike[str], prefix: str = "runs") -> None:
        self.root = Path(root)
        self.prefix = prefix

    def _path(self, runbook: str, run_id: str) -> Path:
        return self.root / journal_key(self.prefix, runbook, run_id)

    def describe(self, runbook: str, run_id: str) -> str:
        return str(self._path(runbook, run_id))

    def save(self, journal: Journal) -> None:
        path = self._path(journal.runbook, journal.run_id)
        journal.location = str(path)
        data = journal.to_json().encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise RecoveryError(
                f"cannot write the run journal {path}: {exc.strerror or exc}",
                "free space or fix permissions there, or set RECOVERY_JOURNAL_DIR",
            ) from exc

    def run_ids(self, runbook: str) -> list[str]:
        folder = self.root / journal_key(self.prefix, runbook, "x").rsplit("/", 1)[0]
        if not folder.is_dir():
            return []
        return [p.stem for p in folder.glob("*.json") if not p.name.startswith(".")]

    def runbooks(self) -> list[str]:
        folder = self.root / self.prefix.strip("/")
        return [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] if folder.is_dir() else []

    def load(self, runbook: str, run_id: str) -> Journal | None:
        path = self._path(runbook, run_id)
        try:
            journal = Journal.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            raise RecoveryError(
                f"run journal {path} is unreadable: {exc}", "move it aside and rerun"
            ) from exc
        journal.location = str(path)
        return journal


class S3JournalStore(JournalStore):
    """``s3://<bucket>/runs/<runbook>/<run-id>.json`` through a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "runs") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, runbook: str, run_id: str) -> str:
        return journal_key(self.prefix, runbook, run_id)

    def describe(self, runbook: str, run_id: str) -> str:
        return f"s3://{self.bucket}/{self._key(runbook, run_id)}"

    def _fail(self, what: str, exc: Exception) -> AwsAccessError:
        return AwsAccessError(
            f"cannot {what} run journals in s3://{self.bucket}/{self.prefix}: {one_line(exc)}",
            "check the bucket and your AWS credentials, or use the local journal",
        )

    def save(self, journal: Journal) -> None:
        journal.location = self.describe(journal.runbook, journal.run_id)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(journal.runbook, journal.run_id),
                Body=journal.to_json().encode(),
                ContentType="application/json",
            )
        except Exception as exc:  # noqa: BLE001 - any failure of the store is one AwsAccessError (_fail)
            raise self._fail("write", exc) from exc

    def run_ids(self, runbook: str) -> list[str]:
        folder = self._key(runbook, "x").rsplit("/", 1)[0] + "/"
        ids: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(folder) :]
                    if name.endswith(".json") and "/" not in name:
                        ids.append(name[: -len(".json")])
        except Exception as exc:  # noqa: BLE001 - as in save()
            raise self._fail("list", exc) from exc
        return ids

    def runbooks(self) -> list[str]:
        folder = self.prefix.strip("/") + "/" if self.prefix.strip("/") else ""
        names: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/"):
                names += [p["Prefix"][len(folder):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        except Exception as exc:  # noqa: BLE001 - as in save()
            raise self._fail("list", exc) from exc
        return names

    def load(self, runbook: str, run_id: str) -> Journal | None:
        key = self._key(runbook, run_id)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - as in save(); a missing journal is None
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return None
            raise self._fail("read", exc) from exc
        try:
            journal = Journal.from_dict(json.loads(body))
        except (ValueError, KeyError) as exc:
            raise RecoveryError(
                f"run journal s3://{self.bucket}/{key} is unreadable: {exc}",
                "move it aside and rerun",
            ) from exc
        journal.location = self.describe(runbook, run_id)
        return journal


class FallbackJournalStore(JournalStore):
    """Write to ``primary`` (S3); if that fails, say so once and keep writing to ``fallback``.

    A disaster may well take the bucket's region with it; the journal must not be lost then.
    Reads consult both and prefer the newer copy of a run.
    """

    def __init__(
        self, primary: JournalStore, fallback: JournalStore, warn: Callable[[str], None] | None = None
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.warn = warn or (lambda text: None)
        self.degraded = False

    def describe(self, runbook: str, run_id: str) -> str:
        store = self.fallback if self.degraded else self.primary
        return store.describe(runbook, run_id)

    def save(self, journal: Journal) -> None:
        if not self.degraded:
            try:
                self.primary.save(journal)
                return
            except RecoveryError as exc:
                self.degraded = True
                self.warn(
                    f"journal: {exc.problem}; writing it to "
                    f"{self.fallback.describe(journal.runbook, journal.run_id)} instead"
                )
        self.fallback.save(journal)

    def _safe(self, fn: Callable[[], Any], default: Any) -> Any:
        try:
            return fn()
        except RecoveryError as exc:
            self.warn(f"journal: {exc.problem}")
            return default

    def run_ids(self, runbook: str) -> list[str]:
        ids = set(self._safe(lambda: self.primary.run_ids(runbook), []))
        ids.update(self.fallback.run_ids(runbook))
        return list(ids)

    def runbooks(self) -> list[str]:
        return sorted(set(self._safe(self.primary.runbooks, [])) | set(self.fallback.runbooks()))

    def load(self, runbook: str, run_id: str) -> Journal | None:
        candidates: list[Journal | None] = [
            self._safe(lambda: self.primary.load(runbook, run_id), None),
            self.fallback.load(runbook, run_id),
        ]
        found: list[Journal] = [j for j in candidates if j is not None]
        if not found:
            return None

        def progress(j: Journal) -> tuple[int, str]:
            return (len(j.attempts), max((s.ended_at or s.started_at or "") for s in j.steps) if j.steps else "")

        return max(found, key=progress)


def default_journal_dir() -> Path:
    """``$RECOVERY_JOURNAL_DIR``, else ``$XDG_STATE_HOME/xai-recovery``, else ~/.local/state/xai-recovery."""
    env = os.environ.get("RECOVERY_JOURNAL_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "xai-recovery"


def journal_store(
    s3_client: Any = None,
    bucket: str | None = None,
    *,
    local_dir: str | os.PathLike[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> JournalStore:
    """The usual store: the stack's bucket under ``runs/``, falling back to the local directory.

    Without a client or bucket, the local directory alone (``default_journal_dir()`` unless given).
    """
    local = LocalJournalStore(local_dir if local_dir is not None else default_journal_dir())
    if s3_client is None or not bucket:
        return local
    return FallbackJournalStore(S3JournalStore(s3_client, bucket), local, warn)


