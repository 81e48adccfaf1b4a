"""Reading a backup back: resolving which one, checking it cheaply, streaming it verified, timing the phases.

Streaming a backup (``BackupStream``): one GetObject stream (pinned to the manifest's version) ->
sha256 of the stored bytes -> decompression (``recovery.stream.decompressor``) -> the consumer.
Nothing is staged on disk or held whole in memory. A restore reads the object once:

1. ``check_backup`` reads no body: the manifest is there, HEAD of the object agrees with it (the
   version the manifest pins, its size, no newer overwrite), the format is one this version
   restores, and there is room for it (recovery/backups/space.py, against the manifest's raw size);
2. the restore streams it into its scratch database / staging directory, checking the structure
   as it passes and the sha256 and size at the end; nothing is swapped in unless they all hold, and
   a mismatch drops the scratch copy (psql is killed before its single transaction could commit).

``prefetch`` runs the download, sha256 and decompression one thread ahead of the consumer (isal,
zstd and hashlib release the GIL), so the load or the extraction overlaps with them.
``verify_backup`` (a full streamed check, nothing written) stays for the callers that verify
without restoring: the config restore, the preflight report and the drills.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterator

from botocore.exceptions import ClientError

from recovery.catalog import KINDS, Catalog, Entry, Manifest
from recovery.backups.parallel_format import check_parts_present
from recovery.backups.verify import check_backup_entry
from recovery.aws import aws_error, error_code
from recovery.errors import InputError, IntegrityError
from recovery.units import human_bytes
from recovery.stream import FORMATS, decompressor
from recovery.transfer import iter_object

PROGRESS_EVERY_S = 5.0
TICK_S = 0.5  # a terminal's progress line


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


def resolve_any(cat: Catalog, backup: str) -> Entry:
    """Any kind: ``latest-db`` / ``latest-chain`` / ``latest-config`` (``latest`` of that kind, as the
    restores' ``--backup latest`` means it), ``latest`` (the newest of every kind), or a key / file name."""
    kind = backup[len("latest-"):] if backup.startswith("latest-") else None
    if kind is not None:
        if kind not in KINDS:
            raise InputError(f"{backup!r} names no kind of backup", "use latest, " + ", ".join(f"latest-{k}" for k in KINDS))
        return resolve_backup(cat, kind, "latest")
    if backup == "latest":
        newest = [e for k in KINDS if (e := cat.latest(k)) is not None]
        if not newest:
            raise InputError(f"no backup in s3://{cat.bucket} (a backup without a manifest does not count)",
                             "take one with `recovery backup db|chain|config`")
        return max(newest, key=lambda e: (e.manifest.ended_at, e.manifest.key))
    return cat.get(backup)


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
    # a runbook step's progress (StepContext.progress): the line, bytes read and the backup's stored
    # size, every TICK_S, so a terminal can show a percentage and an ETA (its reporter thins it for logs)
    counted: Callable[[str, float, float], None] | None = None

    def chunks(self) -> Iterator[bytes]:
        m = self.manifest
        _, body = iter_object(self.s3, m.bucket, m.key, version_id=m.version_id)
        feed, close = decompressor(m.format)
        h = hashlib.sha256()
        ph = self.phases
        t = time.monotonic()
        shown = ticked = time.monotonic()
        for chunk in body:
            now = time.monotonic()
            if self.progress is not None and now - shown >= PROGRESS_EVERY_S:
                shown = now
                pct = 100.0 * ph.stored_bytes / m.stored_bytes if m.stored_bytes else 0.0
                self.progress(f"{m.name}: {human_bytes(ph.stored_bytes)} of {human_bytes(m.stored_bytes)} read "
                              f"({pct:.0f}%), {human_bytes(ph.raw_bytes)} decompressed")
            if self.counted is not None and now - ticked >= TICK_S:
                ticked = now
                self.counted(f"reading {m.name}", ph.stored_bytes, m.stored_bytes)
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
                f"bad checksum: {m.name} read as sha256 {h.hexdigest()[:12]} ({ph.stored_bytes} bytes), "
                f"the manifest says {m.sha256[:12]} ({m.stored_bytes} bytes)",
                "nothing was swapped in; restore an older backup with --backup KEY")


