"""Exit codes are how cron, systemd and CI tell failures apart: one code per error class."""

from __future__ import annotations

import recovery.cli  # noqa: F401 - loads every command, so every error class is defined
from recovery.errors import RecoveryError


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
