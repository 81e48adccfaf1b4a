"""Backups of the database, the chain data directory and deployment configuration.

Steps of every backup, in order:

1. preflight: the bucket exists and is reachable; the inputs are readable (data dir walked,
   database connected and a consistent snapshot exported). Nothing is written before this.
2. lock: `locks/backup-<kind>.lock` in the bucket (S3Lock, a 2-minute lease renewed every 40 s),
   so two backups of one kind on one stack never interleave. A lock whose holder died on this host
   is taken over at once, an expired one too, any other only with `--take-over-stale`; every
   takeover is logged and reported. Holding the lock, the backup aborts every multipart upload
   left open under `backups/<kind>/` (only a dead run of this kind can have left one) and logs them.
3. stream: source -> compression -> s3transfer multipart upload with SSE-KMS (stack key).
   Any failure aborts the multipart upload; the command fails.
4. manifest: written last (IfNoneMatch='*'). Until it exists the object is not a backup. A 412
   with our own manifest in place (a lost reply) is success. The uploaded object is deleted only
   when its manifest is known to be absent: an ambiguous failure keeps it (uncatalogued, so not a
   backup; the lifecycle rule expires it).
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from recovery import __version__, redact
from recovery import pg_globals, postgres
from recovery.archive import Member, TarSource, chain_db_member, plan_tree
from recovery.aws import aws_error, client
from recovery.catalog import Catalog, Manifest, check_bucket, iso, prefix, utc_now
from recovery.errors import BackupFailedError, InputError, RecoveryError
from recovery.engine.locks import S3Lock
from recovery.stack import StackOutputs
from recovery.stream import CompressedReader, check_options, gzip_backend_name
from recovery.transfer import abort_open_uploads, abort_uploads, delete_object_version, upload_stream

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 120  # short: a dead holder on another host blocks for at most this long


@dataclass
class BackupOptions:
    fmt: str = "gzip"
    level: int | None = None
    workers: int | None = None
    lock_ttl: int = LOCK_TTL_SECONDS
    take_over_stale: bool = False  # take the lock from any other holder (logged with its identity)
    on_bytes: Callable[[int], None] | None = None  # raw (uncompressed) bytes read from the source
    on_total: Callable[[int], None] | None = None  # an estimate of the raw bytes to come (a bar's total and ETA)
    s3: Any = None  # a boto3 S3 client; default: recovery.aws.client("s3", region)
    extra: dict[str, Any] = field(default_factory=dict)
    jobs: int | None = None  # parts streamed at once; the parallel format only

    def __post_init__(self) -> None:
        # before the lock and the snapshot
        if self.fmt == "parallel":  # its parts are zstd frames: zstd's levels and workers
            from recovery.backups.parallel_format import DEFAULT_JOBS, check_jobs

            check_options("zstd", self.level, self.workers)
            check_jobs(self.jobs if self.jobs is not None else DEFAULT_JOBS)
            return
        check_options(self.fmt, self.level, self.workers)
        if self.jobs is not None:
            raise InputError(f"--jobs applies to --format parallel only, not {self.fmt}",
                             "add --format parallel, or leave --jobs out (a single-stream backup is one stream)")


def _content_type(fmt: str) -> str:
    return "application/gzip" if fmt == "gzip" else "application/zstd"


def _stream_backup(outputs: StackOutputs, kind: str, opts: BackupOptions, *, content: str, source_desc: str,
                   open_source: Callable[[], tuple[IO[bytes], Callable[[], None], Callable[[], None]]],
                   describe: Callable[[], dict[str, Any]]) -> Manifest:
    """Lock, stream source -> compressor -> S3, write the manifest. `open_source` returns
    (stream, finish, kill): finish raises if the producer failed; kill stops it on error."""
    s3 = opts.s3 or client("s3", outputs.region)
    bucket = outputs.backup_bucket_name
    cat = Catalog(s3, bucket)
    lock = S3Lock(s3, bucket, f"locks/backup-{kind}.lock", ttl_seconds=opts.lock_ttl,
                  purpose=f"{kind} backup lock of stack '{outputs.stack}'", take_over_stale=opts.take_over_stale)
    with lock:
        # Under the lock no other backup of this kind runs: an open upload here is a dead run's.
        if swept := abort_uploads(s3, bucket, prefix(kind)):
            opts.extra["aborted_uploads"] = swept
        key = cat.new_key(kind, opts.fmt)
        started = utc_now()
        t0 = time.monotonic()
        stream, finish, kill = open_source()
        reader = CompressedReader(stream, opts.fmt, opts.level, opts.workers, finish=finish, on_raw=opts.on_bytes)
        log.info("streaming %s backup to s3://%s/%s (%s)", kind, bucket, key, opts.fmt)
        try:
            head = upload_stream(s3, bucket, key, reader, kms_key_id=outputs.backup_kms_key_arn,
                                 content_type=_content_type(opts.fmt),
                                 metadata={"recovery-kind": kind, "recovery-version": __version__})
        except BaseException as exc:
            reader.abort()
            kill()
            if isinstance(exc, RecoveryError):
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise BackupFailedError(f"{kind} backup interrupted (Ctrl-C or SIGTERM); the upload of {key} was aborted",
                                        "nothing was catalogued; rerun when ready") from None
            err = aws_error(exc, f"uploading s3://{bucket}/{key}", bucket=bucket)
            if "denied" in err.problem:
                raise err from None
            raise BackupFailedError(f"upload of {key} failed ({err.problem}); the multipart upload was aborted"
                                    " and nothing was catalogued", "retry; if it persists check S3 health") from None
        upload_s = time.monotonic() - t0
        # A lost reply to CreateMultipartUpload makes botocore start a second upload; the first stays open.
        abort_open_uploads(s3, bucket, key)
        version_id = head.get("VersionId")
        try:
            lock.check()
            if int(head.get("ContentLength", -1)) != reader.stats.stored_bytes:
                raise BackupFailedError(f"S3 holds {head.get('ContentLength')} bytes for {key} but "
                                        f"{reader.stats.stored_bytes} were sent", "retry the backup")
            ended = utc_now()
            m = Manifest(
                kind=kind, key=key, bucket=bucket, format=opts.fmt, content=content, source=source_desc,
                stored_bytes=reader.stats.stored_bytes, raw_bytes=reader.stats.raw_bytes,
                sha256=reader.stats.sha256, kms_key_id=outputs.backup_kms_key_arn,
                started_at=iso(started), ended_at=iso(ended), tool_version=__version__, stack=outputs.stack,
                compression_level=reader.level,
                compressor=gzip_backend_name(reader.level) if opts.fmt == "gzip" else "zstd",
                duration_seconds=round(time.monotonic() - t0, 3),
                version_id=version_id, timings={"stream_seconds": round(upload_s, 3)}, **describe())
        except BaseException:
            delete_object_version(s3, bucket, key, version_id)  # no manifest was attempted
            raise
        try:
            cat.put_manifest(m)
        except BaseException as exc:
            written = cat.manifest_written(m)
            if written is False:
                delete_object_version(s3, bucket, key, version_id)
                raise
            if written is None:
                log.warning("kept s3://%s/%s: whether its manifest was written is unknown", bucket, key)
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise  # catalogued, but the operator asked to stop
            log.warning("the manifest of %s was written although the reply said otherwise (%s)", key, exc)
    if lock.took_over:
        h = lock.took_over
        opts.extra["took_over"] = {"owner": h.owner, "host": h.host, "pid": h.pid, "acquired_at": h.acquired_at,
                                   "expires_at": h.expires_at, "because": lock.took_over_because}
    return m


# --------------------------------------------------------------------------------------- database


def _in_background(fn: Callable[..., Any], *args: Any, name: str) -> Callable[[], Any]:
    """Start fn(*args) on a daemon thread; the returned call waits for its result (or raises its error)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            box["error"] = exc

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()

    def result() -> Any:
        t.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    return result


