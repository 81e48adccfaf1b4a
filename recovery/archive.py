"""Tar archives streamed through a pipe, with consistent copies of SQLite databases.

`plan_tree` walks the inputs first (so an unreadable path fails before anything is written);
`TarSource` then writes the tar stream from a thread into a pipe whose read end feeds the
compressor. SQLite files (detected by their header) are copied with SQLite's online backup
API into a temp file and archived from that copy, so a node writing `chain.db` meanwhile
cannot produce a torn file; their -wal/-shm/-journal companions are skipped (the copy holds
their content). Member names are the paths without the leading '/', or `member_prefix`
+ the relative path, so `tar -xzf X -C /` puts files back where they were.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from recovery.errors import BackupFailedError, ChainDataError, InputError, RecoveryError

SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
CHAIN_DB = "chain.db"  # the node's database, at the top of its data directory


@dataclass
class Member:
    path: Path  # on disk
    arcname: str
    is_dir: bool  # True: an entry without content (directory or symlink), added as is
    size: int
    sqlite: bool = False


def _is_sqlite(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(16) == SQLITE_HEADER
    except OSError:
        return False


def _unreadable(p: Path, why: str) -> InputError:
    return InputError(f"cannot read {p}: {why}", "run as a user that can read it (e.g. the xai user or root)")


def plan_tree(root: Path, member_prefix: str | None = None) -> list[Member]:
    """Every directory and file under `root` (which may be a single file), checked readable."""
    root = Path(os.path.abspath(root))
    if not root.exists():
        raise InputError(f"{root} does not exist", "check the path (e.g. --data-dir /var/lib/xai/blockchain)")
    if not os.access(root, os.R_OK) or (root.is_dir() and not os.access(root, os.X_OK)):
        raise _unreadable(root, "permission denied")
    base = (member_prefix.strip("/") if member_prefix else str(root).lstrip("/")) or "."

    def arc(p: Path) -> str:
        rel = p.relative_to(root)
        return base if str(rel) == "." else f"{base}/{rel.as_posix()}"

    members: list[Member] = []
    if root.is_file():
        return [Member(root, base, False, root.stat().st_size, _is_sqlite(root))]
    members.append(Member(root, base, True, 0))
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        dirnames.sort()
        d = Path(dirpath)
        names = set(filenames)
        for name in sorted(dirnames):
            p = d / name
            if not os.access(p, os.R_OK | os.X_OK):
                raise _unreadable(p, "permission denied")
            members.append(Member(p, arc(p), True, 0))
        sqlite_dbs = {n for n in names if _is_sqlite(d / n)}
        for name in sorted(filenames):
            p = d / name
            if any(name == db + suf for db in sqlite_dbs for suf in SQLITE_COMPANIONS):
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                members.append(Member(p, arc(p), True, 0))  # archived as a link, never followed
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets, fifos, devices
            if not os.access(p, os.R_OK):
                raise _unreadable(p, "permission denied")
            members.append(Member(p, arc(p), False, st.st_size, name in sqlite_dbs))
    if errors:
        raise _unreadable(Path(getattr(errors[0], "filename", root) or root), errors[0].strerror or "error")
    return members


def sqlite_snapshot(src: Path, dest: Path) -> None:
    """A transactionally consistent copy of a live SQLite database (online backup API)."""
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        d = sqlite3.connect(dest)
        try:
            s.backup(d)  # one step: holds a read transaction for the whole copy
        finally:
            d.close()
    finally:
        s.close()


def check_sqlite(path: Path, fix: str = "pick another backup with --backup KEY",
                 error: type[RecoveryError] = ChainDataError) -> dict[str, Any]:
    """``PRAGMA integrity_check`` of a SQLite file, opened read-only; `error` unless it is ok.
    Backups, verify and restores all judge chain.db by this one check (a restore says it with the
    integrity code, a backup with the chain-data code)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            result = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            height = None
            if "blocks" in tables:
                height = db.execute("SELECT max(height) FROM blocks").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise error(f"{path.name} does not open as SQLite: {exc}", fix) from None
    if result != ["ok"]:
        raise error(f"{path.name} fails PRAGMA integrity_check: {'; '.join(result[:3])}", fix)
    return {"integrity_check": "ok", "tables": tables, "max_height": height}


