"""What a pg_dump of one database leaves out, captured with each backup and put back by `restore db`.

A plain ``pg_dump`` holds a database's objects with their owners and grants, but not:

- **roles**, which belong to the cluster. They are captured with ``pg_dumpall --globals-only
  --no-role-passwords``: the form that works on Aurora (its master user cannot read pg_authid) and
  that carries no password, so none ever reaches the backup bucket. A role restored onto a fresh
  cluster has no password; its owner sets one (or rotates it with `recovery rotate`).
- **database-level properties**: the owner, the COMMENT, ``ALTER DATABASE ... SET``, per-role
  settings in the database, the connection limit and the database's grants (``REVOKE CONNECT ...
  FROM PUBLIC``). ``pg_dump --create --schema-only --exclude-schema=*`` prints exactly those, in
  pg_dump's own quoting, plus CREATE DATABASE, which is dropped: the restore creates its own scratch
  database and the statements are renamed onto it.

Restoring roles creates the missing ones with their attributes, settings and memberships. A role that
exists is never altered, and no membership between two existing roles is granted: a restore must not
re-enable a role, or give back a membership, that someone removed on purpose (e.g. breach containment).
Whatever cannot be applied is returned in ``not_restored``, never dropped silently.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import psycopg

from recovery import redact
from recovery.errors import BackupFailedError
from recovery.postgres import ConnParams

_IDENT = r'"((?:[^"]|"")*)"'
_ROLE_STMT = re.compile(rf'^(?:CREATE ROLE|ALTER ROLE|COMMENT ON ROLE|SECURITY LABEL (?:FOR \S+ )?ON ROLE) {_IDENT}')
_GRANT = re.compile(rf'^GRANT {_IDENT} TO {_IDENT}(.*?)(?: GRANTED BY {_IDENT})?;$')
_HEADER = re.compile(r"^-- Name: (.*); Type: (.*); Schema: .*; Owner: .*$")
_DB_TYPES = ("COMMENT", "ACL", "SECURITY LABEL")


def _unquote(name: str) -> str:
    return name.replace('""', '"')


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def statements(text: str) -> list[str]:
    """The SQL statements of pg_dump/pg_dumpall output, without comments, psql meta-commands and
    the session SETs (a statement may span lines; it ends with a ';' at the end of a line)."""
    out: list[str] = []
    buf: list[str] = []
    for line in text.splitlines():
        if not buf and (not line.strip() or line.startswith("--") or line.startswith("\\")
                        or line.startswith("SET ") or line.startswith("SELECT pg_catalog.set_config(")):
            continue
        buf.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(buf))
            buf = []
    return out


def database_statements(text: str) -> list[str]:
    """From ``pg_dump --create``: the database's own properties, CREATE DATABASE left out."""
    out: list[str] = []
    keep = False
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            name, kind = m.groups()
            keep = kind in ("DATABASE", "DATABASE PROPERTIES") or (kind in _DB_TYPES and name.startswith("DATABASE "))
            continue
        if keep and line.startswith("\\"):
            keep = False  # \connect: the next section is the database's contents
        elif keep and line and not line.startswith("--") and not line.startswith("CREATE DATABASE "):
            out.append(line)
    return statements("\n".join(out))


def _run(cmd: list[str], cp: ConnParams, what: str) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=cp.env(), timeout=300)
    except FileNotFoundError:
        raise BackupFailedError(f"{cmd[0]} is not installed or not on PATH",
                                "install the PostgreSQL client (15 or newer)") from None
    if p.returncode != 0:
        last = redact.scrub((p.stderr.strip().splitlines() or ["no message"])[-1])
        raise BackupFailedError(f"{what} failed ({last}); nothing was catalogued", "check the database and retry")
    return p.stdout


def capture(cp: ConnParams) -> dict[str, Any]:
    """The roles and the database-level properties of ``cp``'s database, as SQL statements."""
    dbname = cp.params.get("dbname", "")
    roles = _run(["pg_dumpall", "--globals-only", "--no-role-passwords", "--no-tablespaces",
                  "--quote-all-identifiers", "--no-password", "--dbname", cp.conninfo()], cp, "pg_dumpall --globals-only")
    props = _run(["pg_dump", "--create", "--schema-only", "--exclude-schema=*", "--quote-all-identifiers",
                  "--no-password", "--dbname", cp.conninfo()], cp, "pg_dump of the database's properties")
    return {"database": dbname, "roles": statements(roles), "properties": database_statements(props)}


def _short(stmt: str) -> str:
    return redact.scrub(" ".join(stmt.split())[:120])


def _error(exc: psycopg.Error) -> str:
    return redact.scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0])


def _execute(conn: psycopg.Connection[Any], stmt: str, report: dict[str, Any]) -> bool:
    try:
        conn.execute(stmt.encode())  # bytes: pg_dump's statements are final SQL, not a query template
        return True
    except psycopg.Error as exc:
        report["not_restored"].append(f"{_short(stmt)}: {_error(exc)}")
        return False


def apply_roles(conn: psycopg.Connection[Any], roles: list[str]) -> dict[str, Any]:
    """Create the roles the server lacks (autocommit connection); see the module's policy."""
    existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    report: dict[str, Any] = {"created": [], "kept": [], "not_restored": []}
    created: set[str] = set()
    for stmt in roles:
        g = _GRANT.match(stmt)
        if g:
            role, member, options = _unquote(g.group(1)), _unquote(g.group(2)), g.group(3)
            if role in created or member in created:
                # GRANTED BY names the grantor on the source; here the grantor is whoever restores
                _execute(conn, f"GRANT {quote(role)} TO {quote(member)}{options};", report)
            continue
        m = _ROLE_STMT.match(stmt)
        if not m:
            report["not_restored"].append(f"{_short(stmt)}: not a role statement")
            continue
        name = _unquote(m.group(1))
        if stmt.startswith("CREATE ROLE "):
            if name in existing:
                report["kept"].append(name)
            elif _execute(conn, stmt, report):
                created.add(name)
                report["created"].append(name)
        elif name in created:
            _execute(conn, stmt, report)
    return report


def rename(stmt: str, source: str, target: str) -> str:
    """The statement with its first ``DATABASE "source"`` pointed at ``target``."""
    return stmt.replace(f"DATABASE {quote(source)}", f"DATABASE {quote(target)}", 1)


def apply_database(conn: psycopg.Connection[Any], captured: dict[str, Any], target: str) -> dict[str, Any]:
    """The database-level properties onto ``target`` (an autocommit connection to another database)."""
    report: dict[str, Any] = {"applied": 0, "not_restored": []}
    for stmt in captured.get("properties") or []:
        if _execute(conn, rename(stmt, captured["database"], target), report):
            report["applied"] += 1
    return report
