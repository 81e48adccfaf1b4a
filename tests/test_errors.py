"""Exit codes are how cron, systemd and CI tell failures apart: one code per error class."""

from __future__ import annotations

import recovery.cli  # noqa: F401 - loads every command, so every error class is defined
from recovery.errors import RecoveryError, with_stack


def _classes(base: type[RecoveryError]) -> list[type[RecoveryError]]:
    out = []
    for sub in base.__subclasses__():
        out += [sub, *_classes(sub)]
    return out


def test_every_error_class_has_its_own_exit_code() -> None:
    by_code: dict[int, list[str]] = {}
    for cls in _classes(RecoveryError):
        if "exit_code" in vars(cls):  # a class that only narrows a message keeps its parent's code
            by_code.setdefault(cls.exit_code, []).append(cls.__name__)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert not shared, f"exit codes reused: {shared}"
    assert not set(by_code) & {0, 1, 2}, "0 is success, 1 an unexpected error, 2 a usage error"
    assert len(by_code) >= 28


def test_hints_name_the_stack_in_use() -> None:
    """Every `recovery ...` a hint quotes gets --stack (issue 18); local commands and rerun advice do not."""
    line = RecoveryError("no backup", "take one with `recovery backup db` or see `recovery list --kind db`").line()
    assert with_stack(line, "local") == ("no backup - take one with `recovery backup db --stack local` or see "
                                         "`recovery list --kind db --stack local`")
    assert with_stack("x - see `recovery sites --stack local-dr`", "local") == "x - see `recovery sites --stack local-dr`"
    kept = "x - `recovery local down && recovery local up`, or rerun with --yes"
    assert with_stack(kept, "local") == kept
    assert with_stack("x - use `recovery list`", None) == "x - use `recovery list`"  # no stack in play
