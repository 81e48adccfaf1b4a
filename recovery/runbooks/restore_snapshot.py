"""`recovery restore snapshot`: restore an Aurora cluster snapshot into a NEW cluster.

Steps:

1. ``check-snapshot``  the snapshot is a cluster snapshot of this site's cluster and ``available``;
                       the new cluster name is free.
2. ``restore-cluster`` ``restore_db_cluster_from_snapshot`` into the new cluster, with the source's
                       subnet group, security groups and port, tagged with this run.
3. ``create-instance``, 4. ``wait-available``, 5. ``report``: as `restore pitr` (runbooks/new_cluster.py).

Which snapshot: ``latest`` is the newest ``available`` cluster snapshot of the stack's cluster of any
type - manual, automated, and ``awsbackup``. An AWS Backup recovery point of an Aurora cluster IS a
cluster snapshot (SnapshotType ``awsbackup``) whose ARN is the recovery point's ARN, so a recovery
point of the site's backup plan (infra/aurora_backup.py) is restored by its ARN like any other
snapshot. DescribeDBClusterSnapshots returns awsbackup snapshots only when asked for that type, so
both lists are read. A snapshot is named by its identifier or its ARN.

A recovery point in the backup account's vault (or another region) cannot be restored from there
by this site's role: AWS Backup restores within the vault's account and region. It is copied back
into this site's vault first (an AWS Backup copy job, run in the backup account); the copy is then
this site's ``latest`` (or named by its ARN). The command refuses such an ARN naming that copy job.

The snapshot is resolved before the runbook is built, so the journal's params hold its ARN: a rerun
with ``latest`` after a newer snapshot appeared is a new run, not a resume of the old one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from recovery import knobs
from recovery.aws import aws_error, client
from recovery.errors import InputError, RefusedError
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
from recovery.runbooks import new_cluster
from recovery.runbooks.new_cluster import NewClusterRestore, check_cluster_id, name_with_suffix
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import StackOutputs

NAME = "restore-snapshot"
# automated snapshots are "rds:<cluster>-<date>", AWS Backup's "awsbackup:job-<id>"
_SNAPSHOT_ID = re.compile(r"[A-Za-z][A-Za-z0-9:-]{0,254}")
_SNAPSHOT_ARN = re.compile(r"arn:aws[a-z-]*:rds:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                           r"(?P<kind>[a-z-]+):(?P<id>[A-Za-z][A-Za-z0-9:-]*)")


@dataclass
class SnapshotOptions:
    snapshot: str = "latest"
    new_cluster: str | None = None
    instance_class: str | None = None
    wait_timeout_s: float = 3600.0
    poll_s: float = field(default_factory=lambda: knobs.value("RECOVERY_RDS_POLL_SECONDS"))
    cutover: bool = False  # then verify the new cluster and repoint the clients (runbooks/cutover.py)

    def __post_init__(self) -> None:  # before anything is read
        if self.new_cluster is not None:
            check_cluster_id(self.new_cluster)
        check_snapshot_name(self.snapshot)


def check_snapshot_name(text: str) -> str:
    if text == "latest":
        return text
    if text.startswith("arn:"):
        m = _SNAPSHOT_ARN.fullmatch(text)
        if m is None:
            raise InputError(f"--snapshot '{text[:120]}' is not an RDS snapshot ARN",
                             "use arn:aws:rds:REGION:ACCOUNT:cluster-snapshot:ID, an identifier, or 'latest'")
        if m["kind"] != "cluster-snapshot":
            raise InputError(f"--snapshot '{text[:120]}' is a {m['kind']}, not an Aurora cluster snapshot",
                             "pass a cluster-snapshot ARN (an AWS Backup recovery point of the cluster is one)")
        return text
    if not _SNAPSHOT_ID.fullmatch(text):
        raise InputError(f"--snapshot '{text[:70]}' is not a cluster snapshot identifier or ARN",
                         "use 'latest', an identifier such as rds:CLUSTER-2026-11-25-05-00, or an ARN")
    return text


def fmt(t: Any) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(t, datetime) else str(t or "?")


def snapshots_of(rds: Any, cluster: str) -> list[dict[str, Any]]:
    """Every cluster snapshot of ``cluster``: manual and automated, then AWS Backup's (asked for apart)."""
    seen: dict[str, dict[str, Any]] = {}
    pages = rds.get_paginator("describe_db_cluster_snapshots")
    for kind in ({}, {"SnapshotType": "awsbackup"}):
        try:
            for page in pages.paginate(DBClusterIdentifier=cluster, **kind):
                for s in page.get("DBClusterSnapshots", []):
                    seen.setdefault(s["DBClusterSnapshotArn"], dict(s))
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"listing the cluster snapshots of {cluster}") from None
    return list(seen.values())


def _created(s: dict[str, Any]) -> datetime:
    t = s.get("SnapshotCreateTime")
    return t if isinstance(t, datetime) else datetime.min.replace(tzinfo=timezone.utc)


def _copy_back_hint(o: StackOutputs, arn: str) -> str:
    return (f"copy it into this site's vault first (in that account: aws backup start-copy-job "
            f"--recovery-point-arn {arn} --source-backup-vault-name {o.backup_account_vault_name} "
            f"--destination-backup-vault-arn {o.backup_vault_arn} --iam-role-arn ROLE), then pass the copy's "
            "ARN or --snapshot latest")


