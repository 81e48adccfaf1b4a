"""`recovery restore config`: put configuration back from a `recovery backup config` archive.

The DR plan's breach containment ends with "redeploy from known-good state"; the explorer's and
monitoring's recovery put their configuration back the same way. A config backup is a tar of
files and directories with their absolute paths as member names (without the leading '/'); its
manifest's ``source`` lists the paths that were archived: the *roots*.

Steps (each journaled; the engine resumes after a crash):

1. ``verify-backup``   stream the backup once: sha256 and size against the manifest, decompression,
                       tar structure. Nothing written.
2. ``list-members``    stream it again, headers only: every member must lie under one of the
                       backup's roots, with no '..' and of a kind we restore (directory, regular
                       file, symlink); count the files and bytes under each chosen root.
3. ``extract-staging`` stream it a third time into ``<parent>/.<name>.restore-<run>.partial`` beside
                       each chosen root (a directory, or a single file), then rename each to
                       ``.<name>.restore-<run>``. The sha256 is checked again at the end.
4. ``check-staged``    walk the staged trees: file count and bytes as listed; the whole archive's
                       file count and bytes as its manifest says.
5. ``swap-in``         per root: exchange the staging and the live path (``renameat2``
                       RENAME_EXCHANGE, as `restore chain`), then rename the old content to
                       ``<parent>/.<name>.quarantine-<run start>``. A root that no longer exists
                       is simply renamed into place. The commit point; quarantines are never deleted.
6. ``restart``         only with --restart: stop then start each named service (recovery/services.py).

Config backups are small (KBs), so reading the object three times costs little and keeps each step
simple and resumable. Failure before the swap removes the staging and leaves the live files as they
were; after it, the restored files stay and a rerun resumes (e.g. retries the restart).
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from recovery.aws import client
from recovery.backups.read import BackupStream, resolve_backup, verify_backup
from recovery.catalog import Catalog, Entry
from recovery.engine.hooks import enospc, fault
from recovery.engine.journal import Journal, JournalStore, default_journal_dir, run_stamp
from recovery.engine.locks import HostLock
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
from recovery.errors import InputError, IntegrityError
from recovery.runbooks.restore_chain import COPY_CHUNK, exchange, run_paths
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import StackOutputs
from recovery.stream import FeedReader

NAME = "restore-config"


@dataclass
class ConfigRestoreOptions:
    backup: str = "latest"
    paths: tuple[str, ...] = ()  # restore only these (each a root of the backup or inside one); () = all
    restart: tuple[str, ...] = ()  # services to stop and start after the swap, in this order


def backup_roots(source: str) -> list[str]:
    """The paths `backup config` archived, from its manifest's source (", "-joined absolute paths)."""
    return [os.path.normpath(p) for p in source.split(", ") if p.startswith("/")]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def choose_roots(roots: list[str], paths: tuple[str, ...], backup: str) -> list[str]:
    """The roots to restore: every root of the backup, or each --path (which must lie in one)."""
    if not paths:  # a root archived inside another (`backup config /etc/xai /etc/xai/conf.d`) comes with it
        return sorted({r for r in roots if not any(o != r and _under(r, o) for o in roots)})
    chosen: list[str] = []
    for p in paths:
        ap = os.path.abspath(p)
        if not any(_under(ap, r) for r in roots):
            raise InputError(f"--path {ap} is not in backup {backup} (it holds {', '.join(roots)})",
                             "pass one of those paths or a path inside one")
        chosen.append(ap)
    nested = [a for a in chosen for b in chosen if a != b and _under(a, b)]
    if nested or len(set(chosen)) != len(chosen):
        raise InputError(f"--path {(nested or chosen)[0]} is given twice or lies inside another --path",
                         "pass each path once, and not one inside another")
    return sorted(chosen)


