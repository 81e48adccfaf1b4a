"""One backup age limit (recovery/backups/age.py): `status` and `verify` give the same verdict.

Issue 18: status judged the same backup against 60 min and verify against 90 min. The stack and the
catalogue are stand-ins here: only the schedule and the backup's time matter to the verdict.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from recovery.backups import verify
from recovery.backups.age import age_limit_seconds
from recovery.catalog import Entry
from recovery.reports import status

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
SCHEDULE = {"db": 60, "chain": 360}  # the plan's: hourly database, 6-hourly chain (Pulumi.*.yaml)
OUTPUTS: Any = SimpleNamespace(stack="local", backup_bucket_name="vault", objectives={},
                               interval_minutes=lambda kind: SCHEDULE.get(kind))


def test_the_limit_is_the_interval_and_half_of_it() -> None:
    assert age_limit_seconds(OUTPUTS, "db") == 90 * 60
    assert age_limit_seconds(OUTPUTS, "chain") == 9 * 3600
    assert age_limit_seconds(OUTPUTS, "config") is None  # not scheduled: no limit


@pytest.mark.parametrize("kind", ["db", "chain"])
@pytest.mark.parametrize("offset_s", [-3600, -60, 0, 60, 3600])
def test_status_and_verify_agree_on_the_same_backup(kind: str, offset_s: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    age = SCHEDULE[kind] * 90 + offset_s  # around the limit (1.5 x the interval in seconds)
    m = SimpleNamespace(kind=kind, key=f"backups/{kind}/b", name="b", time=NOW - timedelta(seconds=age))

    class OneBackup:  # the catalogue holds this one backup of every kind, never verified yet
        def __init__(self, *_: Any) -> None: ...

        def recent(self, k: str, _since: datetime) -> list[Entry]:
            return [Entry(m)] if k == kind else []  # type: ignore[arg-type]

    monkeypatch.setattr(status, "Catalog", OneBackup)
    lines, _ = status.check_backups(OUTPUTS, None, NOW)
    status_ok = {ln.check: ln.level for ln in lines}[kind] == status.GREEN
    verify_ok = verify.age_check(kind, m, verify.default_max_age_minutes(OUTPUTS, kind), NOW).ok  # type: ignore[arg-type]
    assert status_ok == verify_ok == (offset_s <= 0)
