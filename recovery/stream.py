"""Streaming compression and decompression with bounded memory.

Backup path: a source stream (pg_dump's stdout, a tar pipe) -> `CompressedReader` -> s3transfer.

- ``gzip``: the source is cut into blocks and each block becomes a complete gzip member,
  compressed by a thread pool (zlib releases the GIL). Concatenated members are a valid gzip
  file (RFC 1952), so ``gunzip -t`` and ``gunzip -c | psql`` work unchanged.
- ``zstd``: one zstd frame, compressed by libzstd's own worker threads, with a content checksum.

Memory is bounded by (workers * 2 + 2) blocks in flight plus s3transfer's part buffers.

The reader hashes exactly the bytes it hands out (sha256 of the stored object) and counts raw
and stored bytes. A failing source (non-zero exit, exception) makes ``read`` raise instead of
returning EOF, so the multipart upload is aborted rather than completed with a truncated object.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator

import zstandard

_isal_zlib: Any
try:  # ISA-L's deflate: same gzip format, ~3x zlib's speed at levels 0-3 (releases the GIL too)
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - optional accelerator
    _isal_zlib = None

from recovery.errors import InputError, IntegrityError

BLOCK = 4 * 1024 * 1024

FORMATS = {
    # name: (extension suffix for a .sql/.tar base, content type)
    "gzip": ".gz",
    "zstd": ".zst",
}
# zstd 1, not libzstd's default 3: on a dump of the blockchain table (hex hashes, little redundancy)
# level 1 compressed 236 MB/s against 118 MB/s for level 3 on one core, for a 1.5% bigger file
# (ratio 2.69 vs 2.73, 400 MB of the bench's 1 GB dump); a backup shares its cores with pg_dump.
DEFAULT_LEVEL = {"gzip": 1, "zstd": 1}
# gzip 0 stores without compressing; zstd 20..22 are "ultra" levels that need a window (and memory)
# far beyond a streaming backup's budget.
LEVELS = {"gzip": (1, 9), "zstd": (1, 19)}
MAX_WORKERS = 64


def check_options(fmt: str, level: int | None, workers: int | None) -> None:
    """InputError, naming the option and its range, for a format, level or worker count we cannot use."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'", f"use --format {' or '.join(FORMATS)}")
    low, high = LEVELS[fmt]
    if level is not None and not low <= level <= high:
        raise InputError(f"--level {level} is out of range for {fmt}", f"use --level {low}..{high} (default {DEFAULT_LEVEL[fmt]})")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"--workers {workers} is out of range", f"use --workers 1..{MAX_WORKERS} (default: the CPU count)")


_INFLATE: Any = _isal_zlib if _isal_zlib is not None else zlib  # isal inflates ~2.5x faster
GZIP_ERRORS: tuple[type[BaseException], ...] = (zlib.error,) + ((_isal_zlib.error,) if _isal_zlib is not None else ())


def gzip_backend(level: int) -> Any:
    """ISA-L for levels 0-3 when installed (much faster, same output format), zlib otherwise."""
    return _isal_zlib if _isal_zlib is not None and 0 <= level <= 3 else zlib


def gzip_backend_name(level: int) -> str:
    return "isal" if gzip_backend(level) is not zlib else "zlib"


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class StreamStats:
    raw_bytes: int = 0
    stored_bytes: int = 0
    sha256: str = ""


