"""Loading a parallel database backup into the scratch database (`restore db`'s restore-scratch step
for `--format parallel` backups; the format: recovery/backups/parallel_format.py).

1. pre-data: the schema without indexes, constraints or triggers, through
   ``psql --single-transaction -v ON_ERROR_STOP=1`` (restore_db.psql_into).
2. data: ``jobs`` connections, each loading one part at a time with psycopg's
   ``COPY ... FROM STDIN`` in its own transaction, biggest first; the data-other part (sequence
   values, large objects) goes through psql as one of them. Download, sha256 and zstd run a few
   chunks ahead on a thread per part (recovery.backups.read.prefetch; zstandard and libpq release the GIL).
3. post-data, split into pg_dump's entries and run on ``jobs`` connections in coarse phases, as
   ``pg_restore -j`` orders them: indexes and primary key / unique / check constraints at once;
   then index attachments (partitioned indexes); then foreign keys at once (they need the keys
   they reference); then everything else (triggers, rules, comments, materialized view refreshes...)
   in pg_dump's order on one connection. A PRIMARY KEY or UNIQUE constraint of a plain table is
   built as ``CREATE UNIQUE INDEX`` (a SHARE lock, so a table's keys build side by side) and then
   attached with ``ADD CONSTRAINT ... USING INDEX``: the same constraint and index, as dumped.

Verified while loading: each part's sha256 and sizes as it streams (parallel_format.PartStream),
each COPY's row count against the manifest. Any mismatch raises IntegrityError and stops the other
connections; nothing is live yet (the runbook's undo drops the scratch database).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

from botocore.exceptions import ClientError

import psycopg
from psycopg._encodings import pg2pyenc  # psycopg's own map of PostgreSQL encodings to Python codecs

from recovery import redact
from recovery.aws import aws_error
from recovery.backups.parallel_format import part_manifest, parts_of
from recovery.backups.read import BackupStream, prefetch
from recovery.catalog import Manifest
from recovery.errors import DatabaseError, IntegrityError, RecoveryError

T = TypeVar("T")


class Server(Protocol):
    """restore_db.Server, as far as the loader uses it (restore_db imports this module, so the loader
    is handed restore_db's Server and psql_into instead of importing them)."""

    def connect(self, dbname: str | None = None, **kw: Any) -> psycopg.Connection[Any]: ...


Psql = Callable[[Any, str, BackupStream], dict[str, Any]]

# As pg_dump's own preamble has it, plus synchronous_commit: the scratch database is dropped, not
# recovered, if the server stops before the swap.
SESSION = ("SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; "
           "SET standard_conforming_strings = on; SET client_min_messages = warning; SET row_security = off; "
           "SET synchronous_commit = off; SELECT pg_catalog.set_config('search_path', '', false)")
DEADLOCK_RETRIES = 5

_HEADER = re.compile(r"^-- (?:Data for )?Name: (?P<name>.*); Type: (?P<type>[A-Z ]+); Schema: (?P<schema>.*); Owner: .*$")
_SETTING = re.compile(r"^(?:SET (?P<guc>\w+) = .*;|SELECT pg_catalog\.set_config\('(?P<cfg>\w+)', .*\);)$")
_IDENT = r'"(?:[^"]|"")+"'
_ADD_KEY = re.compile(rf"^ALTER TABLE ONLY (?P<table>{_IDENT}\.{_IDENT})\s+ADD CONSTRAINT (?P<name>{_IDENT}) "
                      r"(?P<kind>PRIMARY KEY|UNIQUE) \((?P<cols>[^()]*)\);$")


@dataclass
class Entry:
    type: str
    name: str
    settings: dict[str, str]
    body: list[str] = field(default_factory=list)

    @property
    def statement(self) -> str:
        return "".join(x for x in self.body if not x.startswith("--")).strip()

    def sql(self, statement: str | None = None) -> str:
        return "\n".join(self.settings.values()) + "\n" + (statement if statement is not None else self.statement)


def split_entries(text: str) -> list[Entry]:
    """pg_dump's plain output as its TOC entries, each with the session settings in force where it
    stands (pg_dump writes SET lines between entries; search_path, default_tablespace...)."""
    settings: dict[str, str] = {}
    entries: list[Entry] = []
    cur: Entry | None = None
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        if (h := _HEADER.match(bare)) is not None:
            cur = Entry(h["type"], h["name"], dict(settings))
            entries.append(cur)
        elif bare.startswith("\\"):
            continue  # psql meta-commands (pg_dump's \restrict / \unrestrict): not SQL
        elif (s := _SETTING.match(bare)) is not None:
            settings[s["guc"] or s["cfg"]] = bare
        elif cur is not None:
            cur.body.append(line)
    return [e for e in entries if e.statement]


def post_data_phases(entries: list[Entry], partitioned: set[str]) -> list[tuple[str, bool, list[str]]]:
    """(phase name, parallel?, SQL texts) in the order they must run."""
    build: list[str] = []
    attach_keys: list[str] = []
    attach_indexes: list[str] = []
    foreign: list[str] = []
    rest: list[str] = []
    for e in entries:
        if e.type == "CONSTRAINT" and (k := _ADD_KEY.match(e.statement)) and k["table"] not in partitioned:
            build.append(e.sql(f"CREATE UNIQUE INDEX {k['name']} ON {k['table']} USING btree ({k['cols']})"))
            attach_keys.append(e.sql(f"ALTER TABLE ONLY {k['table']} ADD CONSTRAINT {k['name']} {k['kind']} "
                                     f"USING INDEX {k['name']}"))
        elif e.type in ("INDEX", "CONSTRAINT"):
            build.append(e.sql())
        elif e.type == "INDEX ATTACH":
            attach_indexes.append(e.sql())
        elif e.type == "FK CONSTRAINT":
            foreign.append(e.sql())
        else:
            rest.append(e.sql())
    return [("indexes and constraints", True, build), ("key constraints", False, attach_keys),
            ("index attachments", False, attach_indexes), ("foreign keys", True, foreign),
            ("triggers, rules, comments and the rest", False, rest)]


def run_parallel(server: Server, dbname: str, items: Iterable[T], jobs: int,
                 work: Callable[[psycopg.Connection[Any], T, threading.Event], None], session: str = SESSION) -> None:
    """`work(conn, item, stop)` for every item on `jobs` connections of their own. The first error
    stops the others (each checks `stop` between chunks) and is raised here."""
    q: queue.Queue[T] = queue.Queue()
    for it in items:
        q.put(it)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with server.connect(dbname) as conn:
                conn.execute(session)
                while not stop.is_set():
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        return
                    work(conn, item, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True) for i in range(min(jobs, q.qsize()))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # Ctrl-C: the workers stop at their next chunk
        stop.set()
        raise
    if errors:
        first = next((e for e in errors if isinstance(e, IntegrityError)), errors[0])  # the cause, not the echo
        if isinstance(first, RecoveryError):
            raise first
        if isinstance(first, psycopg.Error):
            raise _sqlerr(server, dbname, "loading", first) from None
        raise first


def _sqlerr(server: Server, dbname: str, doing: str, exc: psycopg.Error) -> DatabaseError:
    first = redact.scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    return DatabaseError(f"{doing} failed on {dbname}: {first}", "the live database was not touched; check the error and rerun")


def part_stream(s3: Any, m: Manifest, part: dict[str, Any],
                counted: Callable[[str, float, float], None] | None = None) -> tuple[PartStream, Iterator[bytes]]:
    """(stream, decompressed chunks) of one part, pinned to its version. The chunks raise IntegrityError
    at the end when the sha256, the stored size or the raw size differ from the manifest's."""
    stream = PartStream(s3, part_manifest(m, part), counted=counted)
    stream.backup_name, stream.part = m.name, part
    return stream, stream.chunks()


class PartStream(BackupStream):
    """One part's decompressed bytes, checked at the end against the part's manifest entry."""

    backup_name: str = ""
    part: dict[str, Any] = {}

    def chunks(self) -> Iterator[bytes]:
        part, name = self.part, self.backup_name
        try:
            yield from super().chunks()
        except IntegrityError as exc:
            raise IntegrityError(f"bad checksum or corrupt data in part {part['name']} of {name}: {exc.problem}",
                                 "the live database was not touched; restore another backup with --backup KEY") from None
        except ClientError as exc:
            raise aws_error(exc, f"reading {part['key']}", bucket=self.manifest.bucket) from None
        if self.phases.raw_bytes != part["raw_bytes"]:
            raise IntegrityError(f"part {part['name']} of {name} decompresses to {self.phases.raw_bytes} bytes, "
                                 f"the manifest says {part['raw_bytes']}", "restore another backup with --backup KEY")


class _Stopped(Exception):
    """Another connection failed: this one gives up its part (the caller raises the other's error)."""


def _execute(conn: psycopg.Connection[Any], sql: str) -> None:
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            conn.execute(sql)  # no parameters: the simple protocol, several statements in one transaction
            return
        except psycopg.errors.DeadlockDetected:  # two entries locking two tables in turn: one gave way
            if attempt == DEADLOCK_RETRIES:
                raise
            time.sleep(0.2 * attempt)


@dataclass
class _Totals:
    lock: threading.Lock = field(default_factory=threading.Lock)
    download: float = 0.0
    decompress: float = 0.0
    stored: int = 0
    raw: int = 0
    rows: int = 0

    def add(self, ph: Any, rows: int = 0) -> None:
        with self.lock:
            self.download += ph.download
            self.decompress += ph.decompress
            self.stored += ph.stored_bytes
            self.raw += ph.raw_bytes
            self.rows += rows


def _post_data(server: Server, dbname: str, text: bytes, jobs: int, say: Callable[[str], None]) -> int:
    """Run the post-data text in its phases (post_data_phases); how many entries it held."""
    with server.connect(dbname) as c:
        partitioned = {r[0] for r in c.execute(
            "SELECT format('\"%s\".\"%s\"', replace(n.nspname, '\"', '\"\"'), replace(c.relname, '\"', '\"\"')) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'").fetchall()}
    # pg_dump wrote the text in the database's encoding and says which: the connections speak it too,
    # set before any entry is sent (psycopg encodes each query with the connection's encoding)
    enc = (re.search(rb"^SET client_encoding = '([A-Za-z0-9_]+)';$", text, re.M) or [b"", b"UTF8"])[1]
    entries = split_entries(text.decode(pg2pyenc(enc)))
    for e in entries:
        e.settings.pop("client_encoding", None)
    session = f"{SESSION}; SET client_encoding = '{enc.decode()}'"
    for name, parallel, sqls in post_data_phases(entries, partitioned):
        if not sqls:
            continue
        say(f"post-data, {name} ({len(sqls)}) on {jobs if parallel else 1} connection(s)")
        run_parallel(server, dbname, sqls, jobs if parallel else 1,
                     lambda conn, sql, stop: _execute(conn, sql), session=session)
    return len(entries)


def load_parallel(server: Server, dbname: str, s3: Any, m: Manifest, jobs: int,
                  progress: Callable[[str, float | None, float | None], None] | None = None, *,
                  psql_into: Psql) -> dict[str, Any]:
    parts = parts_of(m)
    totals = _Totals()
    timings: dict[str, float] = {}

    def say(text: str, done: float | None = None, total: float | None = None) -> None:
        if progress is not None:
            progress(text, done, total)

    def sql_part(p: dict[str, Any]) -> None:
        stream, _ = part_stream(s3, m, p)
        psql_into(server, dbname, stream)
        totals.add(stream.phases)

    t = time.monotonic()
    say(f"{m.name}: pre-data (schema) into {dbname}", totals.stored, m.stored_bytes)
    for p in parts:
        if p["section"] == "pre-data":
            sql_part(p)
    timings["pre_data_s"] = round(time.monotonic() - t, 3)

    def load(conn: psycopg.Connection[Any], p: dict[str, Any], stop: threading.Event) -> None:
        if not p.get("table"):
            sql_part(p)
            return
        stream, chunks = part_stream(s3, m, p)
        if p.get("encoding"):
            conn.execute(f"SET client_encoding = '{p['encoding']}'")  # the dump's: COPY bytes are not converted
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(p["copy"]) as cp:
                fed = prefetch(chunks)
                try:
                    for data in fed:
                        if stop.is_set():
                            raise _Stopped()
                        cp.write(data)
                finally:
                    fed.close()
            rows = cur.rowcount  # COPY's own count of the rows it loaded
            if rows != p["rows"]:
                raise IntegrityError(f"part {p['name']} of {m.name} loaded {rows} rows into {p['table']}, "
                                     f"the manifest says {p['rows']}", "restore another backup with --backup KEY")
        totals.add(stream.phases, rows)
        say(f"{m.name}: data, {totals.rows} rows loaded on {jobs} connection(s)", totals.stored, m.stored_bytes)

    t = time.monotonic()
    data = sorted((p for p in parts if p["section"] == "data"), key=lambda p: -p["raw_bytes"])
    run_parallel(server, dbname, data, jobs, load)
    timings["data_s"] = round(time.monotonic() - t, 3)

    t = time.monotonic()
    text = b""
    for p in parts:
        if p["section"] == "post-data":
            stream, chunks = part_stream(s3, m, p)
            text += b"".join(chunks)
            totals.add(stream.phases)
    n_entries = _post_data(server, dbname, text, jobs, lambda line: say(f"{m.name}: {line}"))
    timings["post_data_s"] = round(time.monotonic() - t, 3)
    return {"format": m.format, "jobs": jobs, "parts": len(parts), "rows_loaded": totals.rows,
            "post_data_entries": n_entries, **timings, "download_s": round(totals.download, 3),
            "decompress_s": round(totals.decompress, 3), "sql_s": round(timings["data_s"] + timings["pre_data_s"]
                                                                        + timings["post_data_s"], 3),
            "stored_bytes": totals.stored, "raw_bytes": totals.raw}