def member_path(name: str) -> str:
    """The absolute path a member restores to; IntegrityError for names that could escape."""
    rel = PurePosixPath(name.lstrip("/"))
    if not rel.parts or ".." in rel.parts:
        raise IntegrityError(f"archive member {name!r} escapes its root", "refusing to restore from this archive")
    return "/" + rel.as_posix()


@dataclass
class Located:
    info: tarfile.TarInfo
    path: str  # absolute, on this host
    root: str | None  # the chosen root it is under; None: not chosen (skipped)


def locate(members: Iterator[tarfile.TarInfo], roots: list[str], chosen: list[str]) -> Iterator[Located]:
    """Each member with where it goes; refuses members outside the backup's roots, odd kinds, and
    anything below a symlink of the archive (a planted link would redirect later writes)."""
    links: list[str] = []
    seen: set[str] = set()
    for info in members:
        path = member_path(info.name)
        if path in seen:  # nested roots archive their members twice; the first copy is the one restored
            yield Located(info, path, None)  # still counted against the manifest's totals
            continue
        seen.add(path)
        if not any(_under(path, r) for r in roots):
            raise IntegrityError(f"archive member {info.name!r} is outside the backup's roots ({', '.join(roots)})",
                                 "refusing to restore from this archive; pick another with --backup KEY")
        if not (info.isdir() or info.isfile() or info.issym()):
            raise IntegrityError(f"archive member {info.name!r} is not a file, directory or symlink",
                                 "config backups hold only those; pick another with --backup KEY")
        if any(path != lk and _under(path, lk) for lk in links):
            raise IntegrityError(f"archive member {info.name!r} lies below a symlink of the archive",
                                 "refusing to write through a link; pick another backup")
        if info.issym():
            links.append(path)
        yield Located(info, path, next((c for c in chosen if _under(path, c)), None))


def _counts(chosen: list[str]) -> dict[str, dict[str, int]]:
    return {c: {"files": 0, "bytes": 0, "members": 0} for c in chosen}


# ------------------------------------------------------------------------------------- the runbook