def chain_db_member(members: list[Member], root: Path) -> Member:
    """The data directory's chain.db; ChainDataError before anything is written if it is missing
    or not SQLite (an archive without it would be catalogued and then fail every restore)."""
    base = members[0].arcname if members and members[0].is_dir else ""
    want = f"{base}/{CHAIN_DB}"
    m = next((m for m in members if m.arcname == want), None)
    if m is None:
        raise ChainDataError(f"{root} has no {CHAIN_DB}, so a backup of it could not restore a node; nothing was written",
                             "pass the node's data directory (--data-dir, e.g. /var/lib/xai/blockchain)")
    if not m.sqlite:
        raise ChainDataError(f"{root / CHAIN_DB} is not a SQLite database; nothing was written",
                             "check the node's data directory; restore it with `recovery restore chain` if damaged")
    return m


class TarSource:
    """A readable pipe carrying the tar stream of `members`; `finish()` raises if writing failed.

    Members listed in ``checked`` are SQLite databases whose snapshot must pass ``check_sqlite``
    before it is archived; a failure stops the stream, so the upload is aborted."""

    def __init__(self, members: list[Member], checked: tuple[Member, ...] = ()) -> None:
        self.members = members
        self.checked = {m.arcname for m in checked}
        self.file_count = 0
        self.file_bytes = 0
        self._error: BaseException | None = None
        r, w = os.pipe()
        self.reader: IO[bytes] = os.fdopen(r, "rb", buffering=0)
        self._writer = os.fdopen(w, "wb", buffering=1024 * 1024)
        self._thread = threading.Thread(target=self._write, name="tar", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            with tempfile.TemporaryDirectory(prefix="recovery-sqlite-") as tmp, \
                    tarfile.open(fileobj=self._writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for m in self.members:
                    if m.is_dir:
                        tar.add(str(m.path), arcname=m.arcname, recursive=False)
                        continue
                    src = m.path
                    if m.sqlite:
                        src = Path(tmp) / m.path.name  # errors then name the file the user knows
                        self._snapshot(m, src)
                    info = tar.gettarinfo(str(m.path), arcname=m.arcname)
                    info.size = src.stat().st_size
                    with open(src, "rb") as f:
                        tar.addfile(info, f)
                    self.file_count += 1
                    self.file_bytes += info.size
                    if m.sqlite:
                        src.unlink()
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self._error = exc
        finally:
            try:
                self._writer.close()
            except OSError as exc:
                self._error = self._error or exc

    def _snapshot(self, m: Member, dest: Path) -> None:
        if m.arcname not in self.checked:
            sqlite_snapshot(m.path, dest)
            return
        fix = f"{m.path} is damaged; restore the node's data with `recovery restore chain`"
        try:
            sqlite_snapshot(m.path, dest)
        except sqlite3.DatabaseError as exc:  # a malformed file can fail the copy itself
            raise ChainDataError(f"{m.path} cannot be copied as SQLite ({exc}); nothing was catalogued", fix) from None
        check_sqlite(dest, fix)

    def finish(self) -> None:
        self._thread.join()
        if self._error is not None:
            e = self._error
            if isinstance(e, RecoveryError):
                raise e
            if isinstance(e, BrokenPipeError):
                raise BackupFailedError("the archive stream was cut off", "see the error above") from None
            raise BackupFailedError(f"archiving failed: {type(e).__name__}: {e}", "check the data directory and retry")

    def close(self) -> None:
        try:
            self.reader.close()
        except OSError:
            pass
        self._thread.join(timeout=10)
