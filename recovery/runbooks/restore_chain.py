"""`recovery restore chain`: the DR plan's scenario 2 (blockchain data loss) as a runbook.

Steps (each journaled and timed; the engine resumes after a crash):

1. ``preflight``       the data dir's parent exists; the data dir is not a mount point (the swap is a
                       rename, so staging must be on the same filesystem); the --owner exists (root).
2. ``check-backup``    resolve the backup (``latest`` = newest with a manifest) and check it without
                       reading its body: HEAD of the object agrees with the manifest (version, size,
                       no later overwrite), it is a tar in a restorable format, and the data dir's
                       filesystem has the archive's uncompressed size free, plus a margin.
3. ``extract-staging`` stream it, once, into ``<parent>/.<name>.restore-<run>.partial``
                       (``recovery.backups.extract``: download, sha256 and decompression on one thread,
                       the extraction on another; members confined to the archive's root directory;
                       only directories and regular files), read to its end so that its sha256 and
                       size are checked, compare the file count with the manifest's, then rename it
                       to ``.<name>.restore-<run>``. Any mismatch removes the partial tree.
4. ``check-chain-db``  ``chain.db`` is there and opens read-only; ``PRAGMA integrity_check`` is ok.
5. ``chown-staging``   as root, chown the staging tree to --owner (the plan's ``chown -R xai:xai``).
6. ``stop-services``   stop the node (and the other configured dependents).
7. ``archive-current`` only with --archive-current: the plan's "backup current state" step, a tar.gz
                       of the current data dir (raw files, as they are) to
                       ``s3://<bucket>/quarantine/chain/corrupted-blockchain-<run start>.tar.gz``.
8. ``swap-in``         atomically exchange the staging dir and the data dir (``renameat2`` with
                       RENAME_EXCHANGE), then rename the old one to ``<data dir>.quarantine-<run start>``.
                       The data dir path always holds either the old tree or the verified new one.
                       The commit point. The quarantined dir is never deleted.
9. ``start-services``  start the node again.
10. ``wait-sync``      poll the node API until it is synced, with a deadline (--sync-timeout).
11. ``verify-node``    the node's verify endpoint must say ``is_valid``.

Order versus the plan: the backup is extracted (verified on the way) and checked *before* the node is stopped,
so the node is down only for the swap, and any failure before the swap leaves the data dir and the
node exactly as they were (the staging dir is removed, stopped services are started again).
Failures after the swap (node does not start, sync deadline, verify) leave the restored, checked
data in place and the old data quarantined; a rerun resumes (e.g. keeps waiting for sync).
"""

from __future__ import annotations

import ctypes
import errno
import grp
import os
import pwd
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from recovery import knobs
from recovery.archive import Member, TarSource, check_sqlite
from recovery.aws import client, error_code
from recovery.catalog import Catalog, Entry
from recovery.errors import InputError, IntegrityError, RecoveryError
from recovery.node import NodeClient, describe_progress
from recovery.engine.journal import Journal, JournalStore, default_journal_dir, run_stamp
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step, StepContext, Target
from recovery.backups.extract import extract_tar
from recovery.backups.read import BackupStream, check_backup, resolve_backup
from recovery.backups.space import check_free_space
from recovery.engine.locks import HostLock
from recovery.engine.runbook import execute
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import StackOutputs
from recovery.stream import CompressedReader
from recovery.transfer import upload_stream

NAME = "restore-chain"
AT_FDCWD = -100
RENAME_EXCHANGE = 2
COPY_CHUNK = 1024 * 1024


@dataclass
class ChainRestoreOptions:
    data_dir: str
    backup: str = "latest"
    owner: str = "xai:xai"
    archive_current: bool = False
    node_url: str = "http://localhost:8080"
    sync_timeout_s: float = 900.0
    sync_interval_s: float = field(default_factory=lambda: knobs.value("RECOVERY_SYNC_POLL_SECONDS"))


def default_owner(outputs: StackOutputs) -> str:
    """Who the restored data dir belongs to unless --owner says: the plan's `chown -R xai:xai`; on the
    local environment's stacks, whoever runs the tool already owns its node's files ("" = unchanged)."""
    return "" if outputs.local else "xai:xai"