@dataclass
class ConfigRestore:
    outputs: StackOutputs
    opts: ConfigRestoreOptions
    s3: Any
    services: ServiceControl
    entry: Entry  # what --backup resolved to when the command started (`latest` is a moving name)
    roots: list[str]  # every root of the backup
    chosen: list[str]  # the roots this run restores

    def staging(self, root: str, run_id: str) -> Path:
        return run_paths(Path(root), run_id)[0]

    def partial(self, root: str, run_id: str) -> Path:
        return run_paths(Path(root), run_id)[1]

    def quarantine(self, root: str, run_id: str) -> Path:
        p = Path(root)
        return p.parent / f".{p.name}.quarantine-{run_stamp(run_id)}"

    def stream(self, ctx: StepContext | None = None) -> BackupStream:
        return BackupStream(self.s3, self.entry.manifest, progress=ctx.info if ctx else None)

    # -- checks (read-only)
    def swapped(self, root: str, ctx: StepContext) -> bool:
        ino = (ctx.results.get("extract-staging", {}).get("inodes") or {}).get(root)
        try:
            return ino is not None and os.lstat(root).st_ino == ino
        except FileNotFoundError:
            return False

    def staged(self, ctx: StepContext) -> dict[str, Any] | bool:
        """Holds when every chosen root is staged or already swapped in (after a crash)."""
        inodes: dict[str, int] = {}
        for r in self.chosen:
            s = self.staging(r, ctx.run_id)
            if self.swapped(r, ctx):
                inodes[r] = os.lstat(r).st_ino
            elif os.path.lexists(s):
                inodes[r] = os.lstat(s).st_ino
            else:
                return False
        return {**(ctx.results.get("extract-staging") or {}), "inodes": inodes}

    def swap_done(self, ctx: StepContext) -> dict[str, Any] | bool:
        if not all(self.swapped(r, ctx) and not os.path.lexists(self.staging(r, ctx.run_id)) for r in self.chosen):
            return False
        return {"quarantined": {r: self._kept(r, ctx.run_id) for r in self.chosen}}

    def _kept(self, root: str, run_id: str) -> str:
        q = self.quarantine(root, run_id)
        return str(q) if os.path.lexists(q) else "(nothing was there)"

    # -- actions
    def verify_backup(self, ctx: StepContext) -> dict[str, Any]:
        m = self.entry.manifest
        if m.content != "tar":
            raise InputError(f"{m.name} is not a tar archive", "pass a config backup")
        return {**verify_backup(self.s3, self.entry), "roots": self.roots}

    def list_members(self, ctx: StepContext) -> dict[str, Any]:
        counts = _counts(self.chosen)
        total = {"files": 0, "bytes": 0}
        gen = self.stream(ctx).chunks()
        try:
            with tarfile.open(fileobj=FeedReader(gen), mode="r|") as tar:
                for loc in locate(iter(tar), self.roots, self.chosen):
                    if loc.info.isfile():
                        total["files"] += 1
                        total["bytes"] += loc.info.size
                    if loc.root is not None:
                        c = counts[loc.root]
                        c["members"] += 1
                        if loc.info.isfile():
                            c["files"] += 1
                            c["bytes"] += loc.info.size
            for _ in gen:
                pass
        except tarfile.TarError as exc:
            raise IntegrityError(f"the archive is unreadable: {exc}", "pick another backup with --backup KEY") from None
        empty = [r for r, c in counts.items() if not c["members"]]
        if empty:
            raise InputError(f"backup {self.entry.manifest.name} holds nothing at {empty[0]}",
                             "check --path against `recovery list --kind config`")
        return {"roots": counts, "archive_files": total["files"], "archive_bytes": total["bytes"]}

    def extract(self, ctx: StepContext) -> dict[str, Any]:
        for r in self.chosen:  # a crash mid-extraction leaves partial trees
            for leftover in (self.partial(r, ctx.run_id), self.staging(r, ctx.run_id)):
                _remove(leftover)
        try:
            self._extract_all(ctx)
            for r in self.chosen:
                os.rename(self.partial(r, ctx.run_id), self.staging(r, ctx.run_id))
        except BaseException:
            for r in self.chosen:
                _remove(self.partial(r, ctx.run_id))
            raise
        return {"staging": {r: str(self.staging(r, ctx.run_id)) for r in self.chosen},
                "inodes": {r: os.lstat(self.staging(r, ctx.run_id)).st_ino for r in self.chosen}}

    def _extract_all(self, ctx: StepContext) -> None:
        stream = self.stream(ctx)
        gen = stream.chunks()
        dirs: list[tuple[Path, tarfile.TarInfo]] = []
        as_root = os.geteuid() == 0  # only root can give files back their owners
        written = 0
        try:
            with tarfile.open(fileobj=FeedReader(gen), mode="r|") as tar:
                for loc in locate(iter(tar), self.roots, self.chosen):
                    if loc.root is None:
                        continue
                    base = self.partial(loc.root, ctx.run_id)
                    target = base / os.path.relpath(loc.path, loc.root) if loc.path != loc.root else base
                    info = loc.info
                    if info.isdir():
                        target.mkdir(mode=0o700, exist_ok=True)
                        dirs.append((target, info))
                    elif info.issym():
                        os.symlink(info.linkname, target)
                    else:
                        _write_file(tar, info, target)
                        written += 1
                        if fault("enospc") and written >= 1:
                            raise enospc(str(target))
                    if as_root:
                        os.lchown(target, info.uid, info.gid)
            for _ in gen:  # drain: the sha256 check runs when the object is fully read
                pass
        except tarfile.TarError as exc:
            raise IntegrityError(f"the archive is unreadable: {exc}", "pick another backup with --backup KEY") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EPERM, errno.EACCES):
                raise InputError(f"cannot write the staging beside {exc.filename or 'a root'}: {exc.strerror}",
                                 "free space or fix permissions there, then rerun") from None
            raise
        for d, info in reversed(dirs):  # last: writing into a read-only dir must come first
            os.chmod(d, info.mode & 0o7777)
            os.utime(d, (info.mtime, info.mtime))

    def check_staged(self, ctx: StepContext) -> dict[str, Any]:
        listed = ctx.results.get("list-members") or {}
        m = self.entry.manifest
        for got, want, what in ((listed.get("archive_files"), m.file_count, "files"),
                                (listed.get("archive_bytes"), m.file_bytes, "bytes of files")):
            if want is not None and got != want:
                raise IntegrityError(f"the archive holds {got} {what}, its manifest says {want}",
                                     "the live files were not touched; pick another backup with --backup KEY")
        found: dict[str, dict[str, int]] = {}
        for r in self.chosen:
            where = Path(r) if self.swapped(r, ctx) else self.staging(r, ctx.run_id)
            files, nbytes = _walk_counts(where)
            listed_r = (listed.get("roots") or {}).get(r) or {}
            if (files, nbytes) != (listed_r.get("files"), listed_r.get("bytes")):
                raise IntegrityError(f"staged {r} has {files} files ({nbytes} bytes), the archive lists "
                                     f"{listed_r.get('files')} ({listed_r.get('bytes')} bytes)",
                                     "the live files were not touched; rerun or pick another backup")
            found[r] = {"files": files, "bytes": nbytes}
        return {"roots": found}

    def swap_in(self, ctx: StepContext) -> dict[str, Any]:
        done: dict[str, str] = {}
        for r in self.chosen:
            s, q = self.staging(r, ctx.run_id), self.quarantine(r, ctx.run_id)
            if not self.swapped(r, ctx):
                if not os.path.lexists(r):
                    os.rename(s, r)
                    done[r] = "(nothing was there)"
                    continue
                try:
                    exchange(s, Path(r))  # r is now the restored content, s the old one
                except OSError as exc:
                    if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
                        raise
                    os.rename(r, q)  # no RENAME_EXCHANGE here: two renames, a short window
                    os.rename(s, r)
            if os.path.lexists(s):  # the old content, after the exchange
                os.rename(s, q)
            done[r] = self._kept(r, ctx.run_id)
        return {"quarantined": done}

    def restart(self, ctx: StepContext) -> dict[str, Any]:
        out = []
        for name in self.opts.restart:
            ctx.info(f"restarting {name}")
            stop = self.services.stop(name)
            start = self.services.start(name)
            out.append({"service": name, "seconds": round(stop.duration_s + start.duration_s, 3)})
        return {"restarted": out}

    # -- failure: before the swap, remove what this run staged; after it, keep everything for the rerun
    def undo(self, journal: Journal) -> None:
        inodes = journal.step("extract-staging").detail.get("inodes") or {}
        for r in self.chosen:
            try:
                if os.lstat(r).st_ino == inodes.get(r):
                    return  # the swap began: the rerun finishes it
            except FileNotFoundError:
                pass
        for r in self.chosen:
            _remove(self.partial(r, journal.run_id))
            _remove(self.staging(r, journal.run_id))

    def runbook(self) -> Runbook:
        m = self.entry.manifest
        where = f"s3://{self.outputs.backup_bucket_name}"
        steps = [
            Step("verify-backup", self.verify_backup, touches=f"nothing (streams backup {m.key} from {where}, checks sha256)"),
            Step("list-members", self.list_members, touches="nothing (reads the archive's member names)"),
            Step("extract-staging", self.extract, check=self.staged,
                 touches="creates " + ", ".join(str(run_paths(Path(r), "<run>")[0]) for r in self.chosen)),
            Step("check-staged", self.check_staged, touches="nothing (counts the staged files)"),
            Step("swap-in", self.swap_in, check=self.swap_done,
                 touches="; ".join(f"moves {r} to {self.quarantine(r, '<run start>')}, staging to {r}" for r in self.chosen)),
        ]
        if self.opts.restart:
            cfg = self.services.config
            steps.append(Step("restart", self.restart, touches="; ".join(
                f"{shlex.join(cfg.service(n).stop)}; {shlex.join(cfg.service(n).start)}" for n in self.opts.restart)))
        return Runbook(NAME, steps, Target(self.outputs.stack, production=self.outputs.production),
                       destructive=True,
                       params={"stack": self.outputs.stack, "backup": self.opts.backup, "backup_key": m.key,
                               "roots": self.chosen, "restart": list(self.opts.restart)})


