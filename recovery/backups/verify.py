"""Daily verification of the latest backup of each kind, and of the bucket that holds them.

For each kind (db, chain; config when one exists) the latest catalogued backup is streamed once:
its sha256 is compared with the manifest, it is decompressed fully (the plan's `gunzip -t`), and
its structure is read (a plain SQL dump must end with pg_dump's completion marker; a tar must list
the manifest's file count, as `tar -tzf` would). Its SSE-KMS key and its age against the schedule
are checked. Then the bucket's versioning, default encryption and lifecycle, and replication
where configured. Every run is recorded in the bucket (per backup and per run) for metrics.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from botocore.exceptions import ClientError

from recovery import __version__
from recovery.archive import CHAIN_DB, check_sqlite
from recovery.aws import aws_error, client, error_code
from recovery.catalog import KINDS, Catalog, Entry, Manifest, check_bucket, iso, utc_now
from recovery.backups.age import age_limit_seconds, within_limit
from recovery.backups.parallel_format import object_keys, parts_of, scan_manifest, summarize
from recovery.errors import IntegrityError, RecoveryError
from recovery.stack import StackOutputs
from recovery.stream import FeedReader, decompressor
from recovery.transfer import iter_object

log = logging.getLogger(__name__)

PG_DUMP_END = b"-- PostgreSQL database dump complete"


@dataclass
class Check:
    scope: str  # db | chain | config | bucket
    name: str
    ok: bool | None  # None = skipped (not applicable)
    detail: str

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "-"}[self.ok]


@dataclass
class VerifyReport:
    stack: str
    bucket: str
    started_at: str
    ended_at: str = ""
    checks: list[Check] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)  # kind -> key verified
    record_key: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "bucket": self.bucket, "ok": self.ok, "started_at": self.started_at,
                "ended_at": self.ended_at, "backups": self.backups, "record_key": self.record_key,
                "tool_version": __version__, "checks": [asdict(c) for c in self.checks]}


def default_max_age_minutes(outputs: StackOutputs, kind: str) -> float | None:
    """The schedule's limit (recovery/backups/age.py, the rule `status` applies too), in minutes."""
    limit = age_limit_seconds(outputs, kind)
    return limit / 60 if limit is not None else None


def _key_id(arn_or_id: str | None) -> str:
    return (arn_or_id or "").rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------ one backup's bytes


@dataclass
class StreamResult:
    sha256: str
    stored_bytes: int
    raw_bytes: int
    error: str | None  # decompression or structure error
    structure: str  # what the structure check saw
    structure_ok: bool
    response: dict[str, Any]


