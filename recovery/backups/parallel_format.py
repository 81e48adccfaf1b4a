"""The parallel database backup format (`backup db --format parallel`, issue 17): what it is made of.

One catalogued backup, one manifest, several S3 objects under one prefix::

    backups/db/database-20261204T180000Z.parallel/pre-data.sql.zst    pg_dump --section=pre-data
    backups/db/database-20261204T180000Z.parallel/data-0001.copy.zst  COPY ... TO STDOUT of one table
    ...                                                               (or one height range of blockchain)
    backups/db/database-20261204T180000Z.parallel/data-other.sql.zst  pg_dump --section=data of what is not
                                                                      COPY'd above: sequence values, large objects
    backups/db/database-20261204T180000Z.parallel/post-data.sql.zst   pg_dump --section=post-data
    backups/db/database-20261204T180000Z.parallel.manifest.json       written last, as for every backup

Every part was read inside the one snapshot the backup exported, so together they are one
consistent state. Each part is one zstd frame (with its content checksum); the manifest lists each
with its key, version id, sha256, stored and raw sizes and, for a COPY part, its table, columns and
row count. A COPY part is the plain text COPY format: one line per row (newlines inside values are
escaped), so its row count is its line count, which `verify` checks without a database.

By hand, without this tool: run the pre-data part through psql, pipe each data part into
``psql -c "COPY <table> (<columns>) FROM STDIN"`` (the manifest's ``copy`` field), the data-other
and post-data parts through psql, e.g. ``zstd -dc pre-data.sql.zst | psql -v ON_ERROR_STOP=1 -d DB``.

The manifest's ``sha256`` is the digest of its parts' list (name, sha256, stored size), so that
`list` and `describe` show one fingerprint per backup as for the single-object formats.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from recovery.aws import aws_error
from recovery.catalog import Manifest
from recovery.errors import InputError, IntegrityError

FORMAT = "parallel"
CONTENT = "sql+copy"
SECTIONS = ("pre-data", "data", "post-data")
MIN_JOBS, MAX_JOBS, DEFAULT_JOBS = 1, 16, 2


def _key_id(arn_or_id: str | None) -> str:
    return (arn_or_id or "").rsplit("/", 1)[-1]


def is_parallel(m: Manifest) -> bool:
    return m.format == FORMAT


def check_jobs(jobs: int) -> int:
    if not MIN_JOBS <= jobs <= MAX_JOBS:
        raise InputError(f"--jobs {jobs} is out of range",
                         f"use --jobs {MIN_JOBS}..{MAX_JOBS} (default {DEFAULT_JOBS}; about one per CPU core of the server)")
    return jobs


def parts_digest(parts: list[dict[str, Any]]) -> str:
    doc = [[p["name"], p["sha256"], p["stored_bytes"]] for p in parts]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


def parts_of(m: Manifest) -> list[dict[str, Any]]:
    parts = m.parts or []
    if not parts:
        raise IntegrityError(f"{m.name}: the manifest lists no parts", "the backup is unusable; take a new one")
    if parts_digest(parts) != m.sha256:
        raise IntegrityError(f"{m.name}: the manifest's parts do not match its sha256",
                             "the manifest was altered; restore another backup with --backup KEY")
    for section in ("pre-data", "post-data"):
        if not any(p["section"] == section for p in parts):
            raise IntegrityError(f"{m.name}: the manifest lists no {section} part", "take a new backup")
    return parts


def object_keys(m: Manifest) -> list[str]:
    """The S3 objects a backup is made of (one for the single-object formats)."""
    return [p["key"] for p in m.parts or []] if is_parallel(m) else [m.key]


def part_manifest(m: Manifest, part: dict[str, Any]) -> Manifest:
    """A part seen as a single-object zstd backup, so that BackupStream reads and checks it."""
    return replace(m, key=part["key"], version_id=part.get("version_id"), format="zstd", sha256=part["sha256"],
                   stored_bytes=part["stored_bytes"], raw_bytes=part["raw_bytes"], parts=None)


def check_parts_present(s3: Any, m: Manifest) -> dict[str, Any]:
    """The cheap pre-check: every part is there, at its version, with its size. No data is read."""
    t0 = time.monotonic()
    parts = parts_of(m)
    for p in parts:
        try:
            head = s3.head_object(Bucket=m.bucket, Key=p["key"], **({"VersionId": p["version_id"]} if p.get("version_id") else {}))
        except ClientError as exc:
            raise aws_error(exc, f"reading part {p['name']} of {m.name}", bucket=m.bucket) from None
        if int(head.get("ContentLength", -1)) != p["stored_bytes"]:
            raise IntegrityError(f"part {p['name']} of {m.name} holds {head.get('ContentLength')} bytes, "
                                 f"the manifest says {p['stored_bytes']}", "restore another backup with --backup KEY")
    return {"key": m.key, "format": m.format, "sha256": m.sha256, "stored_bytes": m.stored_bytes,
            "raw_bytes": m.raw_bytes, "parts": len(parts), "backup_time": m.ended_at,
            "verify_s": round(time.monotonic() - t0, 3),
            "note": "parts present at their versions and sizes; sha256 and rows are checked while loading"}


def scan_manifest(m: Manifest, part: dict[str, Any]) -> Manifest:
    """A part as verify.scan_backup reads it: a zstd object whose structure is pg_dump's completion
    marker (content "sql") or, for a COPY part, as many lines as the part's rows (content "copy")."""
    pm = part_manifest(m, part)
    pm.content, pm.db_rows = ("copy", part.get("rows")) if part.get("table") else ("sql", None)
    return pm


def summarize(m: Manifest, scanned: list[tuple[dict[str, Any], Any]]) -> dict[str, Any]:
    """The parts' scans as one backup's: the digest of the parts as read (the manifest's sha256 when
    every part matched its own), the first decompression error and the first bad structure, each
    naming its part, and the GetObject headers of the first part not encrypted as the first one."""
    read = [{"name": p["name"], "sha256": r.sha256, "stored_bytes": r.stored_bytes} for p, r in scanned]
    bad_sha = next((p["name"] for p, r in scanned if (r.sha256, r.stored_bytes) != (p["sha256"], p["stored_bytes"])), None)
    error = next((f"part {p['name']}: {r.error}" for p, r in scanned if r.error), None)
    broken = next((f"part {p['name']}: {r.structure}" for p, r in scanned if not r.structure_ok), None)
    if bad_sha and not broken:
        broken = f"part {bad_sha}: its sha256 or size differs from the manifest's"
    responses = [r.response for _, r in scanned]
    first = responses[0] if responses else {}
    odd = next((x for x in responses if (x.get("ServerSideEncryption"), _key_id(x.get("SSEKMSKeyId")))
                != (first.get("ServerSideEncryption"), _key_id(first.get("SSEKMSKeyId")))), first)
    return {"sha256": parts_digest(read), "stored_bytes": sum(r.stored_bytes for _, r in scanned),
            "raw_bytes": sum(r.raw_bytes for _, r in scanned), "error": error,
            "structure": broken or (f"{len(scanned)} parts: pre-data, data-other and post-data end with pg_dump's "
                                    "completion marker; every COPY part holds its manifest's rows"),
            "structure_ok": broken is None and error is None, "response": odd}
