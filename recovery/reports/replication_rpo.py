"""The database's continuous RPO: Aurora global replication lag and the latest restorable time.

The PostgreSQL RPO (1 minute in the stack files' ``xai-dr:objectives``) rests on Aurora global
replication, not on the hourly dumps. `status` and `metrics` both read it here, and both judge it by
the rule below (the one place it is written down):

replication lag   CloudWatch ``AuroraGlobalDBRPOLag`` (AWS/RDS, ms) of the SECONDARY cluster, asked
                  in the secondary's region: the Maximum of the newest 1-minute datapoint of the last
                  3 minutes. The secondary is this stack's own cluster unless this site's database
                  is the writer, then the peer stack's. So the DR stack asks only its own region,
                  and works with the primary region gone.
                  green  lag <= RPO / 2
                  yellow RPO / 2 < lag <= RPO, or unknown (no datapoint, the region does not answer,
                         the peer's outputs are unreadable): never green without a measurement
                  red    lag > RPO
latest restorable DescribeDBClusters ``LatestRestorableTime`` of this stack's own cluster, in its own
time              region; age = now - that time. Aurora's normally trails by up to 5 minutes
                  (RESTORABLE_ALLOWANCE_S), so the same thresholds apply to age - 5 min:
                  green age <= 5 min + RPO / 2; yellow up to 5 min + RPO, or unknown; red beyond.

RPO = ``RECOVERY_DB_RPO_SECONDS`` when set (> 0), else the stack's postgresql ``rpoMinutes``.
Without either, nothing is judged (yellow: no objective to hold it to).

Nothing here changes anything; reads are one attempt each (a lost region is an answer, not a wait).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from recovery import knobs
from recovery.aws import client, error_code
from recovery.errors import RecoveryError
from recovery.stack import StackOutputs, load_outputs

LAG_METRIC, LAG_NAMESPACE = "AuroraGlobalDBRPOLag", "AWS/RDS"
YELLOW_FRACTION = 0.5  # of the RPO: half of it gone is the warning
RESTORABLE_ALLOWANCE_S = 300.0  # Aurora's LatestRestorableTime normally trails by up to 5 minutes
LAG_WINDOW_S = 180  # the newest 1-minute datapoint of the last 3 minutes
GREEN, YELLOW, RED = "green", "yellow", "red"


@dataclass
class Measure:
    """One judged value: seconds (None = unknown, with ``reason``), its level and why."""

    seconds: float | None
    level: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RpoReading:
    rpo_s: float | None
    rpo_source: str
    lag: Measure
    restorable: Measure


def rpo_seconds(outputs: StackOutputs) -> tuple[float | None, str]:
    """(the replication RPO in seconds, where it comes from)."""
    override = knobs.value("RECOVERY_DB_RPO_SECONDS")
    if override > 0:
        return override, "RECOVERY_DB_RPO_SECONDS"
    v = ((outputs.objectives or {}).get("postgresql") or {}).get("rpo_minutes")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v) * 60, "postgresql RPO objective"
    return None, "no postgresql RPO objective"


def judge(seconds: float | None, rpo_s: float | None, allowance_s: float = 0.0) -> str:
    """The rule: green within half the RPO (after the allowance), yellow within it or unknown, red beyond."""
    if seconds is None or rpo_s is None:
        return YELLOW
    excess = seconds - allowance_s
    return GREEN if excess <= rpo_s * YELLOW_FRACTION else YELLOW if excess <= rpo_s else RED


def _err(exc: BaseException) -> str:
    if isinstance(exc, RecoveryError):
        return exc.problem
    return error_code(exc) or type(exc).__name__


def secondary_of(outputs: StackOutputs, site_role: str) -> tuple[StackOutputs | None, str | None]:
    """The stack whose cluster is the global database's secondary as this site sees it: the peer when
    this site's database is the writer, else this one. (None, why) when the peer cannot be read."""
    if site_role != "writer":
        return outputs, None
    try:
        return load_outputs(outputs.peer_stack), None
    except RecoveryError as exc:
        return None, f"the peer stack {outputs.peer_stack}'s outputs are unreadable ({exc.problem})"


