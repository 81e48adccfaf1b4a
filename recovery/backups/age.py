"""How old the newest backup of a kind may be: the one rule `status`, `verify` and `metrics` apply.

    limit = interval + grace,  grace = interval / 2   (backup.intervalMinutes, the plan's schedule)

hourly database backups: 90 min; 6-hourly chain backups: 9 h; config (where scheduled): per its interval.

Why the schedule and not the component's RPO objective: a backup's age is bounded by how often the
schedule takes one, and the database's 1-minute RPO is met by replication and PITR (status' database
lines), not by hourly dumps, so taking max(RPO, interval) only ever yielded the interval. Why half an
interval of grace: a run that starts late or takes long still passes, a missed run fails. One rule,
so that `status` and `verify` never give different verdicts for the same backup (issue 18).
"""

from __future__ import annotations

from recovery.stack import StackOutputs

GRACE_FRACTION = 0.5  # of the interval: a late run passes, a missed one does not


def age_limit_seconds(outputs: StackOutputs, kind: str) -> float | None:
    """The age limit of `kind`'s newest backup, or None when the stack schedules no such backup."""
    interval = outputs.interval_minutes(kind)
    return interval * 60 * (1 + GRACE_FRACTION) if interval else None


def within_limit(age_seconds: float, limit_seconds: float | None) -> bool:
    """The verdict: fresh enough (no schedule means no limit to miss)."""
    return limit_seconds is None or age_seconds <= limit_seconds


__all__ = ["GRACE_FRACTION", "age_limit_seconds", "within_limit"]
