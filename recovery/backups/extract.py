"""Extracting a chain (or config) backup's tar stream into a new directory, in one pass.

The stream (``BackupStream``: download -> sha256 -> decompression) runs on its own thread
(``prefetch``), one step ahead of the extraction, so the two overlap: isal, zstd and hashlib release
the GIL, and so do the file writes. ``tarfile`` parses only the headers (PAX, GNU long names):
it is opened in its seekable mode over ``ChunkReader``, which moves forward only, and each file's
content is written straight from the decompressed chunks (``os.write`` of memoryview slices, one
call per chunk) instead of through tarfile's 10 KiB stream buffer and its copies.

Only directories and regular files are extracted, confined to the archive's root directory. The
whole object is read, past the tar end marker too, so its sha256 and size are checked end to end
before this returns; the caller compares the file count with the manifest's and removes ``dest``
on any error.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from recovery.backups.read import BackupStream, prefetch
from recovery.engine.hooks import enospc, fault
from recovery.errors import IntegrityError


class ChunkReader(io.RawIOBase):
    """A forward-only, seekable-looking file over an iterator of byte chunks: enough for tarfile's
    reading mode, which reads headers, tells its position and seeks forward past file padding."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it = chunks
        self._buf = memoryview(b"")  # a view: slicing never copies the rest of a multi-MiB chunk
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _fill(self) -> bool:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._it))
            except StopIteration:
                return False
        return True

    def _take(self, n: int) -> memoryview | None:
        if not self._fill():
            return None
        view, self._buf = self._buf[:n], self._buf[n:]
        self._pos += len(view)
        return view

    def read(self, size: int | None = -1) -> bytes:
        parts = []
        left = -1 if size is None or size < 0 else size
        while left != 0:
            view = self._take(left if left > 0 else 1 << 30)
            if view is None:
                break
            parts.append(view)
            left = left - len(view) if left > 0 else left
        return b"".join(parts)

    def readinto(self, b: Any) -> int:
        view = self._take(len(b))
        if view is None:
            return 0
        b[:len(view)] = view
        return len(view)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or pos < self._pos:
            raise io.UnsupportedOperation("a backup stream only reads forward")
        while self._pos < pos and self._take(pos - self._pos) is not None:
            pass
        return self._pos

    def copy_to(self, fd: int, n: int) -> None:
        """Write the next `n` bytes to `fd`, a chunk's slice per write."""
        while n:
            view = self._take(n)
            if view is None:
                raise tarfile.ReadError("unexpected end of data")
            n -= len(view)
            while view:
                view = view[os.write(fd, view):]

    def drain(self) -> None:
        """Read to the end of the object (the stream's sha256 and size are checked there)."""
        for _ in self._it:
            pass
        self._buf = memoryview(b"")


def _safe_rel(name: str, base: str) -> PurePosixPath | None:
    """The member's path below the archive's root directory; None for the root itself."""
    if name.rstrip("/") == base:
        return None
    if not name.startswith(base + "/"):
        raise IntegrityError(f"archive member {name!r} is outside the archive's root {base!r}",
                             "this is not a chain backup made by `recovery backup chain`")
    rel = PurePosixPath(name[len(base) + 1:])
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise IntegrityError(f"archive member {name!r} escapes its directory", "refusing to extract it")
    return rel


def extract_tar(stream: BackupStream, dest: Path) -> dict[str, Any]:
    """Extract the backup's tar stream into ``dest`` (created): directories and regular files only."""
    t_start = time.monotonic()
    dest.mkdir(mode=0o750)
    files = 0
    nbytes = 0
    write_s = 0.0
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    base: str | None = None
    chunks = prefetch(stream.chunks())
    reader = ChunkReader(chunks)
    try:
        tar = tarfile.TarFile(fileobj=reader, mode="r")  # type: ignore[arg-type]
        for member in tar:
            if base is None:
                if not member.isdir():
                    raise IntegrityError("the archive does not start with its root directory",
                                         "this is not a chain backup made by `recovery backup chain`")
                base = member.name.rstrip("/")
                dirs.append((dest, member))
                continue
            rel = _safe_rel(member.name, base)
            if rel is None:
                continue
            target = dest.joinpath(*rel.parts)
            if member.isdir():
                target.mkdir(mode=0o750, exist_ok=True)
                dirs.append((target, member))
            elif member.isfile() and not member.issparse():
                t0 = time.monotonic()
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    if fault("enospc") and files >= 1:
                        raise enospc(str(target))
                    reader.copy_to(fd, member.size)
                    os.fsync(fd)  # before the swap can make it live
                    os.fchmod(fd, member.mode & 0o7777)
                    os.utime(fd, (member.mtime, member.mtime))
                finally:
                    os.close(fd)
                write_s += time.monotonic() - t0
                files += 1
                nbytes += member.size
            else:
                raise IntegrityError(f"archive member {member.name!r} is not a file or directory",
                                     "chain backups hold only directories and regular files")
        reader.drain()  # past the end marker: the sha256 check runs when the object is fully read
    finally:
        chunks.close()
    for d, info in reversed(dirs):
        os.chmod(d, info.mode & 0o7777)
        os.utime(d, (info.mtime, info.mtime))
    ph = stream.phases
    ph.apply = write_s
    detail = ph.as_detail("extract")
    detail["wall_s"] = round(time.monotonic() - t_start, 3)
    return {"files": files, "file_bytes": nbytes, **detail}