# ------------------------------------------------------------------------------------- file helpers


def exchange(a: Path, b: Path) -> None:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(a))
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(a))


def sqlite_check(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise IntegrityError(f"the restored data has no {path.name}", "this backup is not a node data dir; pick another")
    return check_sqlite(path, error=IntegrityError)


def run_paths(data_dir: Path, run_id: str) -> tuple[Path, Path, Path]:
    """(staging, partial extraction, quarantine) beside `data_dir` for run `run_id`: the only
    directories a chain restore makes, so a drill's sweep can name exactly what one of its runs left."""
    return (data_dir.parent / f".{data_dir.name}.restore-{run_id}",
            data_dir.parent / f".{data_dir.name}.restore-{run_id}.partial",
            data_dir.parent / f"{data_dir.name}.quarantine-{run_stamp(run_id)}")


def archive_key(run_id: str) -> str:
    """Where --archive-current puts the replaced data dir of run `run_id` (`quarantine prune` parses it back)."""
    return f"quarantine/chain/corrupted-blockchain-{run_stamp(run_id)}.tar.gz"


def raw_members(root: Path) -> list[Member]:
    """Every directory and regular file under root, archived raw (no SQLite snapshot: the node is
    stopped and the point is to keep the damaged state exactly as it is)."""
    base = str(root).lstrip("/")
    members = [Member(root, base, True, 0)]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        d = Path(dirpath)
        for n in dirnames:
            members.append(Member(d / n, f"{base}/{(d / n).relative_to(root).as_posix()}", True, 0))
        for n in sorted(filenames):
            p = d / n
            if p.is_file() and not p.is_symlink():
                members.append(Member(p, f"{base}/{p.relative_to(root).as_posix()}", False, p.stat().st_size))
    return members


# ------------------------------------------------------------------------------------- the runbook


@dataclass
class ChainRestore:
    outputs: StackOutputs
    opts: ChainRestoreOptions
    s3: Any
    services: ServiceControl
    backup_key: str  # what --backup resolved to when the command started (`latest` is a moving name)

    @property
    def data_dir(self) -> Path:
        return Path(os.path.abspath(self.opts.data_dir))

    def staging(self, run_id: str) -> Path:
        return run_paths(self.data_dir, run_id)[0]

    def partial(self, run_id: str) -> Path:
        return run_paths(self.data_dir, run_id)[1]

    def quarantine(self, run_id: str) -> Path:
        return run_paths(self.data_dir, run_id)[2]

    def archive_key(self, run_id: str) -> str:
        return archive_key(run_id)

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.s3, self.outputs.backup_bucket_name)

    def entry(self, ctx: StepContext) -> Entry:
        return self.catalog.get(ctx.results.get("check-backup", {}).get("key") or self.backup_key)

    def owner_ids(self) -> tuple[int, int] | None:
        if os.geteuid() != 0 or not self.opts.owner:
            return None  # not root, or told to keep the extracting user's ownership
        user, _, group = self.opts.owner.partition(":")
        try:
            uid = pwd.getpwnam(user).pw_uid
            gid = grp.getgrnam(group).gr_gid if group else pwd.getpwnam(user).pw_gid
        except KeyError:
            raise InputError(f"owner {self.opts.owner} does not exist on this host",
                             "create the node's user or pass --owner USER:GROUP") from None
        return uid, gid

    def stakes(self) -> dict[str, Any]:
        """For the plan and the prompt: the backup (what ``latest`` means now) and what the swap rolls
        back. A chain backup's manifest records its time, not its height, so the loss is told as the
        node's height and tip time against the backup's time; a node that does not answer is "unknown"."""
        m = self.catalog.get(self.backup_key).manifest
        taken = datetime.fromisoformat(m.ended_at.replace("Z", "+00:00")).timestamp()
        try:
            with NodeClient(self.opts.node_url, timeout_s=3, retries=1) as node:
                height = node.blockchain_info().block_height
                tip = node.blocks(height, limit=1) if height >= 0 else []
        except RecoveryError as exc:
            loss = f"unknown (the node does not answer: {exc.line()})"
        else:
            tip_at = float(tip[0]["timestamp"]) if tip and "timestamp" in tip[0] else None
            if height < 0:
                loss = "nothing: the node has no chain now"
            elif tip_at is None or tip_at <= taken:
                loss = f"nothing newer than the backup (the node is at height {height})"
            else:
                loss = (f"the node's blocks after the backup's time: it is at height {height}, its tip "
                        f"{tip_at - taken:.0f}s newer than the backup")
        return {"backup": self.backup_key + (" (latest)" if self.opts.backup == "latest" else ""),
                "backup taken": m.ended_at, "rolls back": loss,
                "current data": ("archived to s3 and " if self.opts.archive_current else "")
                                + f"kept as {self.data_dir}.quarantine-<run start>"}

    # -- checks (read-only)
    def swapped(self, ctx: StepContext) -> bool:
        ino = ctx.results.get("extract-staging", {}).get("inode")
        try:
            return ino is not None and os.stat(self.data_dir).st_ino == ino
        except FileNotFoundError:
            return False

    def staged(self, ctx: StepContext) -> dict[str, Any] | bool:
        s = self.staging(ctx.run_id)
        if s.is_dir() and not self.swapped(ctx):
            prev = ctx.results.get("extract-staging") or {}
            return {**prev, "staging": str(s), "inode": os.stat(s).st_ino}
        return bool(self.swapped(ctx))

    # -- actions
    def preflight(self, ctx: StepContext) -> dict[str, Any]:
        d = self.data_dir
        if not d.parent.is_dir():
            raise InputError(f"{d.parent} does not exist", "check --data-dir (e.g. /var/lib/xai/blockchain)")
        if d.exists() and not d.is_dir():
            raise InputError(f"{d} is not a directory", "check --data-dir")
        if d.is_dir() and os.stat(d).st_dev != os.stat(d.parent).st_dev:
            raise InputError(f"{d} is a mount point, so it cannot be swapped by rename",
                             "pass the directory inside the mount (or restore into a subdirectory)")
        ids = self.owner_ids()
        return {"data_dir": str(d), "exists": d.is_dir(), "owner": self.opts.owner if ids else "unchanged (not root)"}

    def check_backup(self, ctx: StepContext) -> dict[str, Any]:
        e = self.catalog.get(self.backup_key)
        detail = check_backup(self.s3, e, "tar", "a chain backup")
        # the staging dir is made beside the data dir, and the old data stays (quarantined): the
        # whole uncompressed archive must fit there, next to everything already on that filesystem
        detail.update(check_free_space(self.data_dir.parent, e.manifest.raw_bytes,
                                       f"the staging copy of {self.data_dir}",
                                       f"free space on the filesystem of {self.data_dir.parent} (old "
                                       f"{self.data_dir.name}.quarantine-* dirs can go: `recovery quarantine prune`), then rerun"))
        detail.update(files=e.manifest.file_count)
        return detail

    def extract(self, ctx: StepContext) -> dict[str, Any]:
        e = self.entry(ctx)
        part, s = self.partial(ctx.run_id), self.staging(ctx.run_id)
        for leftover in (part, s):  # a crash mid-extraction leaves a partial tree
            if leftover.exists():
                shutil.rmtree(leftover)
        stream = BackupStream(self.s3, e.manifest, counted=ctx.progress)
        try:
            detail = _extract_all(stream, part)
            if e.manifest.file_count is not None and detail["files"] != e.manifest.file_count:
                raise IntegrityError(f"extracted {detail['files']} files, the manifest says {e.manifest.file_count}",
                                     "the data dir was not touched; pick another backup")
            os.rename(part, s)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise
        return {"staging": str(s), "inode": os.stat(s).st_ino, **detail}

    def check_chain_db(self, ctx: StepContext) -> dict[str, Any]:
        root = self.data_dir if self.swapped(ctx) else self.staging(ctx.run_id)
        return sqlite_check(root / "chain.db")

    def chown(self, ctx: StepContext) -> dict[str, Any]:
        ids = self.owner_ids()
        if ids is None:
            return {"owner": "unchanged (not root)"}
        root = self.data_dir if self.swapped(ctx) else self.staging(ctx.run_id)
        n = 0
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [dirpath, *(os.path.join(dirpath, f) for f in dirnames + filenames)]:
                os.lchown(name, *ids)
                n += 1
        return {"owner": self.opts.owner, "paths": n}

    def stop_services(self, ctx: StepContext) -> dict[str, Any]:
        r = self.services.stop_all()
        return {"stopped": [x.service for x in r], "seconds": round(sum(x.duration_s for x in r), 3)}

    def stopped_or_swapped(self, ctx: StepContext) -> bool:
        return self.swapped(ctx) or self.services.all_stopped()

    def archived(self, ctx: StepContext) -> bool:
        if self.swapped(ctx) or not self.data_dir.exists():
            return True
        try:
            self.s3.head_object(Bucket=self.outputs.backup_bucket_name, Key=self.archive_key(ctx.run_id))
            return True
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def archive_current(self, ctx: StepContext) -> dict[str, Any]:
        if not self.data_dir.exists():
            return {"archived": "nothing (the data dir is gone)"}
        key = self.archive_key(ctx.run_id)
        src = TarSource(raw_members(self.data_dir))
        reader = CompressedReader(src.reader, "gzip", finish=src.finish)
        try:
            upload_stream(self.s3, self.outputs.backup_bucket_name, key, reader,
                          kms_key_id=self.outputs.backup_kms_key_arn, content_type="application/gzip",
                          metadata={"recovery-kind": "chain-quarantine"})
        finally:
            reader.abort()
            src.close()
        return {"archived": f"s3://{self.outputs.backup_bucket_name}/{key}", "bytes": reader.stats.stored_bytes,
                "files": src.file_count}

    def swap_done(self, ctx: StepContext) -> bool:
        return self.swapped(ctx) and not self.staging(ctx.run_id).exists()

    def swap_in(self, ctx: StepContext) -> dict[str, Any]:
        s, d, q = self.staging(ctx.run_id), self.data_dir, self.quarantine(ctx.run_id)
        if not self.swapped(ctx):
            if d.exists():
                try:
                    exchange(s, d)  # d is now the new tree, s the old one
                except OSError as exc:
                    if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
                        raise
                    os.rename(d, q)  # no RENAME_EXCHANGE here: two renames, a short window
                    os.rename(s, d)
                    return {"live": str(d), "quarantined_as": str(q), "atomic": False}
            else:
                os.rename(s, d)
                return {"live": str(d), "quarantined_as": "(no previous data dir)", "atomic": True}
        if s.exists():  # the old tree, after the exchange
            os.rename(s, q)
        return {"live": str(d), "quarantined_as": str(q), "atomic": True}

    def start_services(self, ctx: StepContext) -> dict[str, Any]:
        r = self.services.start_all()
        return {"started": [x.service for x in r], "seconds": round(sum(x.duration_s for x in r), 3)}

    def wait_sync(self, ctx: StepContext) -> dict[str, Any]:
        last = {"t": 0.0}

        def progress(p: Any) -> None:
            now = time.monotonic()
            if now - last["t"] >= 5 or p.is_synced:
                last["t"] = now
                ctx.progress(f"sync: {describe_progress(p)}")

        with NodeClient(self.opts.node_url, timeout_s=5, retries=1) as node:
            info = node.wait_for_sync(self.opts.sync_timeout_s, progress=progress, interval_s=self.opts.sync_interval_s)
        return {"block_height": info.block_height, "consensus_state": info.consensus_state}

    def verify_node(self, ctx: StepContext) -> dict[str, Any]:
        with NodeClient(self.opts.node_url, timeout_s=10) as node:
            report = node.verify_report()
        if not report.get("is_valid"):
            reason = report.get("reason") or report.get("error") or "no reason given"
            raise IntegrityError(f"the node says the restored chain is not valid ({reason})",
                                 f"check the node; the previous data is in {self.data_dir}.quarantine-*")
        return {"is_valid": True, **{k: v for k, v in report.items() if k in ("block_height",)}}

    # -- failure: put things back as they were (before the swap only)
    def undo(self, journal: Journal) -> None:
        ino = journal.step("extract-staging").detail.get("inode")
        try:
            swapped = ino is not None and os.stat(self.data_dir).st_ino == ino
        except FileNotFoundError:
            swapped = False
        if swapped or journal.completed("swap-in"):
            return
        for p in (self.partial(journal.run_id), self.staging(journal.run_id)):
            shutil.rmtree(p, ignore_errors=True)
        if journal.completed("stop-services"):
            self.services.start_all()

    def runbook(self) -> Runbook:
        d = self.data_dir
        steps = [
            Step("preflight", self.preflight, touches="nothing (reads the data dir and its parent)", rerun=True),
            Step("check-backup", self.check_backup,
                 touches=f"nothing (HEAD of backup {self.backup_key} in s3://{self.outputs.backup_bucket_name}: "
                         f"version, size, format; free space in {d.parent})"),
            Step("extract-staging", self.extract,
                 touches=f"creates {d.parent}/.{d.name}.restore-<run>, streaming the backup into it once (sha256, file count)",
                 check=self.staged),
            Step("check-chain-db", self.check_chain_db, touches="nothing (opens chain.db read-only)"),
            Step("chown-staging", self.chown, touches=f"chown -R {self.opts.owner} of the staging dir (as root)"),
            Step("stop-services", self.stop_services, touches=self.services.describe_stop(), check=self.stopped_or_swapped),
        ]
        if self.opts.archive_current:
            steps.append(Step("archive-current", self.archive_current,
                              touches=f"uploads {d} to s3://{self.outputs.backup_bucket_name}/quarantine/chain/",
                              check=self.archived))
        steps += [
            Step("swap-in", self.swap_in, touches=f"moves {d} to {d}.quarantine-<run start>, staging to {d}",
                 check=self.swap_done),
            Step("start-services", self.start_services, touches=self.services.describe_start(),
                 check=lambda ctx: self.services.all_running(), undone_by=("stop-services",)),
            Step("wait-sync", self.wait_sync, touches=f"nothing (polls {self.opts.node_url}, up to {self.opts.sync_timeout_s:g}s)"),
            Step("verify-node", self.verify_node, touches=f"nothing (GET {self.opts.node_url}/api/v1/blockchain/verify)"),
        ]
        return Runbook(NAME, steps,
                       Target(str(d), production=self.outputs.production), destructive=True,
                       params={"stack": self.outputs.stack, "backup": self.opts.backup, "backup_key": self.backup_key,
                               "data_dir": str(d),
                               "owner": self.opts.owner, "archive_current": self.opts.archive_current,
                               "node_url": self.opts.node_url})


