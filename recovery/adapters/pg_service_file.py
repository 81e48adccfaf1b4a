"""This host's libpq connection service file (``pg_service.conf``): where its services find the database.

The services config may name one (``database_service_file``, with ``database_service``, default
``xai-db``): the services connect with ``service=xai-db`` and ``PGSERVICEFILE`` pointing at it, so
the database host lives in one file on the host instead of in every unit's arguments. A cutover
rewrites the section's ``host`` and ``port`` lines and nothing else: the rest of the file (other
services, comments, options) is the user's and stays byte for byte. The file is replaced
atomically, with the previous content kept beside it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from recovery.errors import InputError

_SECTION = re.compile(r"\s*\[(?P<name>[^\]]+)\]\s*$")
_KEY = re.compile(r"\s*(?P<key>[A-Za-z_]+)\s*=\s*(?P<value>.*?)\s*$")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        raise InputError(f"database service file {path} does not exist",
                         "fix database_service_file in the services config, or create the file") from None


def read(path: str | os.PathLike[str], service: str) -> dict[str, str]:
    """The ``[service]`` section's keys."""
    found: dict[str, str] = {}
    current, seen = None, False
    for line in _lines(Path(path)):
        if m := _SECTION.match(line):
            current = m["name"].strip()
            seen = seen or current == service
        elif current == service and (k := _KEY.match(line)):
            found[k["key"].lower()] = k["value"]
    if not seen:
        raise InputError(f"database service file {path} has no [{service}] section", "add it, or fix database_service")
    return found


def repoint(path: str | os.PathLike[str], service: str, host: str, port: int, keep_as: str | os.PathLike[str]) -> dict[str, str]:
    """Set ``host`` and ``port`` of ``[service]``; the old file is kept at ``keep_as``. Returns the old keys."""
    p = Path(path)
    lines = _lines(p)
    old = read(p, service)  # refuses a file without the section
    want = {"host": host, "port": str(port)}
    out: list[str] = []
    current, written = None, set()

    def finish_section() -> None:
        if current == service:
            out.extend(f"{k}={v}\n" for k, v in want.items() if k not in written)

    for line in lines:
        if m := _SECTION.match(line):
            finish_section()
            current = m["name"].strip()
        elif current == service and (k := _KEY.match(line)) and k["key"].lower() in want:
            key = k["key"].lower()
            out.append(f"{key}={want[key]}\n")
            written.add(key)
            continue
        out.append(line if line.endswith("\n") else line + "\n")
    finish_section()
    Path(keep_as).write_bytes(p.read_bytes())
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(out))
    os.chmod(tmp, p.stat().st_mode & 0o777)
    tmp.replace(p)
    return old


__all__ = ["read", "repoint"]
