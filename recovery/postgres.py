"""PostgreSQL helpers: connection parameters, the DB secret, consistent stats, pg_dump.

Connection parameters come from the stack outputs (db_endpoint, db_port, db_name, db_username)
and the master password from Secrets Manager (VersionStage='AWSCURRENT'). PG* environment
variables override single fields; ``--dsn`` overrides on top of that. The password never goes on
a command line or into a log: subprocesses get it in PGPASSWORD, and every value read from a
secret is registered with `recovery.redact` so log lines are scrubbed as a last defence.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from recovery import redact
from recovery.aws import aws_error, client
from recovery.errors import DatabaseError, InputError
from recovery.stack import StackOutputs

log = logging.getLogger(__name__)

_ENV_MAP = {"PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user",
            "PGPASSWORD": "password", "PGSSLMODE": "sslmode"}


@dataclass
class ConnParams:
    params: dict[str, str]
    password: str | None

    @property
    def target(self) -> str:
        """Human description without the password: user@host:port/db."""
        p = self.params
        return f"{p.get('user', '?')}@{p.get('host', '?')}:{p.get('port', '5432')}/{p.get('dbname', '?')}"

    def conninfo(self) -> str:
        return make_conninfo(**self.params)

    def env(self) -> dict[str, str]:
        """Environment for libpq subprocesses: inherits ours, password only via PGPASSWORD."""
        env = {k: v for k, v in os.environ.items() if k not in _ENV_MAP}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env


def read_secret(outputs: StackOutputs, arn: str) -> str:
    """The secret's AWSCURRENT value (registered for redaction). JSON secrets return 'password'."""
    sm = client("secretsmanager", outputs.region)
    try:
        resp = sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    except Exception as exc:  # noqa: BLE001 - mapped to a one-line error (aws_error)
        raise aws_error(exc, f"reading secret {arn}") from None
    raw = resp.get("SecretString")
    if raw is None:
        raise DatabaseError(f"secret {arn} has no SecretString", "store the DB password as a string or JSON")
    redact.register(raw)
    try:
        d = json.loads(raw)
    except ValueError:
        return str(raw)
    if isinstance(d, dict) and "password" in d:
        pw = str(d["password"])
        redact.register(pw)
        return pw
    return str(raw)


ENDPOINTS = ("writer", "reader")


def resolve(outputs: StackOutputs, dsn: str | None = None, endpoint: str = "writer") -> ConnParams:
    """Connection parameters: outputs, then PG* env overrides, then --dsn; the secret only if needed.

    ``endpoint="reader"`` starts from the cluster's reader endpoint, which Aurora routes to the writer
    when the cluster has no replica, so it always answers."""
    host = outputs.db_reader_endpoint if endpoint == "reader" else outputs.db_endpoint
    params: dict[str, str] = {"host": host, "port": str(outputs.db_port),
                              "dbname": outputs.db_name, "user": outputs.db_username,
                              "connect_timeout": "10", "application_name": "recovery"}
    password: str | None = None
    for env, key in _ENV_MAP.items():
        if os.environ.get(env):
            if key == "password":
                password = os.environ[env]
                redact.register(password)
            else:
                params[key] = os.environ[env]
    if dsn:
        try:
            extra = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise InputError("--dsn is not a valid PostgreSQL connection string", "use 'host=... dbname=...' or a postgresql:// URL") from None
        if "password" in extra:
            password = str(extra.pop("password"))
            redact.register(password)
        params.update({k: str(v) for k, v in extra.items() if v is not None})
        _check_connect_timeout(params["connect_timeout"])
    if password is None and not os.environ.get("PGPASSFILE"):
        password = read_secret(outputs, outputs.db_secret_arn)
    return ConnParams(params, password)


MAX_CONNECT_TIMEOUT = 300


def _check_connect_timeout(text: str) -> None:
    # libpq waits forever with connect_timeout=0 (or a value it cannot parse): never let --dsn do that
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_CONNECT_TIMEOUT:
        raise InputError(f"--dsn connect_timeout={text!r} would let a silent server stall the run",
                         f"use connect_timeout=1..{MAX_CONNECT_TIMEOUT} seconds or leave it out (default 10)")


