"""Reading a small local input file (an outputs file, a services config) without ever hanging.

A FIFO or a terminal would block the run forever and a device would never end, so anything but a
regular file is refused from its `stat`, before it is opened; the open itself is non-blocking in case
the path is swapped between the two. Each defect gets its own one-line error of the caller's class.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from recovery.errors import RecoveryError


def read_regular_file(path: str | os.PathLike[str], what: str, error: type[RecoveryError], *, limit: int,
                      fix_special: str, fix_missing: str = "check the path") -> bytes:
    """The bytes of the regular file `path` (`what` names it in messages), at most `limit` of them."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist", fix_missing) from None
    except NotADirectoryError:
        raise error(f"{what} {p} does not exist (a parent is not a directory)", "check the path") from None
    except OSError as exc:
        raise error(f"cannot look at {what} {p}: {exc.strerror}", "check the path and permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {p} is a directory", "pass the file inside it, not the directory")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {p} is a {file_kind(st.st_mode)}, not a regular file", fix_special)
    if st.st_size > limit:
        raise error(f"{what} {p} is {st.st_size} bytes, more than the {limit} such a file can be",
                    "check that it is the right file")
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except PermissionError:
        raise error(f"{what} {p} is not readable by this user",
                    "check its permissions (chmod/chown) or run as its owner") from None
    except OSError as exc:
        raise error(f"cannot open {what} {p}: {exc.strerror}", "check the path and permissions") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise error(f"{what} {p} changed into a non-regular file while being opened", "pass a regular file")
        try:
            return f.read(limit + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {p}: {exc.strerror}", "check the disk and the path") from None


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"
