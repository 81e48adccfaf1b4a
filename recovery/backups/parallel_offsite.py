"""Off-site copy of a parallel database backup (offsite.py's hook; the format: parallel_format.py).

The copy is a directory named as the backup, ``<dest>/database-...parallel/``, holding each part as
stored (its zstd file, the same bytes and sha256 as in S3), and the manifest beside it as for every
backup (``<name>.manifest.json``). It is written as a hidden ``.<name>.tmp`` directory, each part
verified on the way (sha256, decompression, structure), fsync'ed, then renamed into place, so a
copy that is there is whole. By hand: ``zstd -dc pre-data.sql.zst | psql``, each data part into
``psql -c "<the manifest's copy>"``, then data-other and post-data through psql.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO, Any, Callable

from recovery.backups.parallel_format import parts_of
from recovery.backups.verify import scan_backup
from recovery.catalog import Entry
from recovery.errors import IntegrityError

TMP_SUFFIX = ".tmp"


def present(e: Entry, dest: Path) -> bool:
    d = dest / e.manifest.name
    try:
        return all((d / p["name"]).stat().st_size == p["stored_bytes"] for p in parts_of(e.manifest))
    except (OSError, IntegrityError):
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_parallel(s3: Any, e: Entry, dest: Path, write_manifest: Callable[[Path], None]) -> tuple[int, str]:
    """(bytes copied, detail); IntegrityError, leaving nothing behind, when a part is not sound."""
    m = e.manifest
    tmp = dest / f".{m.name}{TMP_SUFFIX}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    files: dict[str, IO[bytes]] = {}

    def sink_for(part: dict[str, Any]) -> Callable[[bytes], None]:
        f = files[part["name"]] = open(tmp / part["name"], "wb")
        return f.write  # type: ignore[return-value]

    try:
        try:
            r = scan_backup(s3, m, part_sink=sink_for)
        finally:
            for f in files.values():
                f.flush()
                os.fsync(f.fileno())
                f.close()
        if r.sha256 != m.sha256:
            raise IntegrityError(f"{m.name}: {r.structure}", "the stored parts changed since backup; run `recovery verify`")
        if not r.structure_ok:
            raise IntegrityError(f"{m.name}: {r.error or r.structure}", "run `recovery verify`")
        ts = m.time.timestamp()
        for p in parts_of(m):
            os.utime(tmp / p["name"], (ts, ts))
        _fsync_dir(tmp)
        final = dest / m.name
        shutil.rmtree(final, ignore_errors=True)  # an incomplete copy of an older run
        os.replace(tmp, final)
        os.utime(final, (ts, ts))
        write_manifest(dest)
        _fsync_dir(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return r.stored_bytes, f"{len(files)} parts, sha256 {m.sha256[:12]} ok"


def prune_dir(p: Path) -> None:
    shutil.rmtree(p)
