"""`recovery restore db`: the DR plan's scenario 1 (database corruption) as a runbook.

Steps (each journaled and timed; the engine resumes after a crash):

1. ``preflight``        the server answers, psql is installed, the target's state; a target that holds
                        tables needs ``--force``. Nothing is changed.
2. ``check-backup``     resolve the backup (``latest`` = newest with a manifest) and check it without
                        reading its body: HEAD of the object agrees with the manifest (its version,
                        size, no later overwrite), the format is restorable, and the server has room
                        for the scratch copy (recovery/backups/space.py). No SQL yet.
3. ``stop-services``    stop the dependent services (``recovery.services``; stop order from config).
   ``restore-roles``    create the roles of the backup that the server lacks (recovery/pg_globals.py:
                        existing roles are never altered), so that owners and grants load.
4. ``restore-scratch``  create ``<target>_restore_<run>`` on the same server and stream the backup
                        into it, once: S3 -> sha256 -> gunzip/zstd -> ``psql --single-transaction``,
                        checking on the way that the dump ends with pg_dump's completion marker.
                        psql's transaction commits only once the sha256, the size and the structure
                        have held (otherwise psql is killed first and the scratch DB is dropped).
                        Timed per phase (download, decompression, SQL). The live DB is not touched.
                        On success the scratch DB gets a COMMENT marking it complete (the step's check).
5. ``verify-scratch``   ``count(*)`` and ``max(height)`` of ``blockchain`` equal the manifest's.
   ``database-settings`` the database-level properties of the backup onto the scratch database:
                        owner, COMMENT, ``ALTER DATABASE ... SET``, per-role settings, connection
                        limit, grants (``REVOKE CONNECT ... FROM PUBLIC``).
6. ``swap``             one transaction, after terminating other connections to both databases:
                        ``<target>`` -> ``<target>_quarantine_<run start>``, scratch -> ``<target>``.
                        The commit point. Its check: the target is the scratch database (same oid).
7. ``reindex``          only with ``--reindex`` (the plan's detection step): ``REINDEX DATABASE`` on
                        the restored database, before any service reconnects.
   ``drop-old``         only with ``--no-keep-old``: drop the quarantined database.
8. ``start-services``   start the services again, in start order.

Any failure before the swap drops the scratch database and starts the services this run stopped,
so the live database and the services are as they were (roles created by ``restore-roles`` stay:
they are the backup's, and may own objects by then). After the swap a failure leaves the restored
database in place (it was verified) and the old one quarantined; a rerun resumes.

Whatever ``restore-roles`` or ``database-settings`` could not apply is listed in their detail under
``not_restored``: the run ends ``partial`` (exit 18) and names each item, never ``ok``.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from recovery import redact
from recovery import knobs, pg_globals, postgres
from recovery.aws import client
from recovery.catalog import Catalog, Entry
from recovery.errors import DatabaseError, InputError, IntegrityError, RefusedError, one_line
from recovery.postgres import ConnParams
from recovery.engine.journal import Journal, JournalStore, default_journal_dir, run_stamp
from recovery.reports import rto_budget
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step, StepContext, Target
from recovery.backups.parallel_format import DEFAULT_JOBS, check_jobs
from recovery.backups.read import BackupStream, check_backup, prefetch, resolve_backup
from recovery.backups.space import server_free_space
from recovery.backups.verify import PG_DUMP_END
from recovery.engine.locks import HostLock
from recovery.engine.runbook import execute
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import StackOutputs

log = logging.getLogger(__name__)

NAME = "restore-db"
PREFIX_BYTES = 30  # of the target in derived names; the rest is the run's unique suffix
TAIL_BYTES = 256  # of the decompressed dump kept for its completion marker (as `recovery verify` does)


@dataclass
class DbRestoreOptions:
    backup: str = "latest"
    target_db: str | None = None
    keep_old: bool = True
    force: bool = False
    dsn: str | None = None
    reindex: bool = False
    # connections loading a parallel-format backup at once (runbooks/parallel_load.py); None: DEFAULT_JOBS,
    # and no note that a gzip/zstd backup ignores it
    jobs: int | None = None

    def __post_init__(self) -> None:
        if self.jobs is not None:
            check_jobs(self.jobs)
        if self.target_db is not None:  # before anything is read or resolved
            postgres.check_name(self.target_db, "--target-db")


def scratch_name(target: str, run_id: str) -> str:
    return postgres.fit_name(target, f"_restore_{run_id.lower().replace('-', '_')}", PREFIX_BYTES)


def quarantine_name(target: str, run_id: str) -> str:
    return postgres.fit_name(target, f"_quarantine_{run_stamp(run_id).lower()}", PREFIX_BYTES)


def marker(run_id: str, key: str) -> str:
    return f"xai-recovery {NAME} run {run_id} from {key}"


# ------------------------------------------------------------------------------------- SQL helpers


class Server:
    """Maintenance connections to the server that holds the target (database ``postgres``)."""

    def __init__(self, cp: ConnParams) -> None:
        self.cp = cp
        self.admin = ConnParams({**cp.params, "dbname": "postgres"}, cp.password)

    def on(self, dbname: str) -> ConnParams:
        return ConnParams({**self.cp.params, "dbname": dbname}, self.cp.password)

    def connect(self, dbname: str | None = None, **kw: Any) -> psycopg.Connection[Any]:
        return postgres.connect(self.on(dbname) if dbname else self.admin, autocommit=True, **kw)

    def _sqlerr(self, doing: str, exc: psycopg.Error) -> DatabaseError:
        first = redact.scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        return DatabaseError(f"{doing} failed on {self.admin.target}: {first}", "check the server and rerun")

    def exists(self, name: str) -> bool:
        with self.connect() as c:
            return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def oid(self, name: str) -> int | None:
        with self.connect() as c:
            row = c.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
            return None if row is None else int(row[0])

    def comment(self, name: str) -> str | None:
        with self.connect() as c:
            row = c.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                            (name,)).fetchone()
            return None if row is None else row[0]

    def table_count(self, name: str) -> int:
        with self.connect(name) as c:
            row = c.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%%'").fetchone()
            return int(row[0]) if row else 0

    def drop(self, name: str) -> None:
        try:
            with self.connect() as c:
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise self._sqlerr(f"dropping database {name}", exc) from None

    def create(self, name: str) -> None:
        try:
            with self.connect() as c:
                c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise self._sqlerr(f"creating database {name}", exc) from None

    def reindex(self, name: str) -> dict[str, Any]:
        """The plan's ``REINDEX DATABASE`` (it runs only on the database it is connected to, outside a
        transaction); returns how many indexes it rebuilt and how long it took."""
        started = time.monotonic()
        try:
            with self.connect(name) as c:
                row = c.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchone()
                c.execute(sql.SQL("REINDEX DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise self._sqlerr(f"REINDEX DATABASE {name}", exc) from None
        return {"indexes": int(row[0]) if row else 0, "seconds": round(time.monotonic() - started, 3)}

    def set_comment(self, name: str, text: str | None) -> None:
        with self.connect() as c:
            c.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(text)))

    def blockchain_stats(self, name: str) -> tuple[int | None, int | None]:
        with self.connect(name) as c:
            if not c.execute("SELECT to_regclass('public.blockchain') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
                return None, None
            row = c.execute("SELECT count(*), max(height) FROM public.blockchain").fetchone()
            assert row is not None
            return int(row[0]), (int(row[1]) if row[1] is not None else None)

    def swap(self, target: str, scratch: str, quarantine: str | None, attempts: int = 5) -> None:
        """In one transaction: target -> quarantine (when it exists), scratch -> target."""
        ident = sql.Identifier
        last: Exception | None = None
        for _ in range(attempts):
            try:
                with self.connect() as c:
                    with c.transaction():
                        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname IN (%s, %s) AND pid <> pg_backend_pid()", (target, scratch))
                        if quarantine:
                            c.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(target), ident(quarantine)))
                        c.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(scratch), ident(target)))
                return
            except psycopg.errors.ObjectInUse as exc:  # a client reconnected between terminate and rename
                last = exc
                time.sleep(0.5)
            except psycopg.Error as exc:
                raise self._sqlerr(f"renaming {scratch} to {target}", exc) from None
        assert last is not None
        raise self._sqlerr(f"renaming {scratch} to {target} (clients keep reconnecting)", last)  # type: ignore[arg-type]


def psql_into(server: Server, dbname: str, stream: BackupStream) -> dict[str, Any]:
    """Pipe a plain dump into ``psql --single-transaction -v ON_ERROR_STOP=1`` on ``dbname``, checking
    it on the way: the stream's sha256 and size (``BackupStream``) and that it ends with pg_dump's
    completion marker. psql commits only when its stdin closes, so on any mismatch it is killed
    first: its transaction rolls back and the scratch database holds nothing of the load."""
    cp = server.on(dbname)
    cmd = ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction",
           "--dbname", cp.conninfo()]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=cp.env(), bufsize=0)
    except FileNotFoundError:
        raise InputError("psql is not installed or not on PATH", "install the PostgreSQL client (15 or newer)") from None
    errlines: collections.deque[str] = collections.deque(maxlen=5)

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            errlines.append(redact.scrub(line.decode(errors="replace").rstrip()))

    t = threading.Thread(target=drain, name="psql-stderr", daemon=True)
    t.start()
    ph = stream.phases
    assert proc.stdin is not None
    broken = False
    tail = b""  # the last bytes of the dump, for its completion marker (never the whole dump)
    chunks = prefetch(stream.chunks())
    try:
        for data in chunks:
            tail = (tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]
            t0 = time.monotonic()
            try:
                proc.stdin.write(data)
            except BrokenPipeError:
                broken = True
                break
            finally:
                ph.apply += time.monotonic() - t0
        # here the sha256 and size have been checked (the stream ended without raising)
        if not broken and PG_DUMP_END not in tail:
            raise IntegrityError(f"{stream.manifest.name}: the SQL dump does not end with pg_dump's completion marker "
                                 "(it is truncated)", "nothing was swapped in; restore an older backup with --backup KEY")
        t0 = time.monotonic()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            broken = True
        rc = proc.wait()
        ph.apply += time.monotonic() - t0
    except BaseException:
        proc.kill()  # before stdin closes: psql never sends its COMMIT
        proc.wait()
        raise
    finally:
        chunks.close()
        t.join(timeout=5)
    if rc != 0 or broken:
        last = next((x for x in reversed(errlines) if "ERROR:" in x or "FATAL:" in x),
                    next((x for x in reversed(errlines) if x), "no message"))
        raise DatabaseError(f"psql failed loading the backup into {dbname} (exit {rc}): {last}",
                            "the live database was not touched; check the error and rerun")
    return ph.as_detail("sql")


def rollback_text(target: str, live: tuple[int | None, int | None], backup_height: int | None) -> str:
    """How far the swap takes the live database back: its max(height) now against the backup's."""
    if live[1] is None:
        return f"nothing: {target} has no blockchain rows now (the backup's max(height) is {backup_height})"
    if backup_height is None:
        return f"unknown: the backup records no max(height) ({target} is at {live[1]})"
    lost = live[1] - backup_height
    if lost <= 0:
        return f"nothing: {target} max(height) {live[1]} -> the backup's {backup_height}"
    return f"{lost} block(s): {target} max(height) {live[1]} -> the backup's {backup_height}"


