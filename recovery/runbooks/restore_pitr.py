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

The source cluster is only ever *described*: nothing here modifies or deletes it.

The restorable window: RDS returns both bounds in DescribeDBClusters. When a bound is missing (the
emulator may omit them), it is computed as AWS defines it: earliest = max(cluster creation time,
now - BackupRetentionPeriod days); latest = now - 5 minutes (Aurora's latest restorable time trails
the present by up to five minutes). The window is checked here, before any call that creates
anything, because the emulator does not check it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from recovery import knobs
from recovery.adapters import aurora
from recovery.aws import aws_error, client
from recovery.errors import AwsAccessError, DeadlineError, InputError
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
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


MAX_CLUSTER_ID = 63
_CLUSTER_ID = re.compile(r"[A-Za-z](?:-?[A-Za-z0-9])*")  # RDS: letter first, no "--", no trailing "-"


def check_cluster_id(name: str) -> str:
    if len(name) > MAX_CLUSTER_ID or not _CLUSTER_ID.fullmatch(name):
        raise InputError(f"--new-cluster '{name[:70]}' is not a valid RDS cluster identifier",
                         f"use 1..{MAX_CLUSTER_ID} letters, digits and single hyphens, starting with a letter")
    return name


def default_name(source: str, t: datetime) -> str:
    # the time suffix tells restores apart, so the source's name is what gets cut
    suffix = f"-pitr-{t.strftime('%Y%m%d%H%M%S')}"
    return re.sub(r"-+", "-", source)[:MAX_CLUSTER_ID - len(suffix)].rstrip("-") + suffix


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
class PitrRestore:
    outputs: StackOutputs
    opts: PitrOptions
    rds: Any

    @property
    def source(self) -> str:
        return self.outputs.db_cluster_id

    @property
    def new(self) -> str:
        return self.opts.new_cluster or default_name(self.source, self.opts.to_time)

    @property
    def instance(self) -> str:
        return f"{self.new}-1"[:63]

    def _cluster(self, ident: str) -> dict[str, Any] | None:
        return aurora.describe_cluster(self.rds, ident)

    def _instance(self, ident: str) -> dict[str, Any] | None:
        return aurora.describe_instance(self.rds, ident)

    def source_cluster(self) -> dict[str, Any]:
        c = self._cluster(self.source)
        if c is None:
            raise AwsAccessError(f"source cluster {self.source} not found in {self.outputs.region}",
                                 "check the stack's db_cluster_id output and the region")
        return c

    def check_window(self, ctx: StepContext | None = None) -> dict[str, Any]:
        c = self.source_cluster()
        earliest, latest, how = restorable_window(c)
        t = self.opts.to_time
        if not earliest <= t <= latest:
            raise InputError(f"--to-time {fmt(t)} is outside the restorable window of {self.source}: "
                             f"[{fmt(earliest)}, {fmt(latest)}] ({how})", "pick a time inside that window")
        existing = self._cluster(self.new)
        tag = (existing or {}).get("TagList") or []
        ours = ctx is not None and {"Key": "xai-recovery-run", "Value": ctx.run_id} in tag
        if existing is not None and not ours:
            raise InputError(f"cluster {self.new} already exists", "pass another --new-cluster name")
        return {"source": self.source, "to_time": fmt(t), "window": [fmt(earliest), fmt(latest)], "window_source": how}

    # -- actions and checks
    def restored(self, ctx: StepContext) -> dict[str, Any] | bool:
        c = self._cluster(self.new)
        return {"cluster": self.new, "status": c.get("Status")} if c else False

    def restore_cluster(self, ctx: StepContext) -> dict[str, Any]:
        src = self.source_cluster()
        kw: dict[str, Any] = {
            "DBClusterIdentifier": self.new, "SourceDBClusterIdentifier": self.source,
            "RestoreToTime": self.opts.to_time, "RestoreType": "full-copy",
            "Tags": [{"Key": "xai-recovery-run", "Value": ctx.run_id},
                     {"Key": "xai-recovery-restored-from", "Value": f"{self.source}@{fmt(self.opts.to_time)}"}],
        }
        if src.get("DBSubnetGroup"):
            kw["DBSubnetGroupName"] = src["DBSubnetGroup"]
        groups = [g["VpcSecurityGroupId"] for g in src.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
        if groups:
            kw["VpcSecurityGroupIds"] = groups
        if src.get("Port"):
            kw["Port"] = int(src["Port"])
        try:
            c = self.rds.restore_db_cluster_to_point_in_time(**kw)["DBCluster"]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"restoring {self.source} to {fmt(self.opts.to_time)}") from None
        return {"cluster": self.new, "status": c.get("Status"), "engine": c.get("Engine")}

    def has_instance(self, ctx: StepContext) -> dict[str, Any] | bool:
        i = self._instance(self.instance)
        return {"instance": self.instance} if i else False

    def create_instance(self, ctx: StepContext) -> dict[str, Any]:
        src = self.source_cluster()
        cls = self.opts.instance_class
        if not cls:
            for m in src.get("DBClusterMembers", []):
                inst = self._instance(m["DBInstanceIdentifier"])
                if inst and (m.get("IsClusterWriter") or not cls):
                    cls = inst.get("DBInstanceClass")
        cls = cls or "db.r6g.large"
        try:
            self.rds.create_db_instance(DBInstanceIdentifier=self.instance, DBClusterIdentifier=self.new,
                                        Engine=src.get("Engine", "aurora-postgresql"), DBInstanceClass=cls,
                                        Tags=[{"Key": "xai-recovery-run", "Value": ctx.run_id}])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"creating instance {self.instance} in {self.new}") from None
        return {"instance": self.instance, "class": cls}

    def wait_available(self, ctx: StepContext) -> dict[str, Any]:
        t0 = time.monotonic()
        last = ""
        while True:
            c = self._cluster(self.new) or {}
            i = self._instance(self.instance) or {}
            cs, is_ = c.get("Status", "missing"), i.get("DBInstanceStatus", "missing")
            state = f"cluster {cs}, instance {is_}"
            if state != last:
                ctx.info(f"{self.new}: {state} after {time.monotonic() - t0:.0f}s")
                last = state
            if cs == "available" and is_ == "available":
                return {"cluster_status": cs, "instance_status": is_, "waited_s": round(time.monotonic() - t0, 3)}
            if time.monotonic() - t0 >= self.opts.wait_timeout_s:
                raise DeadlineError(f"{self.new} is not available after {self.opts.wait_timeout_s:g}s ({state})",
                                    "rerun the same command to keep waiting; check the RDS console for events")
            time.sleep(self.opts.poll_s)

    def report(self, ctx: StepContext) -> dict[str, Any]:
        c = self._cluster(self.new) or {}
        return {"cluster": self.new, "endpoint": c.get("Endpoint"), "reader_endpoint": c.get("ReaderEndpoint"),
                "port": c.get("Port") or self.outputs.db_port, "source_endpoint": self.source_cluster().get("Endpoint")}

    def runbook(self) -> Runbook:
        steps = [
            Step("check-window", lambda ctx: self.check_window(ctx),
                 touches=f"nothing (describes {self.source})"),
            Step("restore-cluster", self.restore_cluster,
                 touches=f"creates cluster {self.new} from {self.source} at {fmt(self.opts.to_time)}", check=self.restored),
            Step("create-instance", self.create_instance, touches=f"creates instance {self.instance}", check=self.has_instance),
            Step("wait-available", self.wait_available, touches=f"nothing (waits up to {self.opts.wait_timeout_s:g}s)"),
            Step("report", self.report, touches="nothing (prints the endpoint and the repoint steps)"),
        ]
        return Runbook(NAME, steps,
                       Target(self.new, production=self.outputs.production), destructive=False,
                       params={"stack": self.outputs.stack, "source": self.source, "to_time": fmt(self.opts.to_time),
                               "new_cluster": self.new})


