"""The backup catalogue in the stack's bucket: keys, manifests, listing, latest, verification records.

Layout (all under the backup bucket)::

    backups/db/database-20261125T171451Z.sql.gz                  the object (plan's file name)
    backups/db/database-20261125T171451Z.sql.gz.manifest.json    written last; no manifest = no backup
    backups/db/database-20261125T171451Z.sql.gz.verify.json      latest verification of that backup
    backups/chain/blockchain-20261125T171451Z.tar.gz (+ .manifest.json, .verify.json)
    backups/config/config-20261125T171451Z.tar.gz    (+ .manifest.json, .verify.json)
    locks/backup-db.lock                                         S3Lock objects
    verifications/2026/11/25/verify-20261125T040000Z.json        every verify run (success-rate metrics)

Restores (issue 4) resolve ``latest`` or a key through ``Catalog.latest`` / ``Catalog.get``
and trust only what a manifest describes.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from botocore.exceptions import ClientError

from recovery.aws import aws_error, error_code
from recovery.errors import AwsAccessError, InputError, IntegrityError
from recovery.transfer import read_object

MANIFEST_SUFFIX = ".manifest.json"
VERIFY_SUFFIX = ".verify.json"
MANIFEST_VERSION = 1
KINDS = ("db", "chain", "config")
BASENAME = {"db": "database", "chain": "blockchain", "config": "config"}
TS_FORMAT = "%Y%m%dT%H%M%SZ"
# `.parallel`: a db backup of several objects under `<name>/` (recovery/backups/parallel_format.py)
_NAME_RE = re.compile(r"^(database|blockchain|config)-(\d{8}T\d{6}Z)\.((sql|tar|dump)\.(gz|zst)|parallel)$")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(s: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise ValueError(s)


def object_name(kind: str, when: datetime, fmt: str) -> str:
    """The plan's file name: database-YYYYMMDDTHHMMSSZ.sql.gz, blockchain-....tar.gz, ..."""
    if fmt == "parallel":
        return f"{BASENAME[kind]}-{when.strftime(TS_FORMAT)}.parallel"
    inner = "sql" if kind == "db" else "tar"
    ext = {"gzip": "gz", "zstd": "zst"}[fmt]
    return f"{BASENAME[kind]}-{when.strftime(TS_FORMAT)}.{inner}.{ext}"