# ------------------------------------------------------------------------------------- the runbook


@dataclass
class DbRestore:
    outputs: StackOutputs
    opts: DbRestoreOptions
    s3: Any
    server: Server
    services: ServiceControl
    target: str
    backup_key: str  # what --backup resolved to when the command started (`latest` is a moving name)
    budget: dict[str, Any] | None = None  # the RTO budget (reports/rto_budget.py), said before the run

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.s3, self.outputs.backup_bucket_name)

    def entry(self, ctx: StepContext) -> Entry:
        return self.catalog.get(ctx.results.get("check-backup", {}).get("key") or self.backup_key)

    # -- checks (read-only)
    def swapped(self, ctx: StepContext) -> bool:
        # by oid, which a rename keeps: the restored database carries the backup's own COMMENT
        return self._is_scratch(self.target, ctx.results.get("restore-scratch", {}).get("oid"))

    def _is_scratch(self, name: str, oid: Any) -> bool:
        return oid is not None and self.server.oid(name) == int(oid)

    def scratch_ready(self, ctx: StepContext) -> dict[str, Any] | bool:
        key = ctx.results.get("check-backup", {}).get("key")
        if not key:
            return False
        if self.swapped(ctx):
            return {"scratch": scratch_name(self.target, ctx.run_id), "note": "already swapped in"}
        s = scratch_name(self.target, ctx.run_id)
        return {"scratch": s} if self.server.comment(s) == marker(ctx.run_id, key) else False

    def needs_force(self, reporter: Any, dry_run: bool) -> None:
        """Before anything (journal included): a target holding tables needs --force."""
        if self.opts.force:
            return
        try:
            tables = self.server.table_count(self.target) if self.server.exists(self.target) else 0
        except DatabaseError:
            return  # unreachable: the preflight step reports it
        if not tables:
            return
        err = RefusedError(f"database {self.target} is not empty ({tables} tables)",
                           "it will be quarantined, not overwritten: rerun with --force to replace it")
        if not dry_run:
            raise err
        if reporter is not None:
            reporter.message(f"note: {err.line()}")

    def stakes(self) -> dict[str, Any]:
        """For the plan and the prompt: the backup (what ``latest`` means now) and what the swap rolls
        back, the live max(height) against the backup's. Read-only; an unreachable server is "unknown"."""
        m = self.catalog.get(self.backup_key).manifest
        try:
            if self.server.exists(self.target):
                rolls = rollback_text(self.target, self.server.blockchain_stats(self.target), m.db_max_height)
            else:
                rolls = f"nothing: {self.target} does not exist"
        except (DatabaseError, psycopg.Error) as exc:
            rolls = f"unknown ({one_line(exc)})"
        return {"backup": self.backup_key + (" (latest)" if self.opts.backup == "latest" else ""),
                "backup taken": m.ended_at, "rolls back": rolls,
                "current database": (f"kept as {self.target}_quarantine_<run start>" if self.opts.keep_old
                                     else "dropped after the swap (--no-keep-old)")}

    # -- actions
    def preflight(self, ctx: StepContext) -> dict[str, Any]:
        if self.target in ("postgres", "template0", "template1"):
            raise InputError(f"refusing to restore over the maintenance database {self.target}",
                             "pass --target-db with the application database")
        if shutil.which("psql") is None:
            raise InputError("psql is not installed or not on PATH", "install the PostgreSQL client (15 or newer)")
        with self.server.connect() as c:
            version = str(c.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        exists = self.server.exists(self.target)
        tables = self.server.table_count(self.target) if exists else 0
        if tables and not self.opts.force and not self.swapped(ctx):  # a resumed run finds its own restore
            raise RefusedError(f"database {self.target} is not empty ({tables} tables)",
                               "it will be quarantined, not overwritten: rerun with --force to replace it")
        return {"server": self.server.admin.target.rsplit("/", 1)[0], "server_version": version,
                "target_exists": exists, "target_tables": tables, "rto_budget": self.budget}

    def check_backup(self, ctx: StepContext) -> dict[str, Any]:
        e = self.catalog.get(self.backup_key)
        detail = check_backup(self.s3, e, "sql", "a database backup")
        detail.update(rows=e.manifest.db_rows, max_height=e.manifest.db_max_height)
        detail.update(server_free_space(self.server.connect, self.target, e.manifest.raw_bytes))
        if self.opts.jobs is not None and e.manifest.format != "parallel":
            # said before anything stops, as a kept line (a terminal rewrites progress in place): the
            # operator asked for a parallel load this backup cannot give
            ctx.info(f"--jobs {self.opts.jobs} does not apply: a {e.manifest.format} backup loads on one connection")
            detail["jobs"] = f"ignored ({e.manifest.format} loads on one connection)"
        return detail

    def stop_services(self, ctx: StepContext) -> dict[str, Any]:
        done_ = self.services.stop_all()
        return {"stopped": [r.service for r in done_], "seconds": round(sum(r.duration_s for r in done_), 3)}

    def stopped_or_swapped(self, ctx: StepContext) -> bool:
        return self.swapped(ctx) or self.services.all_stopped()

    def restore_scratch(self, ctx: StepContext) -> dict[str, Any]:
        e = self.entry(ctx)
        s = scratch_name(self.target, ctx.run_id)
        self.server.drop(s)  # a partial scratch left by a crash
        self.server.create(s)
        if e.manifest.db_globals:  # its failures, if any, are reported by database-settings
            with self.server.connect() as c:
                pg_globals.apply_database(c, e.manifest.db_globals, s, owner_only=True)
        ctx.progress(f"restoring {e.manifest.name} ({e.manifest.format}) into scratch database {s}")
        if e.manifest.format == "parallel":
            from recovery.runbooks.parallel_load import load_parallel

            detail = load_parallel(self.server, s, self.s3, e.manifest, self.opts.jobs or DEFAULT_JOBS, ctx.progress,
                                   psql_into=psql_into)
        else:
            detail = psql_into(self.server, s, BackupStream(self.s3, e.manifest, counted=ctx.progress))
        self.server.set_comment(s, marker(ctx.run_id, e.manifest.key))
        return {"scratch": s, "oid": self.server.oid(s), **detail}

    def verify_scratch(self, ctx: StepContext) -> dict[str, Any]:
        e = self.entry(ctx)
        s = scratch_name(self.target, ctx.run_id)
        rows, height = self.server.blockchain_stats(s)
        m = e.manifest
        if (rows, height) != (m.db_rows, m.db_max_height):
            raise IntegrityError(f"restored copy has {rows} rows, max(height) {height}; the manifest says "
                                 f"{m.db_rows} rows, max(height) {m.db_max_height}",
                                 "the live database was not touched; try an older backup with --backup KEY")
        return {"rows": rows, "max_height": height}

    def restore_roles(self, ctx: StepContext) -> dict[str, Any]:
        g = self.entry(ctx).manifest.db_globals
        if not g:
            return {"not_restored": ["roles: the backup holds none (taken before roles were recorded)"]}
        with self.server.connect() as c:
            return pg_globals.apply_roles(c, g["roles"])

    def database_settings(self, ctx: StepContext) -> dict[str, Any]:
        g = self.entry(ctx).manifest.db_globals
        if not g:
            return {"not_restored": ["database settings, grants and comment: the backup holds none "
                                     "(taken before they were recorded)"]}
        s = scratch_name(self.target, ctx.run_id)
        self.server.set_comment(s, None)  # this run's marker goes; the backup's own comment, if any, comes back
        with self.server.connect() as c:
            return pg_globals.apply_database(c, g, s)

    def swap(self, ctx: StepContext) -> dict[str, Any]:
        s = scratch_name(self.target, ctx.run_id)
        q = quarantine_name(self.target, ctx.run_id) if self.server.exists(self.target) else None
        self.server.swap(self.target, s, q)
        return {"live": self.target, "quarantined_as": q or "(no previous database)"}

    def old_dropped(self, ctx: StepContext) -> bool:
        return self.swapped(ctx) and not self.server.exists(quarantine_name(self.target, ctx.run_id))

    def drop_old(self, ctx: StepContext) -> dict[str, Any]:
        q = quarantine_name(self.target, ctx.run_id)
        self.server.drop(q)
        return {"dropped": q}

    # -- failure: put things back as they were (before the swap only)
    def undo(self, journal: Journal) -> None:
        if journal.completed("swap"):
            return
        error: Exception | None = None
        if journal.step("restore-scratch").status != "pending":  # a scratch database may exist
            try:
                if not self._is_scratch(self.target, journal.step("restore-scratch").detail.get("oid")):
                    self.server.drop(scratch_name(self.target, journal.run_id))
            except Exception as exc:  # noqa: BLE001 - still restart the services below
                error = exc
        if journal.completed("stop-services"):
            self.services.start_all()
        if error is not None:
            raise error

    def runbook(self) -> Runbook:
        t = self.target
        steps = [
            Step("preflight", self.preflight, touches="nothing (reads the server and the target)", rerun=True),
            Step("check-backup", self.check_backup,
                 touches=f"nothing (HEAD of backup {self.backup_key} in s3://{self.outputs.backup_bucket_name}: "
                         "version, size, format; free space for the scratch database)"),
            Step("stop-services", self.stop_services, touches=self.services.describe_stop(), check=self.stopped_or_swapped),
            Step("restore-roles", self.restore_roles,
                 touches="creates the backup's roles the server lacks, without passwords (existing roles are not changed)"),
            Step("restore-scratch", self.restore_scratch,
                 touches=f"creates database {t}_restore_<run> and streams the backup into it once (sha256, structure)",
                 check=self.scratch_ready),
            Step("verify-scratch", self.verify_scratch, touches="nothing (counts blockchain rows in the scratch database)"),
            Step("database-settings", self.database_settings,
                 touches="sets the backup's owner, settings, grants and comment on the scratch database"),
            Step("swap", self.swap, touches=f"renames {t} -> {t}_quarantine_<run start> and the scratch -> {t}",
                 check=self.swapped),
        ]
        if self.opts.reindex:
            # Opt-in, as in the plan's detection ("Run REINDEX if corruption detected"): after the
            # swap and before the services start, so no writer waits on its locks.
            steps.append(Step("reindex", lambda ctx: self.server.reindex(t),
                              touches=f"REINDEX DATABASE {t} (rebuilds every index of the restored database)"))
        if not self.opts.keep_old:
            steps.append(Step("drop-old", self.drop_old, touches=f"drops {t}_quarantine_<run start>", check=self.old_dropped))
        steps.append(Step("start-services", lambda ctx: self.services.start_step().action(ctx),
                          touches=self.services.describe_start(), check=lambda ctx: self.services.all_running(),
                          undone_by=("stop-services",)))
        return Runbook(NAME, steps,
                       Target(t, production=self.outputs.production), destructive=True,
                       params={"stack": self.outputs.stack, "backup": self.opts.backup, "backup_key": self.backup_key,
                               "server": self.server.admin.target.rsplit("/", 1)[0], "target_db": t,
                               "keep_old": self.opts.keep_old, "force": self.opts.force,
                               "reindex": self.opts.reindex, "jobs": self.opts.jobs})


def build(outputs: StackOutputs, opts: DbRestoreOptions, *, s3: Any = None,
          services: ServiceControl | None = None) -> DbRestore:
    cp = postgres.resolve(outputs, opts.dsn)
    target = opts.target_db or cp.params.get("dbname") or outputs.db_name
    postgres.check_name(target, "the target database (from --dsn, PGDATABASE or the stack's db_name)")
    services = services or ServiceControl(ServicesConfig.for_stack(outputs))  # a bad services config is refused before the catalogue is read
    s3 = s3 or client("s3", outputs.region)
    key = resolve_backup(Catalog(s3, outputs.backup_bucket_name), "db", opts.backup).manifest.key
    return DbRestore(outputs, opts, s3, Server(cp), services, target, key)


def restore_db(outputs: StackOutputs, opts: DbRestoreOptions, store: JournalStore, *, yes: bool = False,
               dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    """Run (or dry-run) the restore; returns (journal, None) or (None, plan)."""
    knobs.value("RECOVERY_RESTORE_MB_PER_S")  # a bad value is refused before anything is read
    r = build(outputs, opts)
    r.budget = rto_budget.estimate(outputs, r.catalog.get(r.backup_key).manifest, store, NAME, r.target)
    rb = r.runbook()
    rb.stakes = r.stakes()  # asked here, not in runbook(): it reads the live database
    if rb.resumable(store) is None:  # a resumed run may find its own restored database in place
        r.needs_force(reporter, dry_run)
    if r.budget.get("exceeds_rto") and reporter is not None:
        reporter.message(f"warning: {r.budget['advice']}")
    if dry_run:
        journal, plan = execute(rb, store, yes=yes, dry_run=True, reporter=reporter)
        return journal, {**(plan or {}), "rto_budget": r.budget}
    return execute(rb, store, yes=yes, dry_run=False, reporter=reporter, lock=lock_for(r), on_failure=r.undo)


def lock_for(r: DbRestore) -> HostLock:
    """One restore per database per server: same-named databases on two servers restore side by side."""
    p = r.server.cp.params
    where = f"{p.get('host')}:{p.get('port') or 5432}/{r.target}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", where)[:80]
    return HostLock(f"{NAME}-{safe}-{hashlib.sha256(where.encode()).hexdigest()[:10]}", default_journal_dir(),
                    what="restore")