# PostgreSQL truncates longer names (NAMEDATALEN - 1 bytes) with only a NOTICE; we refuse instead.
MAX_IDENT_BYTES = 63


def check_name(name: str, what: str) -> str:
    """`name` as a database name PostgreSQL keeps as given; InputError naming `what` otherwise."""
    size = len(name.encode())
    if size > MAX_IDENT_BYTES:
        raise InputError(f"{what} is {size} bytes long; PostgreSQL names are at most {MAX_IDENT_BYTES} bytes "
                         "and it would silently cut it", f"pass a name of at most {MAX_IDENT_BYTES} bytes")
    if not name or "\x00" in name:
        raise InputError(f"{what} is empty or holds a NUL byte", "pass a database name")
    return name


def fit_name(prefix: str, suffix: str, prefix_bytes: int) -> str:
    """prefix (cut to `prefix_bytes` bytes, never inside a character) + suffix, within MAX_IDENT_BYTES;
    the suffix carries what makes the name unique, so it is never cut."""
    cut = prefix.encode()[:prefix_bytes].decode(errors="ignore")
    name = cut + suffix
    assert len(name.encode()) <= MAX_IDENT_BYTES, name  # suffixes are short ASCII
    return name


def connect(cp: ConnParams, **kw: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(cp.conninfo(), password=cp.password, **kw)
    except psycopg.OperationalError as exc:
        first = redact.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise DatabaseError(f"cannot connect to PostgreSQL {cp.target}: {first}",
                            "check the DB is up, the network path and the DB secret (or pass --dsn)") from None


@dataclass
class SnapshotStats:
    snapshot: str
    server_version: str
    rows: int | None
    max_height: int | None


def export_snapshot(conn: psycopg.Connection[Any], on_exported: Callable[[str], None] | None = None) -> SnapshotStats:
    """Open a REPEATABLE READ transaction, export its snapshot, and count `blockchain` in it.

    pg_dump --snapshot then dumps exactly the state the counts describe. The caller keeps
    `conn` open (transaction in progress) until pg_dump has finished. `on_exported(snapshot)` runs
    as soon as the snapshot exists, before the count (a full scan): a pg_dump started there
    connects and reads the catalog meanwhile.
    """
    conn.autocommit = False
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        snap = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        if on_exported is not None:
            on_exported(snap)
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        exists = conn.execute("SELECT to_regclass('public.blockchain') IS NOT NULL").fetchone()[0]  # type: ignore[index]
        rows = max_height = None
        if exists:
            r = conn.execute("SELECT count(*), max(height) FROM public.blockchain").fetchone()
            assert r is not None
            rows, max_height = int(r[0]), (int(r[1]) if r[1] is not None else None)
        else:
            log.warning("table blockchain not found; the manifest will carry no row count")
    except psycopg.Error as exc:
        raise DatabaseError(f"could not take a consistent snapshot: {redact.scrub(str(exc).splitlines()[0])}",
                            "check the DB user's privileges") from None
    return SnapshotStats(snap, version, rows, max_height)


def table_bytes(conn: psycopg.Connection[Any]) -> int | None:
    """The user tables' heap and TOAST bytes: a plain dump (no indexes) is of that order, so a
    terminal's progress bar can show a total and an ETA. An estimate, never a check."""
    row = conn.execute("SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                       ).fetchone()
    return int(row[0]) if row and row[0] else None


def pg_dump_cmd(cp: ConnParams, snapshot: str | None) -> list[str]:
    cmd = ["pg_dump", "--format=plain", "--no-password", "--quote-all-identifiers", "--dbname", cp.conninfo()]
    if snapshot:
        cmd += ["--snapshot", snapshot]
    return cmd


def start_pg_dump(cp: ConnParams, snapshot: str | None) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(pg_dump_cmd(cp, snapshot), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=cp.env(), bufsize=0)
    except FileNotFoundError:
        raise InputError("pg_dump is not installed or not on PATH", "install the PostgreSQL client (15 or newer)") from None
