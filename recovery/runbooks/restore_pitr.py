"""`recovery restore pitr`: Aurora point-in-time restore into a NEW cluster.

Steps:

1. ``check-window``    the source cluster exists; --to-time lies in its restorable window
                       [EarliestRestorableTime, LatestRestorableTime]; the new cluster name is free.
2. ``restore-cluster`` ``restore_db_cluster_to_point_in_time`` (full copy) into the new cluster, with
                       the source's subnet group, security groups and port, tagged with this run.
3. ``create-instance`` an instance in the new cluster (Aurora clusters serve nothing without one),
                       with the source writer's instance class unless --instance-class.
4. ``wait-available``  poll until the cluster and the instance are ``available`` (deadline).
5. ``report``          the new endpoints and the steps to repoint clients (printed and journaled).

The source cluster is only ever *described*: nothing here modifies or deletes it. Steps 3-5 and the
placement of the new cluster are shared with `restore snapshot` (runbooks/new_cluster.py).

The restorable window: RDS returns both bounds in DescribeDBClusters. When a bound is missing (the
emulator may omit them), it is computed as AWS defines it: earliest = max(cluster creation time,
now - BackupRetentionPeriod days); latest = now - 5 minutes (Aurora's latest restorable time trails
the present by up to five minutes). The window is checked here, before any call that creates
anything, because the emulator does not check it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from recovery import knobs
from recovery.aws import aws_error, client
from recovery.errors import InputError
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
from recovery.runbooks import new_cluster
from recovery.runbooks.new_cluster import NewClusterRestore, check_cluster_id, name_with_suffix
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import StackOutputs

NAME = "restore-pitr"
LATEST_LAG = timedelta(minutes=5)


@dataclass
class PitrOptions:
    to_time: datetime
    new_cluster: str | None = None
    instance_class: str | None = None
    wait_timeout_s: float = 3600.0
    poll_s: float = field(default_factory=lambda: knobs.value("RECOVERY_RDS_POLL_SECONDS"))
    cutover: bool = False  # then verify the new cluster and repoint the clients (runbooks/cutover.py)

    def __post_init__(self) -> None:
        if self.new_cluster is not None:  # before anything is read
            check_cluster_id(self.new_cluster)


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without a zone is taken as UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--to-time '{text}' is not an ISO 8601 time", "use e.g. 2026-11-25T17:00:00Z") from None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_name(source: str, t: datetime) -> str:
    return name_with_suffix(source, f"-pitr-{t.strftime('%Y%m%d%H%M%S')}")


def restorable_window(cluster: dict[str, Any], now: datetime | None = None) -> tuple[datetime, datetime, str]:
    """(earliest, latest, source of the bounds) for a DescribeDBClusters entry."""
    now = now or datetime.now(timezone.utc)
    earliest, latest = cluster.get("EarliestRestorableTime"), cluster.get("LatestRestorableTime")
    how = "reported by RDS"
    if earliest is None:
        created = cluster.get("ClusterCreateTime") or now
        days = int(cluster.get("BackupRetentionPeriod") or 1)
        earliest = max(created, now - timedelta(days=days))
        how = "computed from creation time and backup retention"
    if latest is None:
        latest = now - LATEST_LAG
        how = "computed" if how != "reported by RDS" else "earliest reported, latest computed"
    return earliest.astimezone(timezone.utc), latest.astimezone(timezone.utc), how


@dataclass
class PitrRestore(NewClusterRestore):
    outputs: StackOutputs
    opts: PitrOptions
    rds: Any
    services: ServiceControl | None = None

    @property
    def new(self) -> str:
        return self.opts.new_cluster or default_name(self.source, self.opts.to_time)

    def check_window(self, ctx: StepContext | None = None) -> dict[str, Any]:
        c = self.source_cluster()
        earliest, latest, how = restorable_window(c)
        t = self.opts.to_time
        if not earliest <= t <= latest:
            raise InputError(f"--to-time {fmt(t)} is outside the restorable window of {self.source}: "
                             f"[{fmt(earliest)}, {fmt(latest)}] ({how})", "pick a time inside that window")
        self.check_name_free(ctx)
        return {"source": self.source, "to_time": fmt(t), "window": [fmt(earliest), fmt(latest)], "window_source": how}

    def restore_cluster(self, ctx: StepContext) -> dict[str, Any]:
        kw = self.placement(self.source_cluster(), ctx, f"{self.source}@{fmt(self.opts.to_time)}")
        kw.update(SourceDBClusterIdentifier=self.source, RestoreToTime=self.opts.to_time, RestoreType="full-copy")
        try:
            c = self.rds.restore_db_cluster_to_point_in_time(**kw)["DBCluster"]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"restoring {self.source} to {fmt(self.opts.to_time)}") from None
        return {"cluster": self.new, "status": c.get("Status"), "engine": c.get("Engine")}

    def runbook(self) -> Runbook:
        steps = [
            Step("check-window", lambda ctx: self.check_window(ctx),
                 touches=f"nothing (describes {self.source})"),
            Step("restore-cluster", self.restore_cluster,
                 touches=f"creates cluster {self.new} from {self.source} at {fmt(self.opts.to_time)}", check=self.restored),
            *self.common_steps(),
        ]
        return Runbook(NAME, steps,
                       Target(self.new, production=self.outputs.production), destructive=self.opts.cutover,
                       params={"stack": self.outputs.stack, "source": self.source, "to_time": fmt(self.opts.to_time),
                               "new_cluster": self.new, "cutover": self.opts.cutover},
                       stakes=self.stakes(f"restored to {fmt(self.opts.to_time)}", fmt(self.opts.to_time)))


def next_steps(outputs: StackOutputs, journal: Journal, to_time: str) -> list[str]:
    """What the operator does next, from the journal's report (and cutover) details."""
    return new_cluster.next_steps(outputs, journal.step("report").detail, f"restored to {to_time}",
                                  cutover=new_cluster.cutover_detail(journal))


def restore_pitr(outputs: StackOutputs, opts: PitrOptions, store: JournalStore, *, yes: bool = False,
                 dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    # a bad services config is refused before anything is read
    services = ServiceControl(ServicesConfig.for_stack(outputs)) if opts.cutover else None
    r = PitrRestore(outputs, opts, client("rds", outputs.region), services)
    rb = r.runbook()
    prev = rb.resumable(store)  # a rerun of an unfinished restore may find its own cluster
    if prev is None:
        r.check_window()  # refuse a bad time before anything, dry run included
    cut = r.cutover()
    if cut is not None:
        cut.preflight()
    return execute(rb, store, yes=yes, dry_run=dry_run, reporter=reporter, on_failure=cut.undo if cut else None)