def next_steps(outputs: StackOutputs, detail: dict[str, Any], to_time: str) -> list[str]:
    """What the operator does next, from the report step's detail."""
    ep, rep, port, new = detail.get("endpoint"), detail.get("reader_endpoint"), detail.get("port"), detail.get("cluster")
    o = outputs
    return [
        f"New cluster {new} (restored to {to_time}) is available:",
        f"  writer endpoint {ep}:{port}",
        f"  reader endpoint {rep}:{port}",
        "To repoint clients:",
        f"  1. check the data: psql -h {ep} -p {port} -U {o.db_username} -d {o.db_name} "
        "-c 'SELECT count(*), max(height) FROM blockchain'",
        "  2. stop the dependents: systemctl stop xai-node; systemctl stop xai-explorer",
        f"  3. point the database host at {ep} (service config or the DB DNS name; it replaces "
        f"{detail.get('source_endpoint')}); the master password is unchanged (secret {o.db_secret_arn})",
        "  4. start the dependents: systemctl start xai-node; systemctl start xai-explorer",
        f"  5. make the infra config adopt {new}; the source cluster {o.db_cluster_id} was not modified - "
        "delete it only once the new one is verified",
    ]


def restore_pitr(outputs: StackOutputs, opts: PitrOptions, store: JournalStore, *, yes: bool = False,
                 dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    r = PitrRestore(outputs, opts, client("rds", outputs.region))
    rb = r.runbook()
    prev = rb.resumable(store)  # a rerun of an unfinished restore may find its own cluster
    if prev is None:
        r.check_window()  # refuse a bad time before anything, dry run included
    return execute(rb, store, yes=yes, dry_run=dry_run, reporter=reporter)
