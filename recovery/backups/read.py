"""Reading a backup back: resolving which one, streaming it verified, timing the phases.

Streaming a backup (``BackupStream``): one GetObject stream (pinned to the manifest's version) ->
sha256 of the stored bytes -> decompression (``recovery.stream.decompressor``) -> the consumer.
Nothing is staged on disk or held whole in memory. A restore reads the object twice:

1. ``verify_backup`` streams it once to check sha256, size, decompression and structure
   (``recovery.backups.verify.scan_backup``) *before* anything is written anywhere;
2. the restore streams it again into psql / tar extraction and checks sha256 and size once more at
   the end, so bytes that changed between the passes are caught too (the scratch copy is dropped).

Against moto a single stream reads ~750 MB/s, so the second pass costs little; on AWS it costs one
more GET of the object, which is cheaper than staging a dump the size of the database on disk.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from recovery.catalog import KINDS, Catalog, Entry, Manifest
from recovery.backups.parallel_format import check_parts_present
from recovery.backups.verify import check_backup_entry
from recovery.errors import InputError, IntegrityError
from recovery.units import human_bytes
from recovery.stream import decompressor
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
                f"{m.name} changed while it was read: sha256 {h.hexdigest()[:12]} ({ph.stored_bytes} bytes) "
                f"!= manifest {m.sha256[:12]} ({m.stored_bytes} bytes)", "nothing was swapped in; rerun")


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