def _extract_all(stream: BackupStream, dest: Path) -> dict[str, Any]:
    """Extract, then read the rest of the object so its sha256 is checked end to end."""
    try:
        return extract_tar(stream, dest)
    except tarfile.TarError as exc:
        raise IntegrityError(f"the archive is unreadable: {exc}", "pick another backup with --backup KEY") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EPERM, errno.EACCES):
            raise InputError(f"cannot write the staging dir {dest}: {exc.strerror}",
                             "free space or fix permissions beside the data dir, then rerun") from None
        raise


def build(outputs: StackOutputs, opts: ChainRestoreOptions, *, s3: Any = None,
          services: ServiceControl | None = None) -> ChainRestore:
    services = services or ServiceControl(ServicesConfig.for_stack(outputs))  # a bad services config is refused before the catalogue is read
    s3 = s3 or client("s3", outputs.region)
    key = resolve_backup(Catalog(s3, outputs.backup_bucket_name), "chain", opts.backup).manifest.key
    return ChainRestore(outputs, opts, s3, services, key)


def restore_chain(outputs: StackOutputs, opts: ChainRestoreOptions, store: JournalStore, *, yes: bool = False,
                  dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    r = build(outputs, opts)
    rb = r.runbook()
    rb.stakes = r.stakes()  # asked here, not in runbook(): it asks the node
    if dry_run:
        return execute(rb, store, yes=yes, dry_run=True, reporter=reporter)
    lock = HostLock(f"{NAME}-{str(r.data_dir).strip('/').replace('/', '_')}", default_journal_dir(), what="restore")
    return execute(rb, store, yes=yes, dry_run=False, reporter=reporter, lock=lock, on_failure=r.undo)


__all__ = ["ChainRestoreOptions", "ChainRestore", "build", "restore_chain"]
