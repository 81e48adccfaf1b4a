"""Taking a parallel database backup (`backup db --format parallel`; the format: parallel_format.py).

Called by take.backup_db with the snapshot it exported: every part reads that snapshot, pg_dump with
``--snapshot``, each COPY in a psql session that starts with ``SET TRANSACTION SNAPSHOT``, so the
parts are one consistent state. Up to ``jobs`` parts stream at once, each source -> zstd -> its own
S3 (multipart) upload with SSE-KMS. A COPY runs in psql, not through psycopg: psql writes the
server's COPY data to a pipe at C speed, where psycopg would hand Python one message per row.

The big ``blockchain`` table is cut into height ranges (about PART_TARGET_BYTES of table each, at
least MIN_BLOCKCHAIN_PARTS once it is past SPLIT_FROM_BYTES) so that a restore can load it on
several connections at once. Any failure aborts every upload still open under the backup's prefix;
parts already uploaded stay uncatalogued (no manifest: not a backup) until the lifecycle rule
expires them, as a failed single-object backup's object does when it cannot be deleted.
"""

from __future__ import annotations

import collections
import io
import logging
import math
import subprocess
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import IO, Any, Callable

import psycopg

from recovery import __version__, redact
from recovery.backups.parallel_format import CONTENT, DEFAULT_JOBS, FORMAT, parts_digest
from recovery.catalog import Catalog, Manifest, iso, prefix, utc_now
from recovery.engine.locks import S3Lock
from recovery.errors import BackupFailedError, InputError, RecoveryError
from recovery.postgres import ConnParams, SnapshotStats, pg_dump_cmd
from recovery.stack import StackOutputs
from recovery.stream import CompressedReader
from recovery.transfer import abort_uploads, upload_stream

log = logging.getLogger(__name__)

PART_TARGET_BYTES = 256 * 1024 * 1024
SPLIT_FROM_BYTES = 16 * 1024 * 1024
MIN_BLOCKCHAIN_PARTS = 4
MAX_BLOCKCHAIN_PARTS = 64