def scan_backup(s3: Any, m: Manifest, *, sink: Callable[[bytes], None] | None = None,
                part_sink: Callable[[dict[str, Any]], Callable[[bytes], None] | None] | None = None) -> StreamResult:
    """Stream the object once: hash the stored bytes, decompress, check structure.

    `sink` receives every stored chunk (offsite sync writes the file from the same stream); for a
    parallel backup, each part is scanned so, `part_sink(part)` giving that part's sink.
    """
    if m.format == "parallel":  # recovery/backups/parallel_format.py
        return StreamResult(**summarize(m, [(p, scan_backup(s3, scan_manifest(m, p), sink=part_sink(p) if part_sink else None))
                                            for p in parts_of(m)]))
    resp, chunks = iter_object(s3, m.bucket, m.key)
    h = hashlib.sha256()
    counts = {"stored": 0, "raw": 0}
    feed, close = decompressor(m.format)
    state: dict[str, Any] = {"error": None, "tail": b"", "lines": 0}

    def raw_chunks() -> Iterator[bytes]:
        for chunk in chunks:
            h.update(chunk)
            counts["stored"] += len(chunk)
            if sink:
                sink(chunk)
            if state["error"]:
                continue
            try:
                out = feed(chunk)
            except IntegrityError as exc:
                state["error"] = exc.problem
                continue
            counts["raw"] += len(out)
            if out:
                state["tail"] = (state["tail"] + out)[-256:]
                state["lines"] += out.count(b"\n")
                yield out
        if not state["error"]:
            try:
                close()
            except IntegrityError as exc:
                state["error"] = exc.problem

    structure, structure_ok = "", False
    gen = raw_chunks()
    if m.content == "tar":
        files = 0
        chain: str | None = None  # what the chain.db check found; chain backups only
        try:
            with tarfile.open(fileobj=FeedReader(gen), mode="r|") as tar, \
                    tempfile.TemporaryDirectory(prefix="recovery-verify-") as tmp:
                root = None
                for member in tar:
                    root = member.name if root is None else root
                    if member.isfile():
                        files += 1
                        if m.kind == "chain" and member.name == f"{root}/{CHAIN_DB}":
                            chain = _check_chain_db(tar, member, Path(tmp))
            structure_ok = m.file_count is None or files == m.file_count
            structure = f"tar lists {files} file(s)" + ("" if structure_ok else f", manifest says {m.file_count}")
            if m.kind == "chain":
                # a chain backup restores a node only if its chain.db is there and sound
                chain = chain or f"no {CHAIN_DB} at the top of the archive"
                structure_ok = structure_ok and chain == f"{CHAIN_DB} passes integrity_check"
                structure += f"; {chain}"
        except (tarfile.TarError, EOFError, OSError) as exc:
            structure = f"tar is unreadable ({exc})"
        for _ in gen:  # drain: hash everything, detect truncation after the tar end marker
            pass
    elif m.content == "copy":  # a COPY part of a parallel backup (parallel_format.py): a line per row
        for _ in gen:
            pass
        lines, tail = state["lines"], state["tail"]
        structure_ok = lines == m.db_rows and (not tail or tail.endswith(b"\n"))
        structure = f"COPY stream of {lines} complete row(s)" + ("" if structure_ok else f", manifest says {m.db_rows}")
    else:
        for _ in gen:
            pass
        structure_ok = PG_DUMP_END in state["tail"]
        structure = "plain SQL dump ends with pg_dump's completion marker" if structure_ok else \
            "the SQL dump does not end with pg_dump's completion marker"
    return StreamResult(h.hexdigest(), counts["stored"], counts["raw"], state["error"], structure,
                        structure_ok and not state["error"], dict(resp))


def _check_chain_db(tar: tarfile.TarFile, member: tarfile.TarInfo, tmp: Path) -> str:
    """Copy the archive's chain.db out of the stream and run the restore's own integrity check on it."""
    f = tar.extractfile(member)
    if f is None:
        return f"{CHAIN_DB} is not a regular file"
    dest = tmp / CHAIN_DB
    with open(dest, "wb") as out:
        shutil.copyfileobj(f, out, 1024 * 1024)
    try:
        check_sqlite(dest)
    except RecoveryError as exc:
        return exc.problem
    finally:
        dest.unlink()
    return f"{CHAIN_DB} passes integrity_check"


# ------------------------------------------------------------------------------------ the runbook