def backup_db(outputs: StackOutputs, opts: BackupOptions | None = None, *, dsn: str | None = None,
              endpoint: str = "reader") -> Manifest:
    """pg_dump of the database, from the reader endpoint unless told otherwise: the dump's snapshot
    stays open for the whole dump, and on a reader it does not hold back the writer's work."""
    opts = opts or BackupOptions()
    s3 = opts.s3 = opts.s3 or client("s3", outputs.region)
    check_bucket(s3, outputs.backup_bucket_name)
    cp = postgres.resolve(outputs, dsn, endpoint)
    conn = postgres.connect(cp)
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # pg_dump starts as soon as the snapshot exists, before the count, the globals and the lock:
        # it spends its first ~0.4 s connecting and reading the catalog, which then overlaps that
        # work. It only reads (the snapshot just exported); until the upload begins its output waits
        # in the pipe, and any failure before that kills it (`finally` below).
        stats = postgres.export_snapshot(
            conn, None if opts.fmt == "parallel" else (lambda snap: started.update(p=postgres.start_pg_dump(cp, snap))))
        if opts.on_total is not None and (size := postgres.table_bytes(conn)):
            opts.on_total(size)
        source_desc = (f"postgresql://{cp.params.get('host')}:{cp.params.get('port')}/{cp.params.get('dbname')}"
                       f" ({'--dsn' if dsn else endpoint + ' endpoint'})")
        if opts.fmt == "parallel":  # its parts are dumped by psql COPY sessions in the snapshot, no pg_dump stream
            from recovery.backups.parallel_dump import backup_parallel

            return backup_parallel(outputs, opts, cp, conn, stats, source_desc=source_desc,
                                   db_globals=pg_globals.capture(cp))
        proc = started["p"]
        errlines: collections.deque[str] = collections.deque(maxlen=5)

        def drain() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                text = redact.scrub(line.decode(errors="replace").rstrip())
                errlines.append(text)
                log.debug("pg_dump: %s", text)

        t = threading.Thread(target=drain, name="pg_dump-stderr", daemon=True)
        t.start()

        def finish() -> None:
            rc = proc.wait()
            t.join(timeout=5)
            if rc != 0:
                why = f"signal {-rc}" if rc < 0 else f"status {rc}"
                last = errlines[-1] if errlines else "no message"
                raise BackupFailedError(f"pg_dump exited with {why} ({last}); the upload was aborted",
                                        "check the database and retry; nothing was catalogued")

        def kill() -> None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

        def open_source() -> tuple[IO[bytes], Callable[[], None], Callable[[], None]]:
            assert proc.stdout is not None
            return proc.stdout, finish, kill

        # The roles and database properties (two short pg_dumpall/pg_dump runs, ~0.2-1 s) are read
        # while the dump streams, and taken for the manifest: a failure there still fails the backup
        # before anything is catalogued (the uploaded object is deleted), only later than it used to.
        db_globals = _in_background(pg_globals.capture, cp, name="pg-globals")
        m = _stream_backup(
            outputs, "db", opts, content="sql",
            source_desc=source_desc,
            open_source=open_source,
            describe=lambda: {"pg_server_version": stats.server_version, "db_rows": stats.rows,
                              "db_max_height": stats.max_height, "db_globals": db_globals()})
        return m
    finally:
        if (p := started.get("p")) is not None and p.poll() is None:
            p.kill()  # the run failed before the upload read it (lock held, globals or count failed)
            p.wait()
        try:
            conn.rollback()
            conn.close()
        except Exception:  # noqa: BLE001 - cleanup: the backup's own outcome is what matters
            pass