# Every user table whose rows pg_dump would dump: ordinary tables (a partitioned table's rows are
# in its partitions), not temporary, not an extension's own (pg_dump dumps an extension's
# configuration tables itself: they stay in the data-other part).
TABLES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname), pg_table_size(c.oid),
       (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
       n.nspname = 'public' AND c.relname = 'blockchain', n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 2 DESC, 1
"""


def _pattern(nsp: str, rel: str) -> str:
    """An exact pg_dump table pattern: inside double quotes nothing is a wildcard."""
    return '"' + nsp.replace('"', '""') + '"."' + rel.replace('"', '""') + '"'


def plan_parts(conn: psycopg.Connection[Any], stats: SnapshotStats) -> tuple[list[dict[str, Any]], list[str]]:
    """(the COPY parts, biggest first; pg_dump patterns of the tables they cover), read in the snapshot."""
    parts: list[dict[str, Any]] = []
    patterns: list[str] = []
    encoding = str(conn.execute("SHOW server_encoding").fetchone()[0])  # type: ignore[index]
    for table, size, columns, is_chain, nsp, rel in conn.execute(TABLES_SQL).fetchall():
        patterns.append(_pattern(nsp, rel))
        cols = f" ({columns})" if columns else ""
        base = {"section": "data", "table": table, "columns": columns or "", "copy": f"COPY {table}{cols} FROM STDIN",
                "encoding": encoding}
        ranges: list[tuple[str, dict[str, Any] | None]] = [("", None)]
        if is_chain and stats.max_height is not None and size and size >= SPLIT_FROM_BYTES:
            low = int(conn.execute("SELECT min(height) FROM public.blockchain").fetchone()[0])  # type: ignore[index]
            n = max(MIN_BLOCKCHAIN_PARTS, min(MAX_BLOCKCHAIN_PARTS, math.ceil(size / PART_TARGET_BYTES)))
            step = max(1, math.ceil((stats.max_height - low + 1) / n))
            bounds = [low + i * step for i in range(1, n) if low + i * step <= stats.max_height]
            edges = [None, *bounds, None]
            ranges = []
            for lo, hi in zip(edges, edges[1:]):
                # the first range takes NULL heights too, should the column ever allow them
                cond = (f"height < {hi} OR height IS NULL" if lo is None else
                        f"height >= {lo}" + (f" AND height < {hi}" if hi is not None else ""))
                ranges.append((f" WHERE {cond}", {"from": lo, "below": hi}))
        for where, span in ranges:
            select = f"COPY (SELECT {columns or ''} FROM ONLY {table}{where}) TO STDOUT" if where else \
                f"COPY {table}{cols} TO STDOUT"
            parts.append({**base, "select": select, **({"heights": span} if span else {})})
    return parts, patterns


class _LineCounter(io.RawIOBase):
    """Pass a COPY stream through, counting its rows (one line each in the text format)."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.rows = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.source.read(len(b))
        if not data:
            return 0
        self.rows += data.count(b"\n")
        n = len(data)
        b[:n] = data
        return n


def _start(cmd: list[str], cp: ConnParams, what: str) -> tuple[subprocess.Popen[bytes], Callable[[], None]]:
    """A producer process and its `finish` (raises when it failed, with its last stderr line)."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cp.env(), bufsize=0)
    except FileNotFoundError:
        raise InputError(f"{cmd[0]} is not installed or not on PATH", "install the PostgreSQL client (15 or newer)") from None
    errlines: collections.deque[str] = collections.deque(maxlen=5)

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            errlines.append(redact.scrub(line.decode(errors="replace").rstrip()))

    t = threading.Thread(target=drain, name=f"{cmd[0]}-stderr", daemon=True)
    t.start()

    def finish() -> None:
        rc = proc.wait()
        t.join(timeout=5)
        if rc != 0:
            last = next((x for x in reversed(errlines) if "ERROR" in x or "error" in x), errlines[-1] if errlines else "no message")
            raise BackupFailedError(f"{what} failed (exit {rc}: {last}); the backup was aborted",
                                    "check the database and retry; nothing was catalogued")

    return proc, finish


def _copy_cmd(cp: ConnParams, snapshot: str, select: str, encoding: str) -> list[str]:
    # -q: no command tags on stdout, which carries the COPY data alone
    return ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--dbname", cp.conninfo(),
            "-c", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            "-c", f"SET TRANSACTION SNAPSHOT '{snapshot}'",
            "-c", f"SET client_encoding = '{encoding}'",  # the database's own: the bytes as stored, unconverted
            "-c", "SET row_security = off",  # a policy would silently drop rows; off, it is an error instead
            "-c", select, "-c", "COMMIT"]


def part_specs(cp: ConnParams, stats: SnapshotStats, copies: list[dict[str, Any]], patterns: list[str]) -> list[dict[str, Any]]:
    """What each part is and the command that writes it, in the order the manifest lists them."""
    dump = pg_dump_cmd(cp, stats.snapshot)
    other = [a for p in patterns for a in ("--exclude-table-data", p)]
    specs: list[dict[str, Any]] = [{"name": "pre-data.sql.zst", "section": "pre-data", "cmd": dump + ["--section=pre-data"]}]
    specs += [{**{k: v for k, v in c.items() if k != "select"}, "name": f"data-{i:04d}.copy.zst",
               "cmd": _copy_cmd(cp, stats.snapshot, c["select"], c["encoding"])} for i, c in enumerate(copies, 1)]
    specs += [{"name": "data-other.sql.zst", "section": "data", "cmd": dump + ["--section=data", *other]},
              {"name": "post-data.sql.zst", "section": "post-data", "cmd": dump + ["--section=post-data"]}]
    return specs


def stream_parts(opts: Any, outputs: StackOutputs, cp: ConnParams, key: str, specs: list[dict[str, Any]],
                 jobs: int) -> list[dict[str, Any]]:
    """Each spec's source -> zstd -> s3://bucket/<key>/<name>, `jobs` at once; the parts' manifest
    entries. The first failure kills the other producers and aborts every upload under <key>/."""
    s3, bucket, kms = opts.s3, outputs.backup_bucket_name, outputs.backup_kms_key_arn
    stop = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []
    workers = max(1, opts.workers // jobs) if opts.workers else 1

    def one(spec: dict[str, Any]) -> dict[str, Any]:
        if stop.is_set():
            raise BackupFailedError("stopped", None)
        part_key = f"{key}/{spec['name']}"
        proc, finish = _start(spec["cmd"], cp, f"dumping {spec['name']} ({spec.get('table') or spec['section']})")
        procs.append(proc)
        assert proc.stdout is not None
        counter = _LineCounter(proc.stdout)
        reader = CompressedReader(counter, "zstd", opts.level, workers, finish=finish, on_raw=opts.on_bytes)  # type: ignore[arg-type]
        try:
            head = upload_stream(s3, bucket, part_key, reader, kms_key_id=kms, content_type="application/zstd",
                                 metadata={"recovery-kind": "db", "recovery-version": __version__}, streams=jobs)
        except BaseException:
            reader.abort()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        if int(head.get("ContentLength", -1)) != reader.stats.stored_bytes:
            raise BackupFailedError(f"S3 holds {head.get('ContentLength')} bytes for {part_key} but "
                                    f"{reader.stats.stored_bytes} were sent", "retry the backup")
        out = {k: v for k, v in spec.items() if k != "cmd"}
        out.update(key=part_key, version_id=head.get("VersionId"), sha256=reader.stats.sha256,
                   stored_bytes=reader.stats.stored_bytes, raw_bytes=reader.stats.raw_bytes)
        if spec.get("table"):
            out["rows"] = counter.rows
        return out

    def kill_all() -> None:
        stop.set()
        for p in list(procs):
            if p.poll() is None:
                p.kill()

    failed: Future[dict[str, Any]] | None = None
    try:
        with ThreadPoolExecutor(jobs, thread_name_prefix="dump-part") as pool:
            futures = [pool.submit(one, s) for s in specs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                for f in futures:
                    f.cancel()
                kill_all()  # the parts still streaming end now: their uploads abort
    except BaseException:  # Ctrl-C, SIGTERM
        kill_all()
        abort_uploads(s3, bucket, key + "/")
        raise
    if failed is not None:
        abort_uploads(s3, bucket, key + "/")
        exc = failed.exception()
        if isinstance(exc, RecoveryError):
            raise exc
        raise BackupFailedError(f"the parallel backup failed ({type(exc).__name__}: {exc}); its uploads were "
                                "aborted and nothing was catalogued", "retry; if it persists check S3 health") from exc
    return [f.result() for f in futures]


def backup_parallel(outputs: StackOutputs, opts: Any, cp: ConnParams, conn: psycopg.Connection[Any],
                    stats: SnapshotStats, *, source_desc: str, db_globals: dict[str, Any]) -> Manifest:
    """The backup, under the db backup lock; `conn` holds the exported snapshot open throughout."""
    s3, bucket, kms = opts.s3, outputs.backup_bucket_name, outputs.backup_kms_key_arn
    cat = Catalog(s3, bucket)
    copies, patterns = plan_parts(conn, stats)
    lock = S3Lock(s3, bucket, "locks/backup-db.lock", ttl_seconds=opts.lock_ttl,
                  purpose=f"db backup lock of stack '{outputs.stack}'", take_over_stale=opts.take_over_stale)
    with lock:
        if swept := abort_uploads(s3, bucket, prefix("db")):
            opts.extra["aborted_uploads"] = swept
        key = cat.new_key("db", FORMAT)
        started, t0 = utc_now(), time.monotonic()
        parts = stream_parts(opts, outputs, cp, key, part_specs(cp, stats, copies, patterns), opts.jobs or DEFAULT_JOBS)
        lock.check()
        chain_rows = sum(p.get("rows", 0) for p in parts if p.get("table") == "public.blockchain")
        if stats.rows is not None and chain_rows != stats.rows:
            raise BackupFailedError(f"the blockchain parts hold {chain_rows} rows, the snapshot counted {stats.rows}",
                                    "retry the backup; nothing was catalogued")
        m = Manifest(
            kind="db", key=key, bucket=bucket, format=FORMAT, content=CONTENT, source=source_desc,
            stored_bytes=sum(p["stored_bytes"] for p in parts), raw_bytes=sum(p["raw_bytes"] for p in parts),
            sha256=parts_digest(parts), kms_key_id=kms, started_at=iso(started), ended_at=iso(utc_now()),
            tool_version=__version__, stack=outputs.stack, compression_level=opts.level or 3, compressor="zstd",
            duration_seconds=round(time.monotonic() - t0, 3), timings={"stream_seconds": round(time.monotonic() - t0, 3)},
            pg_server_version=stats.server_version, db_rows=stats.rows, db_max_height=stats.max_height,
            db_globals=db_globals, parts=parts)
        cat.put_manifest(m)  # a failure leaves the parts uncatalogued: no manifest, no backup
    if lock.took_over:
        h = lock.took_over
        opts.extra["took_over"] = {"owner": h.owner, "host": h.host, "pid": h.pid, "acquired_at": h.acquired_at,
                                   "expires_at": h.expires_at, "because": lock.took_over_because}
    return m