def _write_file(tar: tarfile.TarFile, info: tarfile.TarInfo, target: Path) -> None:
    src = tar.extractfile(info)
    assert src is not None
    with open(target, "xb") as out:
        os.fchmod(out.fileno(), 0o600)  # the member's own mode only once its content is complete
        while block := src.read(COPY_CHUNK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(target, info.mode & 0o7777)
    os.utime(target, (info.mtime, info.mtime))


def _walk_counts(root: Path) -> tuple[int, int]:
    """Regular files (not symlinks) under root, which may be a single file, and their bytes."""
    if root.is_symlink():
        return 0, 0
    if root.is_file():
        return 1, root.stat().st_size
    files = nbytes = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                files += 1
                nbytes += p.stat().st_size
    return files, nbytes


def _remove(p: Path) -> None:
    """Remove a staging path this run made (a tree, a file or a link)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif os.path.lexists(p):
        p.unlink()


def preflight(chosen: list[str]) -> None:
    """Before anything happens: each root's parent exists and the root can be swapped by rename."""
    for r in chosen:
        p = Path(r)
        if not p.parent.is_dir():
            raise InputError(f"{p.parent} does not exist, so {r} cannot be restored there",
                             f"create it (mkdir -p {p.parent}) and rerun")
        if p.is_dir() and not p.is_symlink() and os.stat(p).st_dev != os.stat(p.parent).st_dev:
            raise InputError(f"{r} is a mount point, so it cannot be swapped by rename",
                             "pass --path with the files inside the mount")


def build(outputs: StackOutputs, opts: ConfigRestoreOptions, *, s3: Any = None,
          services: ServiceControl | None = None) -> ConfigRestore:
    """Everything the run needs, checked before anything changes: services, backup, paths."""
    services = services or ServiceControl(ServicesConfig.for_stack(outputs))
    for name in opts.restart:
        services.config.service(name)  # an unknown --restart is refused here, with the configured names
    s3 = s3 or client("s3", outputs.region)
    entry = resolve_backup(Catalog(s3, outputs.backup_bucket_name), "config", opts.backup)
    roots = backup_roots(entry.manifest.source)
    if not roots:
        raise IntegrityError(f"the manifest of {entry.manifest.name} names no paths", "pick another backup with --backup KEY")
    chosen = choose_roots(roots, opts.paths, entry.manifest.name)
    preflight(chosen)
    return ConfigRestore(outputs, opts, s3, services, entry, roots, chosen)


def restore_config(outputs: StackOutputs, opts: ConfigRestoreOptions, store: JournalStore, *, yes: bool = False,
                   dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    r = build(outputs, opts)
    rb = r.runbook()
    if dry_run:
        return execute(rb, store, yes=yes, dry_run=True, reporter=reporter)
    lock = HostLock(NAME, default_journal_dir(), what="restore")
    return execute(rb, store, yes=yes, dry_run=False, reporter=reporter, lock=lock, on_failure=r.undo)


def kept(journal: Journal | None) -> list[str]:
    """The quarantines a run left (never deleted by us), for the command's last lines."""
    if journal is None or not journal.completed("swap-in"):
        return []
    q = journal.step("swap-in").detail.get("quarantined") or {}
    return [f"kept the previous {root} as {where}" for root, where in q.items() if where.startswith("/")]


__all__ = ["ConfigRestoreOptions", "ConfigRestore", "build", "kept", "restore_config"]