# ------------------------------------------------------------------------------ chain and config


def _tar_backup(outputs: StackOutputs, kind: str, members: list[Member], source_desc: str,
                opts: BackupOptions, checked: tuple[Member, ...] = ()) -> Manifest:
    if opts.fmt == "parallel":
        raise InputError(f"--format parallel is for database backups, not {kind}", "use --format gzip or zstd")
    s3 = opts.s3 = opts.s3 or client("s3", outputs.region)
    check_bucket(s3, outputs.backup_bucket_name)
    if opts.on_total is not None:  # the planned files' sizes: tar's headers and padding add little
        opts.on_total(sum(m.size for m in members))
    box: dict[str, TarSource] = {}

    def open_source() -> tuple[IO[bytes], Callable[[], None], Callable[[], None]]:
        src = TarSource(members, checked)
        box["s"] = src

        def finish() -> None:
            src.finish()

        return src.reader, finish, src.close

    try:
        return _stream_backup(outputs, kind, opts, content="tar", source_desc=source_desc, open_source=open_source,
                              describe=lambda: {"file_count": box["s"].file_count, "file_bytes": box["s"].file_bytes})
    finally:
        if "s" in box:
            box["s"].close()


def backup_chain(outputs: StackOutputs, data_dir: str | Path, opts: BackupOptions | None = None, *,
                 member_prefix: str | None = None) -> Manifest:
    """tar.gz of the node's data directory; chain.db is copied with SQLite's backup API.

    Only a directory whose chain.db is SQLite and passes integrity_check is backed up: anything
    else would be catalogued, pass verify, and fail the restore that needs it."""
    opts = opts or BackupOptions()
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is not a directory", "pass the node's data directory, e.g. /var/lib/xai/blockchain")
    members = plan_tree(path, member_prefix)
    chain_db = chain_db_member(members, path.absolute())
    return _tar_backup(outputs, "chain", members, str(path.absolute()), opts, checked=(chain_db,))


def backup_config(outputs: StackOutputs, paths: list[str | Path], opts: BackupOptions | None = None) -> Manifest:
    """tar.gz of deployment configuration files and directories (absolute member names)."""
    opts = opts or BackupOptions()
    if not paths:
        raise InputError("no configuration paths given", "pass the files or directories to archive")
    members: list[Member] = []
    for p in paths:
        members.extend(plan_tree(Path(p)))
    return _tar_backup(outputs, "config", members, ", ".join(str(Path(p).absolute()) for p in paths), opts)