def verify_backup(s3: Any, e: Entry) -> dict[str, Any]:
    """Stream the backup once (no disk): sha256, size, decompression and structure vs the manifest."""
    m = e.manifest
    if m.format == "parallel":  # its parts are checked while they load (runbooks/parallel_load.py)
        return check_parts_present(s3, m)
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


# ------------------------------------------------------------------------------ the cheap pre-check


def head_backup(s3: Any, m: Manifest) -> dict[str, Any]:
    """HEAD of the object the manifest describes, never its body: IntegrityError when the object is
    gone, overwritten after the manifest (its current ETag is not the backed-up version's), or not
    the manifest's size. A later overwrite fails even though the pinned version could still be read:
    someone replaced the backup, and restoring it silently would hide that."""
    where = f"s3://{m.bucket}/{m.key}"
    fix = "restore an older backup with --backup KEY (`recovery list`)"

    def head(**kw: Any) -> dict[str, Any] | None:
        try:
            return dict(s3.head_object(Bucket=m.bucket, Key=m.key, **kw))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchVersion", "400"):
                return None
            raise aws_error(exc, f"reading {where}", bucket=m.bucket) from None
        except Exception as exc:  # noqa: BLE001 - connection errors after botocore's retries
            raise aws_error(exc, f"reading {where}", bucket=m.bucket) from None

    current = head()
    pinned = current
    if m.version_id and (current is None or current.get("VersionId") != m.version_id):
        pinned = head(VersionId=m.version_id)
        if pinned is None:
            raise IntegrityError(f"{m.name}: the version the manifest records ({m.version_id}) is gone from {where}", fix)
        if current is None:
            raise IntegrityError(f"{m.name} was deleted after its manifest was written (the backed-up version "
                                 f"{m.version_id} is still there)", fix)
        if current.get("ETag") != pinned.get("ETag"):
            raise IntegrityError(
                f"bad checksum: {m.name} was overwritten after its manifest was written: its ETag is now "
                f"{str(current.get('ETag')).strip(chr(34))[:12]} ({current.get('ContentLength')} bytes), the "
                f"backed-up version's is {str(pinned.get('ETag')).strip(chr(34))[:12]} ({pinned.get('ContentLength')} bytes)",
                "the object is corrupt or replaced; " + fix)
    if pinned is None:
        raise IntegrityError(f"{m.name} is gone from {where}", fix)
    size = int(pinned.get("ContentLength", -1))
    if size != m.stored_bytes:
        raise IntegrityError(f"{m.name} is {size} bytes in S3, the manifest says {m.stored_bytes} bytes", fix)
    return pinned


def check_format(m: Manifest, content: str, what: str) -> None:
    """InputError unless this version can restore the backup's format as `content` ("sql" | "tar")."""
    if m.content != content:
        raise InputError(f"{m.name} holds {m.content}, not {'a plain SQL dump' if content == 'sql' else 'a tar archive'}",
                         f"pass {what}")
    if m.format not in FORMATS:
        raise InputError(f"{m.name} is in format {m.format!r}, which this version of recovery cannot restore",
                         "upgrade recovery, or pick another backup with --backup KEY")


def check_backup(s3: Any, e: Entry, content: str, what: str) -> dict[str, Any]:
    """The restores' pre-check (no body read): the manifest (read already, into `e`), HEAD of the
    object, the format. The step adds its own free-space check (recovery/backups/space.py)."""
    m = e.manifest
    if m.format == "parallel" and content == "sql":  # many objects: each part's HEAD; sha256s while loading
        return check_parts_present(s3, m)
    check_format(m, content, what)
    head_backup(s3, m)
    return {"key": m.key, "format": m.format, "sha256": m.sha256, "stored_bytes": m.stored_bytes,
            "raw_bytes": m.raw_bytes, "version_id": m.version_id, "backup_time": m.ended_at}


def prefetch(chunks: Iterator[bytes], depth: int = 4) -> Generator[bytes, None, None]:
    """Run `chunks` (download + sha256 + decompress) on a thread, `depth` chunks ahead, so that the
    consumer (psql, the extraction) works on one chunk while the next is decompressed (isal, zstd and
    hashlib release the GIL). Errors, such as the final sha256 check's, are re-raised here; closing
    this generator stops the thread."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for c in chunks:
                if not put(("data", c)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(("error", exc))

    t = threading.Thread(target=produce, name="restore-prefetch", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "data":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        t.join(timeout=5)
