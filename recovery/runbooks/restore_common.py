"""What the restore runbooks share: resolving a backup, streaming it verified, timing the phases,
running a runbook with the right exit code, and the test hooks.

Streaming a backup (``BackupStream``): one GetObject stream (pinned to the manifest's version) ->
sha256 of the stored bytes -> decompression (``recovery.stream.decompressor``) -> the consumer.
Nothing is staged on disk or held whole in memory. A restore reads the object twice:

1. ``verify_backup`` streams it once to check sha256, size, decompression and structure
   (``recovery.runbooks.verify.scan_backup``) *before* anything is written anywhere;
2. the restore streams it again into psql / tar extraction and checks sha256 and size once more at
   the end, so bytes that changed between the passes are caught too (the scratch copy is dropped).

Against moto a single stream reads ~750 MB/s, so the second pass costs little; on AWS it costs one
more GET of the object, which is cheaper than staging a dump the size of the database on disk.

Test hooks (environment variables, read only by the restore runbooks; see docs/runbooks-restore.md):

* ``RECOVERY_TEST_CRASH_AT=<runbook>:<step>:<before|after>`` - the process SIGKILLs itself just
  before the step's action starts, or just after it returns and before the journal records it
  (the worst moment: the work is done but nobody knows). Used by the crash tests.
* ``RECOVERY_TEST_FAULT=enospc`` - the chain extraction fails with ENOSPC after its first file,
  as a full disk would (a tiny filesystem needs a root mount, which tests cannot rely on).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from recovery.catalog import Catalog, Entry, Manifest
from recovery.errors import InputError, IntegrityError, RecoveryError, StepFailedError
from recovery.runbook import ConsoleReporter, Journal, JournalStore, Runbook, Step, StepContext
from recovery.stream import decompressor
from recovery.transfer import iter_object

CRASH_ENV = "RECOVERY_TEST_CRASH_AT"
PROGRESS_EVERY_S = 5.0
FAULT_ENV = "RECOVERY_TEST_FAULT"


# ------------------------------------------------------------------------------------ test hooks


def crash_point(runbook: str, step: str, when: str) -> None:
    """SIGKILL this process when RECOVERY_TEST_CRASH_AT names this point (tests only)."""
    want = os.environ.get(CRASH_ENV)
    if want and want == f"{runbook}:{step}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)


def fault(name: str) -> bool:
    return os.environ.get(FAULT_ENV) == name


def enospc(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def hooked(runbook: str, step: Step) -> Step:
    """The same step, with crash points before and after its action."""

    def action(ctx: StepContext) -> Any:
        crash_point(runbook, step.name, "before")
        out = step.action(ctx)
        crash_point(runbook, step.name, "after")
        return out

    return dataclasses.replace(step, action=action)


# ------------------------------------------------------------------------------------ backups


def resolve_backup(cat: Catalog, kind: str, backup: str) -> Entry:
    """``latest`` (newest with a manifest) or a key / file name, which must be of ``kind``."""
    if backup == "latest":
        e = cat.latest(kind)
        if e is None:
            raise InputError(f"no {kind} backup in s3://{cat.bucket} (a backup without a manifest does not count)",
                             f"take one with `recovery backup {kind}` or pass --backup KEY")
        return e
    e = cat.get(backup)
    if e.manifest.kind != kind:
        raise InputError(f"{backup} is a {e.manifest.kind} backup, not a {kind} backup",
                         f"use `recovery list --kind {kind}`")
    return e


@dataclass
class Phases:
    """Seconds spent in each phase of a streamed restore (busy time in this process; psql and
    tar-free extraction overlap with the download in wall-clock terms)."""

    download: float = 0.0
    decompress: float = 0.0
    apply: float = 0.0  # SQL (writing into psql and waiting for it) or extraction
    stored_bytes: int = 0
    raw_bytes: int = 0

    def as_detail(self, apply_name: str) -> dict[str, Any]:
        return {"download_s": round(self.download, 3), "decompress_s": round(self.decompress, 3),
                f"{apply_name}_s": round(self.apply, 3), "stored_bytes": self.stored_bytes,
                "raw_bytes": self.raw_bytes}


@dataclass
class BackupStream:
    """Iterate the decompressed bytes of a backup; sha256 and size are checked at the end."""

    s3: Any
    manifest: Manifest
    phases: Phases = field(default_factory=Phases)
    progress: Callable[[str], None] | None = None  # a line every PROGRESS_EVERY_S seconds

    def chunks(self) -> Iterator[bytes]:
        m = self.manifest
        _, body = iter_object(self.s3, m.bucket, m.key, version_id=m.version_id)
        feed, close = decompressor(m.format)
        h = hashlib.sha256()
        ph = self.phases
        t = time.monotonic()
        shown = time.monotonic()
        for chunk in body:
            now = time.monotonic()
            if self.progress is not None and now - shown >= PROGRESS_EVERY_S:
                shown = now
                pct = 100.0 * ph.stored_bytes / m.stored_bytes if m.stored_bytes else 0.0
                self.progress(f"{m.name}: {ph.stored_bytes / 1e6:.0f} of {m.stored_bytes / 1e6:.0f} MB read "
                              f"({pct:.0f}%), {ph.raw_bytes / 1e6:.0f} MB decompressed")
            ph.download += now - t
            h.update(chunk)
            ph.stored_bytes += len(chunk)
            out = feed(chunk)
            t = time.monotonic()
            ph.decompress += t - now
            if out:
                ph.raw_bytes += len(out)
                yield out
                t = time.monotonic()
        ph.download += time.monotonic() - t
        close()
        if h.hexdigest() != m.sha256 or ph.stored_bytes != m.stored_bytes:
            raise IntegrityError(
                f"{m.name} changed while it was read: sha256 {h.hexdigest()[:12]} ({ph.stored_bytes} bytes) "
                f"!= manifest {m.sha256[:12]} ({m.stored_bytes} bytes)", "nothing was swapped in; rerun")


def verify_backup(s3: Any, e: Entry) -> dict[str, Any]:
    """Stream the backup once (no disk): sha256, size, decompression and structure vs the manifest."""
    from recovery.runbooks.verify import check_backup_entry

    m = e.manifest
    t0 = time.monotonic()
    r = check_backup_entry(s3, e)
    if r.sha256 != m.sha256 or r.stored_bytes != m.stored_bytes:
        raise IntegrityError(f"bad checksum: {m.name} has sha256 {r.sha256[:12]} ({r.stored_bytes} bytes), "
                             f"the manifest says {m.sha256[:12]} ({m.stored_bytes} bytes)",
                             "the object is corrupt; restore an older backup with --backup KEY")
    if r.error:
        raise IntegrityError(f"{m.name}: {r.error}", "restore an older backup with --backup KEY")
    if not r.structure_ok:
        raise IntegrityError(f"{m.name}: {r.structure}", "restore an older backup with --backup KEY")
    return {"key": m.key, "format": m.format, "sha256": m.sha256, "stored_bytes": m.stored_bytes,
            "raw_bytes": r.raw_bytes, "backup_time": m.ended_at, "verify_s": round(time.monotonic() - t0, 3)}


# ------------------------------------------------------------------------------------ running


def exit_code_of(err: StepFailedError) -> int:
    """A failed step exits with its cause's code (8 checksum, 6 database, 15 services, 11 deadline,
    ...) so scripts can tell failures apart; 10 when the cause is not a RecoveryError."""
    cause = err.__cause__
    return cause.exit_code if isinstance(cause, RecoveryError) else StepFailedError.exit_code


def execute(rb: Runbook, store: JournalStore, *, yes: bool, dry_run: bool,
            reporter: ConsoleReporter | None = None, lock: Any = None,
            on_failure: Callable[[Journal], None] | None = None) -> tuple[Journal | None, dict[str, Any] | None]:
    """Dry run (returns the plan) or run (returns the journal). ``lock`` is entered by the engine
    after confirmation, so a refused run leaves no trace at all. On a step failure ``on_failure``
    puts the system back as it was (when it can) and the StepFailedError is re-raised with the
    cause's exit code."""
    reporter = reporter or ConsoleReporter()
    if dry_run:
        return None, rb.dry_run(store, reporter).to_dict()
    try:
        return rb.run(store, reporter, yes=yes, lock=lock), None
    except StepFailedError as err:
        journal = getattr(err, "journal", None)
        if on_failure is not None and journal is not None:
            try:
                on_failure(journal)
            except Exception as exc:  # noqa: BLE001 - the step's own failure is what gets reported
                why = exc.line() if isinstance(exc, RecoveryError) else f"{type(exc).__name__}: {exc}"
                reporter.message(f"cleanup after the failure also failed: {why}")
        err.exit_code = exit_code_of(err)
        raise


def done(journal: Journal, step: str) -> bool:
    try:
        return journal.step(step).status in ("ok", "held", "skipped")
    except KeyError:
        return False


def stamp(run_id: str) -> str:
    """The run's start time as used in quarantine names: 20261125T171600Z."""
    return run_id.split("-", 1)[0]


class LocalLock:
    """An flock on a file in the journal directory: one restore per target on this host.

    The kernel drops it when the process dies (even by SIGKILL), so a rerun after a crash is never
    locked out by a stale lock, unlike a lease in S3.
    """

    def __init__(self, name: str) -> None:
        from recovery.runbook import default_journal_dir

        self.path = default_journal_dir() / "locks" / f"{name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> "LocalLock":
        import fcntl

        from recovery.errors import LockHeldError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockHeldError(f"another restore of the same target is running ({holder}; lock {self.path})",
                                "wait for it to finish, or check that process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_production(stack: str) -> bool:
    """Production targets need their name retyped at the confirmation prompt."""
    return "prod" in stack.rsplit("/", 1)[-1].lower()
