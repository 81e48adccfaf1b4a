"""What restores kept, and pruning it: `recovery quarantine list|prune`.

A restore never destroys what it replaces; it keeps it under a name made from its run's start time:

- ``restore db``: the replaced database, renamed ``<db>_quarantine_<yyyymmddThhmmssz>`` on the
  same server (recovery/runbooks/restore_db.py ``quarantine_name``, the target cut to 30 bytes);
- ``restore chain``: the replaced data directory, renamed ``<data dir>.quarantine-<YYYYMMDDTHHMMSSZ>``
  beside it (recovery/runbooks/restore_chain.py ``run_paths``);
- ``restore chain --archive-current``: a tar.gz of it, ``s3://<bucket>/quarantine/chain/corrupted-
  blockchain-<YYYYMMDDTHHMMSSZ>.tar.gz`` (restore_chain.py ``archive_key``).

The rule is that nothing the user kept is ever removed by a command that did not create it. The
quarantine was created by a restore, so pruning it is allowed, but only for a name the restore's own
function gives back exactly from the stamp it carries: ``mydb_quarantine_keep``, a name with a stamp
that is no date, or a file under quarantine/ of another shape are listed by nobody and never deleted.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psycopg
from psycopg import sql

from recovery import postgres, redact
from recovery.catalog import TS_FORMAT
from recovery.errors import DatabaseError, RecoveryError, one_line
from recovery.runbooks.restore_chain import archive_key, run_paths
from recovery.runbooks.restore_db import quarantine_name

S3_PREFIX = "quarantine/"
_STAMP = r"\d{8}T\d{6}Z"
_DB_RE = re.compile(r"^(?P<db>.+)_quarantine_(?P<stamp>\d{8}t\d{6}z)$")
_DIR_RE = re.compile(rf"^(?P<name>.+)\.quarantine-(?P<stamp>{_STAMP})$")
_KEY_RE = re.compile(rf"^quarantine/chain/corrupted-blockchain-(?P<stamp>{_STAMP})\.tar\.gz$")


def _stamp_time(stamp: str) -> datetime | None:
    try:
        return datetime.strptime(stamp.upper(), TS_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _run_id(stamp: str) -> str:
    """A run id with this start stamp, to ask the restores' own naming functions what they would make."""
    return f"{stamp.upper()}-000000"


def parse_db(name: str) -> datetime | None:
    """The run start a `restore db` quarantine name carries, or None when the name is not exactly one."""
    m = _DB_RE.match(name)
    if not m or (when := _stamp_time(m.group("stamp"))) is None:
        return None
    return when if quarantine_name(m.group("db"), _run_id(m.group("stamp"))) == name else None


def parse_dir(path: Path, data_dir: Path) -> datetime | None:
    """The run start of a `restore chain` quarantined data dir beside `data_dir`, or None."""
    m = _DIR_RE.match(path.name)
    if not m or (when := _stamp_time(m.group("stamp"))) is None:
        return None
    return when if run_paths(data_dir, _run_id(m.group("stamp")))[2] == path else None


def parse_key(key: str) -> datetime | None:
    """The run start of a `restore chain --archive-current` archive key, or None."""
    m = _KEY_RE.match(key)
    if not m or (when := _stamp_time(m.group("stamp"))) is None:
        return None
    return when if archive_key(_run_id(m.group("stamp"))) == key else None


@dataclass
class Item:
    kind: str  # db | chain-dir | s3
    name: str  # database name, directory path or object key
    where: str  # the server, the parent directory or the bucket
    kept_at: datetime  # the start of the restore run that kept it
    size_bytes: int | None  # None when it cannot be measured (no CONNECT on that database)

    def age_s(self, now: datetime) -> float:
        return max(0.0, (now - self.kept_at).total_seconds())

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "where": self.where,
                "kept_at": self.kept_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "age_s": round(self.age_s(now)),
                "size_bytes": self.size_bytes}


# ------------------------------------------------------------------------------------- finding


def databases(cp: postgres.ConnParams) -> list[Item]:
    """Quarantined databases on the server `cp` points at (any database of it: restores may target any)."""
    admin = postgres.ConnParams({**cp.params, "dbname": "postgres"}, cp.password)
    server = admin.target.rsplit("/", 1)[0]
    with postgres.connect(admin, autocommit=True) as c:
        # pg_database_size needs CONNECT on the database; without it the size is unknown, not an error
        rows = c.execute("SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT') "
                         "THEN pg_database_size(oid) END FROM pg_database "
                         "WHERE NOT datistemplate AND strpos(datname, '_quarantine_') > 0").fetchall()
    return [Item("db", str(name), server, when, None if size is None else int(size))
            for name, size in rows if (when := parse_db(str(name))) is not None]


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):  # os.walk does not follow symlinked directories
        for n in files:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                continue
    return total


