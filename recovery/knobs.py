"""Environment variables that tune the tool: one table, one parser, one-line errors.

Every reader asks `value(NAME)` when it needs the value, so a test or a long-lived process sees the
current environment, not the one at import time. The CLI calls `check_all()` before a command does
anything, so a bad value stops the run before a lock, a snapshot or an upload, and the message names
the variable and its valid range. A knob that is unset or empty takes its default.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from recovery.errors import InputError


@dataclass(frozen=True)
class Knob:
    name: str
    kind: type  # int or float
    default: float
    low: float
    high: float
    unit: str

    def range_text(self) -> str:
        return f"{_num(self.low)}..{_num(self.high)}{' ' + self.unit if self.unit else ''}"

    def parse(self, text: str) -> float:
        """The value of `text`, or InputError naming the knob and its range."""
        what = "a whole number" if self.kind is int else "a number"
        bad = InputError(f"{self.name}={text[:40]!r} is not {what} in {self.range_text()}",
                         f"set {self.name} to {what} in {self.range_text()}, or unset it for {_num(self.default)}")
        try:
            # int('1e3') fails and float('nan') passes; both are refused here
            v = int(text.strip()) if self.kind is int else float(text.strip())
        except ValueError:
            raise bad from None
        if not math.isfinite(v) or not self.low <= v <= self.high:
            raise bad
        return v


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


KNOBS: dict[str, Knob] = {k.name: k for k in (
    # S3 multipart parts must be 5 MiB..5 GiB (the last part excepted); 10,000 parts max per object.
    Knob("RECOVERY_PART_SIZE_MB", int, 8, 5, 5120, "MiB"),
    # Each concurrent part holds one pooled connection of the client (recovery/aws.py MAX_POOL = 16).
    Knob("RECOVERY_UPLOAD_CONCURRENCY", int, 4, 1, 16, ""),
    # botocore's standard-mode `max_attempts`, which counts the retries after the first call; more
    # than 10 turns an outage into a long wait.
    Knob("RECOVERY_AWS_MAX_ATTEMPTS", int, 5, 1, 10, ""),
    # Per socket read (S3; other services wait at most 15 s); with the retries it bounds how long a
    # silent endpoint can stall a run.
    Knob("RECOVERY_AWS_READ_TIMEOUT_SECONDS", float, 30, 1, 300, "s"),
    Knob("RECOVERY_RDS_POLL_SECONDS", float, 15, 0.05, 300, "s"),
    Knob("RECOVERY_SYNC_POLL_SECONDS", float, 5, 0.05, 300, "s"),
    Knob("RECOVERY_DRILL_TIMEOUT_SECONDS", float, 120, 1, 86400, "s"),
    Knob("RECOVERY_DRILL_BLOCKS_AFTER_BACKUP", int, 3, 0, 1000, "blocks"),
    # The ingest rate a logical restore's RTO budget assumes when no large restore was measured here
    # (recovery/reports/rto_budget.py); 50 MB/s is what `make bench` measured for psql.
    Knob("RECOVERY_RESTORE_MB_PER_S", float, 50, 0.001, 100000, "MB/s"),
    # An unfinished run last active longer ago than this is history: a rerun starts afresh.
    Knob("RECOVERY_RESUME_WITHIN_HOURS", float, 24, 0, 8760, "h"),
    # issue 16: the replication RPO that `status` and `metrics` judge the database's replication lag
    # against; 0 = the stack's postgresql rpoMinutes objective. Tighter values let a test see
    # green -> yellow -> red in seconds.
    Knob("RECOVERY_DB_RPO_SECONDS", float, 0, 0, 86400, "s"),
)}


def value(name: str, environ: Mapping[str, str] | None = None) -> float:
    """The knob's current value (its default when unset or empty)."""
    knob = KNOBS[name]
    text = (os.environ if environ is None else environ).get(name, "")
    return knob.default if not text.strip() else knob.parse(text)


def int_value(name: str, environ: Mapping[str, str] | None = None) -> int:
    return int(value(name, environ))


# boto3 reads these itself; a value that is not a URL would surface as a botocore ValueError mid-run.
ENDPOINT_PREFIX = "AWS_ENDPOINT_URL"


def check_endpoints(environ: Mapping[str, str] | None = None) -> None:
    """AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, when set, must be http(s)://HOST[:PORT][/path]."""
    env = os.environ if environ is None else environ
    for name in sorted(n for n in env if n == ENDPOINT_PREFIX or n.startswith(ENDPOINT_PREFIX + "_")):
        check_url(name, env[name], what="an AWS endpoint")


def is_http_url(text: str) -> bool:
    """http(s)://HOST[:PORT][/path] with a host and a port in 1..65535."""
    try:
        u = urlsplit(text.strip())
        return u.scheme in ("http", "https") and bool(u.hostname) and (u.port is None or 0 < u.port < 65536)
    except ValueError:  # .port raises it for a port that is not a number
        return False


def shown(text: str) -> str:
    """A value for a message; a URL may carry user:password@, so such a value is not shown."""
    return "(value not shown)" if "@" in text else repr(text[:60])


def check_url(name: str, text: str, *, what: str) -> None:
    if not is_http_url(text):
        raise InputError(f"{name}={shown(text)} is not an http(s) URL",
                         f"set {name} to {what} URL such as https://host:443 or unset it")


def check_all(environ: Mapping[str, str] | None = None) -> None:
    """Every knob and endpoint variable; raises InputError for the first bad one."""
    for name in KNOBS:
        value(name, environ)
    check_endpoints(environ)