def resolve(outputs: StackOutputs, rds: Any, wanted: str) -> dict[str, Any]:
    """The DescribeDBClusterSnapshots entry ``wanted`` names among the site cluster's snapshots."""
    source = outputs.db_cluster_id
    m = _SNAPSHOT_ARN.fullmatch(wanted)
    account = outputs.db_cluster_arn.split(":")[4]
    if m is not None and (m["account"] != account or m["region"] != outputs.region):
        where = "the backup account" if m["account"] == outputs.backup_account_id else f"account {m['account']}"
        where = where if m["account"] != account else f"region {m['region']}"
        raise InputError(f"snapshot {wanted} is in {where}, not in this site's account {account} / {outputs.region}",
                         _copy_back_hint(outputs, wanted))
    snaps = snapshots_of(rds, source)
    if wanted == "latest":
        ready = [s for s in snaps if s.get("Status") == "available"]
        if not ready:
            raise RefusedError(f"{source} has no available cluster snapshot ({len(snaps)} in other states)",
                               "wait for the backup plan's next recovery point, or use restore pitr")
        return max(ready, key=_created)
    key = "DBClusterSnapshotArn" if m is not None else "DBClusterSnapshotIdentifier"
    found = [s for s in snaps if str(s.get(key, "")).lower() == wanted.lower()]
    if not found:
        raise InputError(f"--snapshot {wanted} is not a cluster snapshot of {source} in {outputs.region}",
                         f"list them: aws rds describe-db-cluster-snapshots --db-cluster-identifier {source} "
                         "(and --snapshot-type awsbackup); or pass --snapshot latest")
    return found[0]


def default_name(source: str, snap: dict[str, Any]) -> str:
    t = _created(snap)
    return name_with_suffix(source, f"-snap-{t.strftime('%Y%m%d%H%M%S')}")


@dataclass
class SnapshotRestore(NewClusterRestore):
    outputs: StackOutputs
    opts: SnapshotOptions
    rds: Any
    snap: dict[str, Any]  # the resolved DescribeDBClusterSnapshots entry
    services: ServiceControl | None = None

    @property
    def new(self) -> str:
        return self.opts.new_cluster or default_name(self.source, self.snap)

    @property
    def arn(self) -> str:
        return str(self.snap["DBClusterSnapshotArn"])

    def describe(self) -> dict[str, Any]:
        s = self.snap
        return {"snapshot": s.get("DBClusterSnapshotIdentifier"), "arn": self.arn, "type": s.get("SnapshotType"),
                "created": fmt(s.get("SnapshotCreateTime")), "status": s.get("Status"), "source": self.source}

    def check_snapshot(self, ctx: StepContext | None = None) -> dict[str, Any]:
        self.snap = resolve(self.outputs, self.rds, self.arn)  # its status now, not when the run began
        status = self.snap.get("Status")
        if status != "available":
            raise RefusedError(f"snapshot {self.snap.get('DBClusterSnapshotIdentifier')} is {status}, not available",
                               "wait until it is available, or pass --snapshot latest (the newest available one)")
        self.check_name_free(ctx)
        return self.describe()

    def restore_cluster(self, ctx: StepContext) -> dict[str, Any]:
        kw = self.placement(self.source_cluster(), ctx, self.arn)
        kw.update(SnapshotIdentifier=self.arn, Engine=self.snap.get("Engine") or "aurora-postgresql")
        if self.snap.get("EngineVersion"):
            kw["EngineVersion"] = self.snap["EngineVersion"]
        try:
            c = self.rds.restore_db_cluster_from_snapshot(**kw)["DBCluster"]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"restoring snapshot {self.arn}") from None
        return {"cluster": self.new, "status": c.get("Status"), "engine": c.get("Engine")}

    def runbook(self) -> Runbook:
        snap_id = self.snap.get("DBClusterSnapshotIdentifier")
        steps = [
            Step("check-snapshot", lambda ctx: self.check_snapshot(ctx),
                 touches=f"nothing (describes {self.source}'s snapshots)"),
            Step("restore-cluster", self.restore_cluster,
                 touches=f"creates cluster {self.new} from snapshot {snap_id}", check=self.restored),
            *self.common_steps(),
        ]
        return Runbook(NAME, steps, Target(self.new, production=self.outputs.production), destructive=self.opts.cutover,
                       params={"stack": self.outputs.stack, "source": self.source, "snapshot": self.arn,
                               "new_cluster": self.new, "cutover": self.opts.cutover},
                       stakes=self.stakes(f"from snapshot {snap_id}", fmt(self.snap.get("SnapshotCreateTime"))))


def next_steps(outputs: StackOutputs, journal: Journal) -> list[str]:
    s = journal.step("check-snapshot").detail
    return new_cluster.next_steps(
        outputs, journal.step("report").detail, f"from snapshot {s.get('snapshot')} of {s.get('created')}",
        password="the master password is the one the cluster had when the snapshot was taken (after a rotation "
                 f"since, set the current one from secret {outputs.db_secret_arn} with modify-db-cluster)",
        cutover=new_cluster.cutover_detail(journal))


def restore_snapshot(outputs: StackOutputs, opts: SnapshotOptions, store: JournalStore, *, yes: bool = False,
                     dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    # a bad services config is refused before anything is read
    services = ServiceControl(ServicesConfig.for_stack(outputs)) if opts.cutover else None
    rds = client("rds", outputs.region)
    r = SnapshotRestore(outputs, opts, rds, resolve(outputs, rds, opts.snapshot), services)
    rb = r.runbook()
    prev = rb.resumable(store)  # a rerun of an unfinished restore may find its own cluster
    if prev is None:
        r.check_snapshot()  # refuse a snapshot that is not available, or a taken name, before anything
    cut = r.cutover()
    if cut is not None:
        cut.preflight()
    return execute(rb, store, yes=yes, dry_run=dry_run, reporter=reporter, on_failure=cut.undo if cut else None)