def _check_backup(s3: Any, outputs: StackOutputs, kind: str, e: Entry, max_age: float | None,
                  now: datetime) -> list[Check]:
    m = e.manifest
    checks: list[Check] = []
    try:
        r = scan_backup(s3, m)
    except RecoveryError as exc:
        return [Check(kind, "object", False, f"{m.name}: {exc.problem}")]
    if r.sha256 == m.sha256 and r.stored_bytes == m.stored_bytes:
        checks.append(Check(kind, "sha256", True, f"{m.name}: sha256 {r.sha256[:12]} matches the manifest ({r.stored_bytes} bytes)"))
    else:
        checks.append(Check(kind, "sha256", False, f"{m.name}: sha256 {r.sha256[:12]} ({r.stored_bytes} bytes) "
                                                   f"!= manifest {m.sha256[:12]} ({m.stored_bytes} bytes)"))
    tool = "gunzip -t" if m.format == "gzip" else "zstd -t" + (f", {len(m.parts or [])} parts" if m.parts else "")
    if r.error:
        checks.append(Check(kind, "decompress", False, f"{m.name}: {r.error}"))
    else:
        checks.append(Check(kind, "decompress", True, f"{m.name}: decompresses fully ({tool}): {r.raw_bytes} bytes"))
    checks.append(Check(kind, "structure", r.structure_ok and not r.error, f"{m.name}: {r.structure}"))
    sse, kid = r.response.get("ServerSideEncryption"), r.response.get("SSEKMSKeyId")
    if sse == "aws:kms" and _key_id(kid) == _key_id(outputs.backup_kms_key_arn):
        checks.append(Check(kind, "encryption", True, f"{m.name}: SSE-KMS with the stack's key"))
    else:
        checks.append(Check(kind, "encryption", False, f"{m.name}: encryption is {sse or 'none'} with key "
                                                       f"{kid or 'none'}, expected aws:kms with {outputs.backup_kms_key_arn}"))
    checks.append(age_check(kind, m, max_age, now))
    checks.extend(_check_replication(s3, outputs, kind, m, r.response))
    return checks


def age_check(kind: str, m: Manifest, max_age: float | None, now: datetime) -> Check:
    """The backup's age against `max_age` minutes (the schedule's limit unless --max-age gave one)."""
    age_min = (now - m.time).total_seconds() / 60
    if max_age is None:
        return Check(kind, "age", None, f"{m.name}: {age_min:.0f} min old (no schedule for {kind})")
    return Check(kind, "age", within_limit(age_min * 60, max_age * 60),
                 f"{m.name}: {age_min:.0f} min old, limit {max_age:.0f} min")


def _check_replication(s3: Any, outputs: StackOutputs, kind: str, m: Manifest, resp: dict[str, Any]) -> list[Check]:
    try:
        cfg = s3.get_bucket_replication(Bucket=outputs.backup_bucket_name)["ReplicationConfiguration"]
    except ClientError as exc:
        if error_code(exc) == "ReplicationConfigurationNotFoundError":
            return []
        return [Check(kind, "replication", False, f"cannot read replication configuration ({error_code(exc)})")]
    dests = [r["Destination"]["Bucket"].split(":::")[-1] for r in cfg.get("Rules", [])
             if r.get("Status") == "Enabled" and "Destination" in r]
    status = resp.get("ReplicationStatus")
    if status in ("COMPLETED", "REPLICA"):
        return [Check(kind, "replication", True, f"{m.name}: replication {status}")]
    if status in ("PENDING", "FAILED"):
        return [Check(kind, "replication", False, f"{m.name}: replication {status} to {', '.join(dests)}")]
    # No ReplicationStatus reported (the emulator never sets one): look in the destination.
    missing = []
    for d in dests:
        try:
            for key in object_keys(m):  # every part of a parallel backup
                s3.head_object(Bucket=d, Key=key)
        except ClientError:
            missing.append(d)
    if not dests:
        return [Check(kind, "replication", False, "replication is configured but no rule is enabled")]
    if missing:
        return [Check(kind, "replication", False, f"{m.name}: not found in DR bucket {', '.join(missing)}")]
    return [Check(kind, "replication", True, f"{m.name}: present in DR bucket {', '.join(dests)}")]


