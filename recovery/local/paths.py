"""Where the local environment keeps its files, and reading them back.

A leaf: it imports no other module of recovery/local/, so the environment (`environment.py`), the
emulator's daemon (`aws_daemon.py`), the DR site (`dr_site.py`) and the cache (`redis_cache.py`)
can all find the directory and its state without importing one another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from recovery.errors import LocalEnvError
from recovery.stack import local_dir as stack_local_dir

STATE_FILE = "state.json"
# What the emulator's hooks act on (databases, sites, health check URLs), written by `local up`
# and read by the daemon at call time.
HOOKS_FILE = "hooks.json"


def local_dir(path: str | os.PathLike[str] | None = None) -> Path:
    # recovery/stack.py owns the default: `--stack local` finds its outputs there without this package
    return stack_local_dir(path)


def read_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    d = local_dir(path)
    try:
        return dict(json.loads((d / STATE_FILE).read_text()))
    except FileNotFoundError:
        raise LocalEnvError(f"no local environment in {d}", "start one with `recovery local up`") from None
    except ValueError as exc:
        raise LocalEnvError(f"{d}/{STATE_FILE} is unreadable ({exc})", "run `recovery local down` then `recovery local up`") from None


def read_hooks(state_dir: Path) -> dict[str, Any]:
    """hooks.json, or {} while `local up` has not written it yet."""
    try:
        return dict(json.loads((state_dir / HOOKS_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def write_json(path: Path, doc: Any, mode: int = 0o600) -> None:
    """Replace ``path`` atomically (readers never see half a file), private by default."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True, default=str)
    tmp.replace(path)