def read_lag_s(secondary: StackOutputs, now: datetime) -> tuple[float | None, str | None, str | None]:
    """(lag seconds, datapoint time, why unknown) of the secondary's AuroraGlobalDBRPOLag, in its region."""
    try:
        pts = client("cloudwatch", secondary.region, attempts=1).get_metric_statistics(
            Namespace=LAG_NAMESPACE, MetricName=LAG_METRIC,
            Dimensions=[{"Name": "DBClusterIdentifier", "Value": secondary.db_cluster_id}],
            StartTime=now - timedelta(seconds=LAG_WINDOW_S), EndTime=now, Period=60,
            Statistics=["Maximum"]).get("Datapoints", [])
    except Exception as exc:  # noqa: BLE001 - the region does not answer: unknown, said so
        return None, None, f"CloudWatch in {secondary.region} did not answer ({_err(exc)})"
    if not pts:
        return None, None, (f"no {LAG_METRIC} datapoint for {secondary.db_cluster_id} in {secondary.region} in the "
                            f"last {LAG_WINDOW_S // 60} min (is it replicating?)")
    newest = max(pts, key=lambda p: p["Timestamp"])
    return float(newest["Maximum"]) / 1000.0, newest["Timestamp"].isoformat(), None


def read_restorable(outputs: StackOutputs, now: datetime) -> tuple[datetime | None, str | None]:
    """(LatestRestorableTime of this stack's cluster, why unknown), asked in its region."""
    try:
        clusters = client("rds", outputs.region, attempts=1).describe_db_clusters(
            DBClusterIdentifier=outputs.db_cluster_id)["DBClusters"]
    except Exception as exc:  # noqa: BLE001
        return None, f"RDS in {outputs.region} did not answer ({_err(exc)})"
    t = clusters[0].get("LatestRestorableTime") if clusters else None
    if t is None:
        return None, f"{outputs.db_cluster_id} reports no LatestRestorableTime"
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)), None


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def _lag_measure(outputs: StackOutputs, site_role: str, rpo_s: float | None, limits: str, now: datetime) -> Measure:
    secondary, why = secondary_of(outputs, site_role)
    if secondary is None:
        return Measure(None, YELLOW, f"replication lag unknown: {why}; {limits}", {"reason": why})
    lag_s, at, why = read_lag_s(secondary, now)
    data: dict[str, Any] = {"secondary_stack": secondary.stack, "secondary_cluster": secondary.db_cluster_id,
                            "region": secondary.region, "lag_seconds": lag_s, "datapoint_at": at,
                            "rpo_seconds": rpo_s}
    where = f"{secondary.db_cluster_id} ({secondary.region})"
    if lag_s is None:
        data["reason"] = why
        return Measure(None, YELLOW, f"replication lag unknown: {why}; {limits}", data)
    level = judge(lag_s, rpo_s)
    over = " - over the RPO: a failover now would lose that much; check replication" if level == RED else ""
    return Measure(lag_s, level, f"{LAG_METRIC} {_fmt(lag_s)} on {where}; {limits}{over}", data)


def _restorable_measure(outputs: StackOutputs, rpo_s: float | None, now: datetime) -> Measure:
    t, why = read_restorable(outputs, now)
    limits = (f"green within {_fmt(RESTORABLE_ALLOWANCE_S + rpo_s * YELLOW_FRACTION)}, red beyond "
              f"{_fmt(RESTORABLE_ALLOWANCE_S + rpo_s)}" if rpo_s else "no RPO to judge it by")
    if t is None:
        return Measure(None, YELLOW, f"latest restorable time unknown: {why}; {limits}", {"reason": why})
    age = max(0.0, (now - t).total_seconds())
    level = judge(age, rpo_s, RESTORABLE_ALLOWANCE_S)
    return Measure(age, level, f"{outputs.db_cluster_id} restorable to {t.isoformat(timespec='seconds')} "
                   f"({_fmt(age)} ago); {limits}",
                   {"cluster": outputs.db_cluster_id, "latest_restorable_time": t.isoformat(), "age_seconds": age,
                    "allowance_seconds": RESTORABLE_ALLOWANCE_S, "rpo_seconds": rpo_s})


def read(outputs: StackOutputs, site_role: str | None = None, now: datetime | None = None) -> RpoReading:
    """Both measures, judged. ``site_role`` is this site's database role (recovery/reports/sites.py
    ``database_role``: writer, standby, fenced, unreachable); it is asked when not given."""
    now = now or datetime.now(timezone.utc)
    if site_role is None:
        from recovery.reports.sites import database_role

        site_role, _ = database_role(outputs)
    rpo_s, source = rpo_seconds(outputs)
    limits = (f"RPO {_fmt(rpo_s)} ({source}): green within {_fmt(rpo_s * YELLOW_FRACTION)}" if rpo_s
              else f"not judged: {source}")
    return RpoReading(rpo_s, source, _lag_measure(outputs, site_role, rpo_s, limits, now),
                      _restorable_measure(outputs, rpo_s, now))


__all__ = ["RpoReading", "Measure", "read", "judge", "rpo_seconds", "secondary_of", "LAG_METRIC",
           "RESTORABLE_ALLOWANCE_S", "YELLOW_FRACTION"]