def _check_bucket(s3: Any, outputs: StackOutputs) -> list[Check]:
    b = outputs.backup_bucket_name
    checks: list[Check] = []
    try:
        v = s3.get_bucket_versioning(Bucket=b).get("Status")
        checks.append(Check("bucket", "versioning", v == "Enabled", f"versioning is {v or 'off'}"))
    except ClientError as exc:
        checks.append(Check("bucket", "versioning", False, f"cannot read versioning ({error_code(exc)})"))
    try:
        rules = s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"]
        d = rules[0]["ApplyServerSideEncryptionByDefault"] if rules else {}
        ok = d.get("SSEAlgorithm") == "aws:kms" and _key_id(d.get("KMSMasterKeyID")) == _key_id(outputs.backup_kms_key_arn)
        checks.append(Check("bucket", "encryption", ok, f"default encryption {d.get('SSEAlgorithm', 'none')} with "
                                                        f"{'the stack key' if ok else d.get('KMSMasterKeyID', 'no key')}"))
    except ClientError as exc:
        checks.append(Check("bucket", "encryption", False, f"no default encryption ({error_code(exc)})"))
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
        days = sorted({r["Expiration"]["Days"] for r in rules if r.get("Status") == "Enabled" and "Days" in r.get("Expiration", {})})
        ok = outputs.backup_retention_days in days
        checks.append(Check("bucket", "lifecycle", ok, f"lifecycle expires objects after {days or 'never'} day(s), "
                                                       f"stack says {outputs.backup_retention_days}"))
    except ClientError as exc:
        checks.append(Check("bucket", "lifecycle", False, f"no lifecycle configuration ({error_code(exc)})"))
    if outputs.role == "dr" and outputs.replication_source_bucket_name:
        src = outputs.replication_source_bucket_name
        try:
            cfg = s3.get_bucket_replication(Bucket=src)["ReplicationConfiguration"]
            ok = any(r.get("Destination", {}).get("Bucket") == outputs.backup_bucket_arn and r.get("Status") == "Enabled"
                     for r in cfg.get("Rules", []))
            checks.append(Check("bucket", "replication", ok, f"source bucket {src} replicates into this bucket" if ok
                                else f"source bucket {src} has no enabled rule into {outputs.backup_bucket_arn}"))
        except ClientError as exc:
            checks.append(Check("bucket", "replication", False, f"cannot read replication of {src} ({error_code(exc)})"))
    return checks


def verify(outputs: StackOutputs, *, kinds: tuple[str, ...] = KINDS, max_age_minutes: dict[str, float] | None = None,
           record: bool = True, s3: Any = None, on_check: Callable[[Check], None] | None = None) -> VerifyReport:
    s3 = s3 or client("s3", outputs.region)
    cat = Catalog(s3, outputs.backup_bucket_name)
    start = utc_now()
    report = VerifyReport(outputs.stack, outputs.backup_bucket_name, iso(start))
    check_bucket(s3, outputs.backup_bucket_name)

    def add(cs: list[Check]) -> None:
        for c in cs:
            report.checks.append(c)
            if on_check:
                on_check(c)

    verified: dict[str, tuple[Entry, list[Check]]] = {}
    for kind in kinds:
        e = cat.latest(kind)
        if e is None:
            add([Check(kind, "present", None if kind == "config" else False,
                       f"no {kind} backup in the catalogue" + (" (taken on deployment only)" if kind == "config" else ""))])
            continue
        report.backups[kind] = e.manifest.key
        given = (max_age_minutes or {}).get(kind)
        limit = given if given is not None else default_max_age_minutes(outputs, kind)
        cs = _check_backup(s3, outputs, kind, e, limit, utc_now())
        add(cs)
        verified[kind] = (e, cs)
    add(_check_bucket(s3, outputs))
    report.ended_at = iso(utc_now())
    if record:
        try:
            for kind, (e, cs) in verified.items():
                integrity = [c for c in cs if c.name in ("object", "sha256", "decompress", "structure", "encryption")]
                cat.put_verification(e.manifest.key, {
                    "ok": all(c.ok is not False for c in integrity), "at": report.ended_at, "tool_version": __version__,
                    "checks": [asdict(c) for c in cs]}, outputs.backup_kms_key_arn)
            report.record_key = cat.put_run_record(start, report.to_json(), outputs.backup_kms_key_arn)
        except RecoveryError as exc:
            add([Check("bucket", "record", False, f"could not record this verification: {exc.problem}")])
    return report


def check_backup_entry(s3: Any, e: Entry) -> StreamResult:
    """Integrity only (sha256, decompression, structure) - for restores and offsite sync."""
    try:
        return scan_backup(s3, e.manifest)
    except ClientError as exc:
        raise aws_error(exc, f"reading {e.manifest.key}", bucket=e.manifest.bucket) from None