def parse_name(name: str) -> tuple[str, datetime] | None:
    """(kind, time) from a backup file name, or None if it is not one of ours."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    kind = {v: k for k, v in BASENAME.items()}[m.group(1)]
    return kind, datetime.strptime(m.group(2), TS_FORMAT).replace(tzinfo=timezone.utc)


def prefix(kind: str) -> str:
    return f"backups/{kind}/"


def with_dirs(keys: Iterable[str]) -> set[str]:
    """The keys and the "directory" of each key one level below a kind's prefix: a parallel backup's
    object is the prefix its parts share (backups/db/database-...parallel/pre-data.sql.zst)."""
    out = set(keys)
    out.update(k.rsplit("/", 1)[0] for k in list(out) if k.count("/") > 2)
    return out


@dataclass
class Manifest:
    kind: str
    key: str
    bucket: str
    format: str  # gzip | zstd
    content: str  # "sql" (plain pg_dump) | "tar"
    source: str  # what was backed up: db host/name, data dir, config paths
    stored_bytes: int
    raw_bytes: int
    sha256: str
    kms_key_id: str
    started_at: str
    ended_at: str
    tool_version: str
    stack: str
    compression_level: int | None = None
    compressor: str | None = None  # the library that wrote it: isal, zlib (both plain gzip) or zstd
    duration_seconds: float = 0.0
    version_id: str | None = None
    pg_server_version: str | None = None
    db_rows: int | None = None
    db_max_height: int | None = None
    # Roles and database-level properties as SQL statements (recovery/pg_globals.py); None before 0.x
    db_globals: dict[str, Any] | None = None
    file_count: int | None = None
    file_bytes: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION
    # Set when read from a replica: the bucket the backup was originally written to.
    source_bucket: str | None = None
    # The parallel format's objects (recovery/backups/parallel_format.py); None for single-object backups.
    parts: list[dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def time(self) -> datetime:
        return parse_iso(self.ended_at)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Entry:
    """A catalogued backup: its manifest and its latest verification (None if never verified)."""

    manifest: Manifest
    verification: dict[str, Any] | None = None

    @property
    def verified(self) -> bool | None:
        return None if self.verification is None else bool(self.verification.get("ok"))


class Catalog:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    # -- reading
    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = read_object(self.s3, self.bucket, key)
        except ClientError as exc:
            raise aws_error(exc, f"reading s3://{self.bucket}/{key}", bucket=self.bucket) from None
        if body is None:
            return None
        try:
            d = json.loads(body)
        except ValueError:
            raise IntegrityError(f"s3://{self.bucket}/{key} is not valid JSON", "inspect or delete that object") from None
        return d if isinstance(d, dict) else None

    def _here(self, m: Manifest) -> Manifest:
        """A manifest found in this bucket describes the object in this bucket.

        Replication copies object and manifest together, so in the DR bucket the manifest
        still names the primary bucket it was written for. Reading from there would need the
        primary region, which a DR restore cannot count on; the replica (same key, same
        version ID, same bytes) is the object to read.
        """
        if m.bucket != self.bucket:
            m.source_bucket = m.bucket
            m.bucket = self.bucket
        return m

    def _keys(self, pfx: str) -> Iterator[str]:
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=pfx):
                for o in page.get("Contents", []):
                    yield str(o["Key"])
        except ClientError as exc:
            raise aws_error(exc, f"listing s3://{self.bucket}/{pfx}", bucket=self.bucket) from None

    def recent(self, kind: str, since: datetime) -> list[Entry]:
        """Catalogued backups of `kind` that ended at or after `since`, plus the newest good one before
        it (for the age), oldest first. Reads only the manifests it needs, newest first."""
        keys = with_dirs(self._keys(prefix(kind)))
        manifests = []
        for mkey in keys:
            if not mkey.endswith(MANIFEST_SUFFIX):
                continue
            obj = mkey[: -len(MANIFEST_SUFFIX)]
            parsed = parse_name(obj.rsplit("/", 1)[-1])
            if parsed is None or obj not in keys:
                continue  # not one of ours, or the object expired: not a backup any more
            manifests.append((parsed[1], obj))
        out: list[Entry] = []
        found_good_before = False
        slack = timedelta(days=1)  # the name carries the start time; a backup may end later
        for started, obj in sorted(manifests, reverse=True):
            if started < since - slack and found_good_before:
                break
            d = self._get_json(obj + MANIFEST_SUFFIX)
            if d is None:
                continue
            ver = self._get_json(obj + VERIFY_SUFFIX) if obj + VERIFY_SUFFIX in keys else None
            e = Entry(self._here(Manifest.from_json(d)), ver)
            if e.manifest.time < since:
                if found_good_before:
                    continue
                if e.verified is not False:
                    found_good_before = True
            out.append(e)
        out.sort(key=lambda e: (e.manifest.ended_at, e.manifest.key))
        return out

    def entries(self, kind: str | None = None, *, with_verification: bool = True) -> list[Entry]:
        """Every backup with a manifest, oldest first. Objects without a manifest are ignored."""
        kinds = [kind] if kind else list(KINDS)
        out: list[Entry] = []
        for k in kinds:
            keys = with_dirs(self._keys(prefix(k)))
            for mkey in sorted(x for x in keys if x.endswith(MANIFEST_SUFFIX)):
                obj_key = mkey[: -len(MANIFEST_SUFFIX)]
                if obj_key not in keys:
                    continue  # manifest of a deleted/expired object: not a backup any more
                d = self._get_json(mkey)
                if d is None:
                    continue
                ver = self._get_json(obj_key + VERIFY_SUFFIX) if with_verification and obj_key + VERIFY_SUFFIX in keys else None
                out.append(Entry(self._here(Manifest.from_json(d)), ver))
        out.sort(key=lambda e: (e.manifest.ended_at, e.manifest.key))
        return out

    def latest(self, kind: str) -> Entry | None:
        entries = self.entries(kind)
        return entries[-1] if entries else None

    def get(self, key_or_name: str) -> Entry:
        """A backup by key or by file name; InputError if it is not a catalogued backup."""
        key = key_or_name
        parsed = parse_name(key.rsplit("/", 1)[-1])
        if not parsed:
            raise InputError(f"'{key_or_name}' is not a backup name", "use `recovery list` to see them")
        if "/" not in key:
            key = prefix(parsed[0]) + key
        elif key != prefix(parsed[0]) + key.rsplit("/", 1)[-1]:
            # only keys the catalogue writes: anything else would read outside backups/ (which no
            # reading role may) and fail as a denial instead of as the typo it is
            raise InputError(f"'{key_or_name}' is not a backup key", f"use {prefix(parsed[0])}{key.rsplit('/', 1)[-1]} "
                             "or the file name alone; `recovery list` shows them")
        d = self._get_json(key + MANIFEST_SUFFIX)
        if d is None:
            raise InputError(f"no catalogued backup {key} in s3://{self.bucket}",
                             "an object without a manifest is not a backup; use `recovery list`")
        return Entry(self._here(Manifest.from_json(d)), self._get_json(key + VERIFY_SUFFIX))

    # -- writing
    def new_key(self, kind: str, fmt: str, when: datetime | None = None) -> str:
        """A fresh object key; never one that already holds an object or manifest."""
        t = (when or utc_now()).replace(microsecond=0)
        existing = with_dirs(self._keys(prefix(kind) + BASENAME[kind] + "-" + t.strftime("%Y%m%d")))
        while True:
            key = prefix(kind) + object_name(kind, t, fmt)
            if key not in existing and key + MANIFEST_SUFFIX not in existing:
                return key
            t += timedelta(seconds=1)

    def put_manifest(self, m: Manifest) -> None:
        """Catalogue `m`, once: IfNoneMatch='*'. A 412 is either our own write (its reply was lost and
        botocore's retry found it: the manifest there is `m`, so this is success) or a conflict."""
        body = json.dumps(m.to_json(), indent=2, sort_keys=True).encode()
        key = m.key + MANIFEST_SUFFIX
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                               ContentType="application/json", IfNoneMatch="*",
                               ServerSideEncryption="aws:kms", SSEKMSKeyId=m.kms_key_id)
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise aws_error(exc, f"writing manifest for {m.key}", bucket=self.bucket) from None
            if self.manifest_written(m) is not True:
                raise IntegrityError(f"another manifest already exists for {m.key}",
                                     "inspect it with `recovery list`; nothing was overwritten") from None

    def manifest_written(self, m: Manifest) -> bool | None:
        """True when the manifest in the bucket is `m`, False when there is none, None when it cannot be
        told (unreadable, or a different one): the caller then must not treat the backup as absent."""
        try:
            d = self._get_json(m.key + MANIFEST_SUFFIX)
        except Exception:  # noqa: BLE001 - unknown is an answer here
            return None
        if d is None:
            return False
        return True if d == json.loads(json.dumps(m.to_json())) else None

    def put_verification(self, key: str, record: dict[str, Any], kms_key_id: str) -> None:
        body = json.dumps(record, indent=2, sort_keys=True).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key + VERIFY_SUFFIX, Body=body,
                               ContentType="application/json", ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key_id)
        except ClientError as exc:
            raise aws_error(exc, f"recording verification of {key}", bucket=self.bucket) from None

    def put_run_record(self, when: datetime, record: dict[str, Any], kms_key_id: str) -> str:
        key = f"verifications/{when:%Y/%m/%d}/verify-{when.strftime(TS_FORMAT)}.json"
        body = json.dumps(record, indent=2, sort_keys=True).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                               ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key_id)
        except ClientError as exc:
            raise aws_error(exc, "recording the verification run", bucket=self.bucket) from None
        return key

    def verification_runs(self) -> list[dict[str, Any]]:
        """Every recorded verify run, oldest first (for metrics: success rate)."""
        return [d for k in sorted(self._keys("verifications/")) if (d := self._get_json(k)) is not None]


def check_bucket(s3: Any, bucket: str) -> None:
    """The stack's backup bucket answers, before a command reads or writes the catalog in it."""
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - mapped to a one-line error (aws_error)
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise AwsAccessError(f"bucket '{bucket}' does not exist",
                                 "check the stack's backup_bucket_name output, the region and AWS_ENDPOINT_URL") from None
        raise aws_error(exc, f"checking bucket {bucket}", bucket=bucket) from None
