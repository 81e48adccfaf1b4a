"""Off-site copy: catalogued backups into a local directory (the plan's /var/backups/off-site).

- Copies every catalogued backup not yet in DEST whose latest verification did not fail
  (never-verified backups are verified on the way: the same stream is hashed and decompressed).
- Writes atomically: a hidden temp file in DEST, fsync, sha256 compared with the manifest,
  then rename. A mismatch deletes the temp file and fails the run.
- Sets each file's mtime to the backup's time, so the plan's `ls -t ... | head -1` picks the
  newest backup, and writes the manifest beside it (`<name>.manifest.json`).
- Prunes our own files (plan-named backups and their manifests) older than the retention.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Callable

from recovery.aws import client
from recovery.catalog import KINDS, Catalog, Entry, check_bucket, parse_name, utc_now
from recovery.errors import InputError, IntegrityError, RecoveryError
from recovery.stack import StackOutputs
from recovery.backups.verify import scan_backup
from recovery.backups.parallel_offsite import TMP_SUFFIX, copy_parallel, present, prune_dir

log = logging.getLogger(__name__)


@dataclass
class SyncItem:
    name: str
    action: str  # copied | present | skipped-failed-verification | pruned | failed
    bytes: int = 0
    detail: str = ""


@dataclass
class SyncReport:
    dest: str
    retention_days: int
    items: list[SyncItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(i.action == "failed" for i in self.items)

    def count(self, action: str) -> int:
        return sum(1 for i in self.items if i.action == action)

    def to_json(self) -> dict[str, Any]:
        return {"dest": self.dest, "retention_days": self.retention_days, "ok": self.ok,
                "copied": self.count("copied"), "present": self.count("present"), "pruned": self.count("pruned"),
                "failed": self.count("failed"), "items": [asdict(i) for i in self.items]}


def _prepare_dest(dest: Path) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {dest}: {exc.strerror}", "pass a writable --dest") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise InputError(f"{dest} is not writable", "pass a writable --dest or run as its owner")


def _write_manifest(e: Entry, dest: Path) -> None:
    m = e.manifest
    ts = m.time.timestamp()
    man_tmp = dest / f".{m.name}.manifest.json.part"
    man_tmp.write_text(json.dumps(m.to_json(), indent=2, sort_keys=True))
    os.utime(man_tmp, (ts, ts))
    os.replace(man_tmp, dest / (m.name + ".manifest.json"))


def _copy_one(s3: Any, e: Entry, dest: Path) -> SyncItem:
    m = e.manifest
    if m.format == "parallel":  # a directory of parts (parallel_offsite.py)
        size, detail = copy_parallel(s3, e, dest, lambda d: _write_manifest(e, d))
        return SyncItem(m.name, "copied", size, detail)
    final = dest / m.name
    fd, tmp = tempfile.mkstemp(prefix=f".{m.name}.", suffix=".part", dir=dest)
    f: IO[bytes] = os.fdopen(fd, "wb")
    def sink(chunk: bytes) -> None:
        f.write(chunk)

    try:
        with f:
            r = scan_backup(s3, m, sink=sink)
            f.flush()
            os.fsync(f.fileno())
        if r.sha256 != m.sha256:
            raise IntegrityError(f"{m.name}: sha256 on arrival {r.sha256[:12]} != manifest {m.sha256[:12]}",
                                 "the stored object changed since backup; run `recovery verify`")
        if r.error or not r.structure_ok:
            raise IntegrityError(f"{m.name}: {r.error or r.structure}", "run `recovery verify`")
        ts = m.time.timestamp()
        os.utime(tmp, (ts, ts))
        os.replace(tmp, final)
        _write_manifest(e, dest)
        dir_fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return SyncItem(m.name, "copied", r.stored_bytes, f"sha256 {r.sha256[:12]} ok")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prune(dest: Path, retention_days: int, report: SyncReport) -> None:
    cutoff = utc_now() - timedelta(days=retention_days)
    for p in sorted(dest.iterdir()):
        base = p.name.removesuffix(".manifest.json")
        parsed = parse_name(base)
        if not parsed or not (p.is_file() or (p.is_dir() and p.name.endswith(".parallel"))):
            continue  # never touch anything that is not ours
        if parsed[1] < cutoff:
            prune_dir(p) if p.is_dir() else p.unlink()
            if p.name == base:
                report.items.append(SyncItem(base, "pruned", detail=f"older than {retention_days} days"))
    for p in dest.glob(".*.part"):  # leftovers of an interrupted run
        p.unlink(missing_ok=True)
    for p in dest.glob(f".*.parallel{TMP_SUFFIX}"):
        prune_dir(p)


def offsite_sync(outputs: StackOutputs, dest: str | Path, *, retention_days: int | None = None,
                 kinds: tuple[str, ...] = KINDS, s3: Any = None,
                 on_item: Callable[[SyncItem], None] | None = None) -> SyncReport:
    dest = Path(dest)
    retention = outputs.offsite_retention_days if retention_days is None else retention_days
    if retention < 1:
        raise InputError(f"--retention-days must be at least 1, got {retention}", "pass a positive number of days")
    s3 = s3 or client("s3", outputs.region)
    check_bucket(s3, outputs.backup_bucket_name)
    _prepare_dest(dest)
    report = SyncReport(str(dest), retention)
    cutoff = utc_now() - timedelta(days=retention)
    cat = Catalog(s3, outputs.backup_bucket_name)
    for kind in kinds:
        for e in cat.entries(kind):
            name = e.manifest.name
            if e.manifest.time < cutoff:
                continue
            target = dest / name
            if present(e, dest) if e.manifest.format == "parallel" else \
                    (target.exists() and target.stat().st_size == e.manifest.stored_bytes):
                item = SyncItem(name, "present", e.manifest.stored_bytes)
            elif e.verified is False:
                item = SyncItem(name, "skipped-failed-verification", detail="its last verification failed")
            else:
                try:
                    item = _copy_one(s3, e, dest)
                except RecoveryError as exc:
                    item = SyncItem(name, "failed", detail=exc.problem)
            report.items.append(item)
            if on_item:
                on_item(item)
    prune(dest, retention, report)
    return report
