"""Option types and checks that run while click parses or before a command does anything: durations,
URLs and writable directories, each refused in one line that names the option and what it accepts."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import click

from recovery.errors import InputError
from recovery.knobs import is_http_url, shown


def parse_duration(text: str, *, allow_zero: bool = False, max_s: float = 7 * 86400) -> float:
    """'15m', '90s', '1h', '2d', '300' (seconds) -> seconds, within (0 or above 0)..max_s."""
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if t and t[-1] in mult:
            value = float(t[:-1]) * mult[t[-1]]
        else:
            value = float(t)
    except ValueError:
        raise InputError(f"'{text}' is not a duration", "use e.g. 15m, 90s, 1h or seconds") from None
    low = "0" if allow_zero else "more than 0"
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or value > max_s:
        raise InputError(f"duration '{text}' is out of range", f"use {low} up to {max_s / 3600:g}h, e.g. 15m")
    return value


class Duration(click.ParamType):
    """A duration option, converted while click parses, so a bad one stops the command before it starts
    and the one-line message names the option."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False, max_s: float = 7 * 86400) -> None:
        self.allow_zero = allow_zero
        self.max_s = max_s

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value), allow_zero=self.allow_zero, max_s=self.max_s)
        except InputError as err:
            self.fail(f"{err.problem} ({err.fix})", param, ctx)


DURATION = Duration()


class Url(click.ParamType):
    """An http(s) URL option (a node API, a reference node), checked while click parses."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not is_http_url(str(value)):
            self.fail(f"{shown(str(value))} is not an http(s) URL such as http://host:8080", param, ctx)
        return str(value)


URL = Url()


def check_writable_dir(path: str, option: str, fix: str | None = None) -> None:
    """InputError unless `path` is, or can be created as, a directory we can write into. Probed with a
    temporary file that is removed at once (root passes every permission test but a read-only mount),
    and nothing is created when the directory does not exist yet."""
    p = Path(path).absolute()
    probe_in = p
    while not probe_in.exists():
        if probe_in.is_symlink():
            raise InputError(f"{option} {path} is a dangling symlink", "point it at a directory or pass another")
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        problem = (f"{option} {path} is not a directory" if probe_in == p
                   else f"cannot create {option} {path}: {probe_in} is not a directory")
        raise InputError(problem, fix or f"pass a directory for {option}")
    try:
        tempfile.TemporaryFile(dir=probe_in).close()
    except OSError as exc:
        where = "" if probe_in == p else f" (it would be created in {probe_in})"
        raise InputError(f"{option} {path} is not writable{where}: {exc.strerror}",
                         fix or f"pass a writable directory for {option}, or fix its permissions") from None