def chain_dirs(data_dir: Path) -> list[Item]:
    """Quarantined data directories beside `data_dir` (real directories only, never a symlink's target)."""
    parent = data_dir.parent
    if not parent.is_dir():
        return []
    out = []
    for p in sorted(parent.glob(f"{data_dir.name}.quarantine-*")):
        when = parse_dir(p, data_dir)
        if when is not None and p.is_dir() and not p.is_symlink():
            out.append(Item("chain-dir", str(p), str(parent), when, _tree_bytes(p)))
    return out


def objects(s3: Any, bucket: str) -> list[Item]:
    from botocore.exceptions import ClientError

    from recovery.aws import aws_error

    out = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=S3_PREFIX):
            for o in page.get("Contents", []):
                if (when := parse_key(str(o["Key"]))) is not None:
                    out.append(Item("s3", str(o["Key"]), f"s3://{bucket}", when, int(o["Size"])))
    except ClientError as exc:
        raise aws_error(exc, f"listing s3://{bucket}/{S3_PREFIX}", bucket=bucket) from None
    return out


@dataclass
class Found:
    items: list[Item]
    notes: list[str]  # what could not be looked at, said instead of silently skipped


def find(outputs: Any, *, s3: Any, cp: postgres.ConnParams, data_dir: str | None) -> Found:
    notes = []
    items = databases(cp)
    if data_dir:
        items += chain_dirs(Path(os.path.abspath(data_dir)))
    else:
        notes.append("chain data directories not looked at: pass --data-dir (the node's data directory)")
    items += objects(s3, outputs.backup_bucket_name)
    items.sort(key=lambda i: (i.kept_at, i.kind, i.name))
    return Found(items, notes)


# ------------------------------------------------------------------------------------- pruning


def _drop_db(cp: postgres.ConnParams, name: str) -> None:
    admin = postgres.ConnParams({**cp.params, "dbname": "postgres"}, cp.password)
    try:
        with postgres.connect(admin, autocommit=True) as c:
            # no WITH (FORCE): a session on a quarantined database is someone inspecting it; it stays
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        first = redact.scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise DatabaseError(f"dropping {name} failed: {first}", "it stays; retry when nobody uses it") from None


def _delete_object(s3: Any, bucket: str, key: str) -> None:
    from botocore.exceptions import ClientError

    from recovery.aws import aws_error

    try:
        # In the versioned vault this leaves a delete marker; the bytes go with the noncurrent versions
        # by the bucket's lifecycle (object lock, when set, still holds them until their retention ends).
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise aws_error(exc, f"deleting s3://{bucket}/{key}", bucket=bucket) from None


def prune(items: list[Item], *, s3: Any, bucket: str, cp: postgres.ConnParams, data_dir: str | None,
          on_item: Callable[[Item, str | None], None]) -> list[tuple[Item, RecoveryError]]:
    """Delete each item, parsing its name again first (never trust a list across a prompt); returns
    the failures, each item's outcome also told to `on_item` (None: deleted)."""
    failed: list[tuple[Item, RecoveryError]] = []
    for item in items:
        try:
            if item.kind == "db" and parse_db(item.name) is not None:
                _drop_db(cp, item.name)
            elif (item.kind == "chain-dir" and data_dir
                  and parse_dir(Path(item.name), Path(os.path.abspath(data_dir))) is not None
                  and not Path(item.name).is_symlink()):
                shutil.rmtree(item.name)
            elif item.kind == "s3" and parse_key(item.name) is not None:
                _delete_object(s3, bucket, item.name)
            else:
                raise RecoveryError(f"{item.name} is not a name a restore makes", "left as it is")
        except RecoveryError as exc:
            failed.append((item, exc))
            on_item(item, exc.line())
            continue
        except OSError as exc:
            err = RecoveryError(f"removing {item.name} failed: {one_line(exc)}", "it stays; check its permissions")
            failed.append((item, err))
            on_item(item, err.line())
            continue
        on_item(item, None)
    return failed