class CompressedReader(io.RawIOBase):
    """A read()-able, non-seekable stream of the compressed source.

    `finish` is called once the source hits EOF; it must raise if the producer failed (for
    example pg_dump exited non-zero), which turns EOF into an error for the uploader.
    """

    def __init__(
        self,
        source: IO[bytes],
        fmt: str = "gzip",
        level: int | None = None,
        workers: int | None = None,
        finish: Callable[[], None] | None = None,
        on_raw: Callable[[int], None] | None = None,
        block_size: int = BLOCK,
    ) -> None:
        check_options(fmt, level, workers)
        self.fmt = fmt
        self.level = DEFAULT_LEVEL[fmt] if level is None else level
        self.workers = workers or default_workers()
        self.source = source
        self.finish = finish
        self.on_raw = on_raw
        self.block_size = block_size
        self.stats = StreamStats()
        self._hash = hashlib.sha256()
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=self.workers * 2 + 2)
        self._buf = b""
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="compress", daemon=True)
        self._thread.start()

    # -- producer
    def _blocks(self) -> Iterator[bytes]:
        while not self._stop.is_set():
            block = self.source.read(self.block_size)
            if not block:
                return
            self.stats.raw_bytes += len(block)
            if self.on_raw:
                self.on_raw(len(block))
            yield block

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        try:
            if self.fmt == "gzip":
                self._produce_gzip()
            else:
                self._produce_zstd()
            if self.finish:
                self.finish()
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)

    def _produce_gzip(self) -> None:
        level = self.level
        lib = gzip_backend(level)

        def member(block: bytes) -> bytes:
            c = lib.compressobj(level, zlib.DEFLATED, 31, 9)
            return bytes(c.compress(block) + c.flush())

        pending: list[Future[bytes]] = []
        any_block = False
        with ThreadPoolExecutor(self.workers, thread_name_prefix="gzip") as pool:
            for block in self._blocks():
                any_block = True
                pending.append(pool.submit(member, block))
                while len(pending) > self.workers:
                    self._put(pending.pop(0).result())
            for fut in pending:
                self._put(fut.result())
        if not any_block:
            self._put(member(b""))  # an empty but valid gzip file

    def _produce_zstd(self) -> None:
        # One worker compresses on this thread (threads=0): zstd's multi-threaded mode, even with one
        # thread, buffers whole jobs of several MiB each, which a parallel backup pays once per part.
        threads = self.workers if self.workers > 1 else 0
        cctx = zstandard.ZstdCompressor(level=self.level, threads=threads, write_checksum=True)
        cobj = cctx.compressobj(size=-1)
        for block in self._blocks():
            out = cobj.compress(block)
            if out:
                self._put(out)
        self._put(cobj.flush())

    # -- consumer (s3transfer calls read() from one thread)
    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunks = []
        want = size if size is not None and size >= 0 else None
        have = 0
        if self._buf:
            chunks.append(self._buf)
            have = len(self._buf)
            self._buf = b""
        while not self._done and (want is None or have < want):
            item = self._q.get()
            if item is None:
                self._done = True
                break
            if isinstance(item, BaseException):
                self._done = True
                self._stop.set()
                raise item
            chunks.append(item)
            have += len(item)
        data = b"".join(chunks)
        if want is not None and len(data) > want:
            data, self._buf = data[:want], data[want:]
        if data:
            self._hash.update(data)
            self.stats.stored_bytes += len(data)
            self.stats.sha256 = self._hash.hexdigest() if self._done and not self._buf else ""
        if self._done and not self._buf:
            self.stats.sha256 = self._hash.hexdigest()
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def abort(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        super().close()


# ------------------------------------------------------------------------------ verification side


class MultiMemberGunzip:
    """Incremental gunzip of a (possibly multi-member) gzip stream; CRC and length are checked."""

    def __init__(self) -> None:
        self._d = _INFLATE.decompressobj(31)
        self._fed = 0  # bytes given to the current, unfinished member
        self.members = 0

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            self._fed += len(data)
            out.append(self._d.decompress(data))
            if self._d.eof:
                self.members += 1
                data = self._d.unused_data
                self._d = _INFLATE.decompressobj(31)
                self._fed = 0
            else:
                data = b""
        return b"".join(out)

    def close(self) -> None:
        if self.members == 0 and self._fed == 0:
            raise IntegrityError("the gzip stream is empty", "the object is not a gzip file")
        if self._fed:
            raise IntegrityError("the gzip stream is truncated (unexpected end of data)",
                                 "this backup is incomplete; take a new one")


def decompressor(fmt: str) -> tuple[Callable[[bytes], bytes], Callable[[], None]]:
    """(feed, close) for a stored format; feed raises IntegrityError on corrupt data, close on truncation."""
    if fmt == "gzip":
        g = MultiMemberGunzip()

        def feed_gz(data: bytes) -> bytes:
            try:
                return g.feed(data)
            except GZIP_ERRORS as exc:
                raise IntegrityError(f"the gzip stream is corrupt ({exc})", "this backup is unusable; take a new one") from None

        return feed_gz, g.close
    if fmt == "zstd":
        d = zstandard.ZstdDecompressor().decompressobj()
        state = {"started": False}

        def feed_zst(data: bytes) -> bytes:
            state["started"] = True
            try:
                return d.decompress(data)
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"the zstd stream is corrupt ({exc})", "this backup is unusable; take a new one") from None

        def close_zst() -> None:
            if not state["started"] or not d.eof:
                raise IntegrityError("the zstd stream is truncated (frame not complete)",
                                     "this backup is incomplete; take a new one")

        return feed_zst, close_zst
    raise IntegrityError(f"unknown backup format '{fmt}'", "upgrade recovery")


class FeedReader(io.RawIOBase):
    """Turn an iterator of byte chunks into a readable stream (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it = chunks
        # a view, not bytes: tarfile reads 10 KiB at a time, and slicing bytes would copy the rest
        # of a multi-MiB chunk on every read (quadratic; half the CPU of a chain restore)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = memoryview(next(self._it))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
