"""What every Aurora restore into a NEW cluster shares (`restore pitr`, `restore snapshot`).

Both are: check the source -> restore-cluster -> create-instance -> wait-available -> report, and
with ``--cutover`` verify-new -> stop-services -> repoint -> start-services (runbooks/cutover.py). Only
the first two differ (what is checked, which RDS restore call is made); this base holds the rest:
the new cluster's name rules, the refusal of a name that is taken by anything but this run, the
placement the new cluster inherits from the source (subnet group, security groups, port), its
first instance, the wait and the endpoints report, and the operator's next steps.

The source cluster is only ever *described*: nothing here modifies or deletes it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Protocol

from recovery.adapters import aurora
from recovery.aws import aws_error
from recovery.errors import AwsAccessError, DeadlineError, InputError
from recovery.engine.steps import Step, StepContext
from recovery.runbooks.cutover import Cutover
from recovery.services import ServiceControl
from recovery.stack import StackOutputs

RUN_TAG = "xai-recovery-run"
MAX_CLUSTER_ID = 63
_CLUSTER_ID = re.compile(r"[A-Za-z](?:-?[A-Za-z0-9])*")  # RDS: letter first, no "--", no trailing "-"


def check_cluster_id(name: str) -> str:
    if len(name) > MAX_CLUSTER_ID or not _CLUSTER_ID.fullmatch(name):
        raise InputError(f"--new-cluster '{name[:70]}' is not a valid RDS cluster identifier",
                         f"use 1..{MAX_CLUSTER_ID} letters, digits and single hyphens, starting with a letter")
    return name


def name_with_suffix(source: str, suffix: str) -> str:
    """``<source><suffix>`` within RDS's length: the suffix tells restores apart, so the source is cut."""
    return re.sub(r"-+", "-", source)[:MAX_CLUSTER_ID - len(suffix)].rstrip("-") + suffix


class NewClusterOptions(Protocol):
    new_cluster: str | None
    instance_class: str | None
    wait_timeout_s: float
    poll_s: float


class NewClusterRestore:
    """Subclasses set ``outputs``, ``opts`` and ``rds`` and define ``new`` (the new cluster's name);
    ``services`` is set for a cutover (the dependents it stops and starts)."""

    outputs: StackOutputs
    opts: NewClusterOptions
    rds: Any
    services: ServiceControl | None

    @property
    def new(self) -> str:
        raise NotImplementedError

    @property
    def source(self) -> str:
        return self.outputs.db_cluster_id

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

    def check_name_free(self, ctx: StepContext | None) -> None:
        """The new name is free, or it is this very run's cluster (a resumed run finds its own)."""
        existing = self._cluster(self.new)
        tag = (existing or {}).get("TagList") or []
        ours = ctx is not None and {"Key": RUN_TAG, "Value": ctx.run_id} in tag
        if existing is not None and not ours:
            raise InputError(f"cluster {self.new} already exists", "pass another --new-cluster name")

    def placement(self, src: dict[str, Any], ctx: StepContext, restored_from: str) -> dict[str, Any]:
        """The restore call's arguments shared by both restores: the source's network, this run's tags."""
        kw: dict[str, Any] = {
            "DBClusterIdentifier": self.new,
            "Tags": [{"Key": RUN_TAG, "Value": ctx.run_id},
                     {"Key": "xai-recovery-restored-from", "Value": restored_from}],
        }
        if src.get("DBSubnetGroup"):
            kw["DBSubnetGroupName"] = src["DBSubnetGroup"]
        groups = [g["VpcSecurityGroupId"] for g in src.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
        if groups:
            kw["VpcSecurityGroupIds"] = groups
        if src.get("Port"):
            kw["Port"] = int(src["Port"])
        return kw

    # -- actions and checks
    def restored(self, ctx: StepContext) -> dict[str, Any] | bool:
        c = self._cluster(self.new)
        return {"cluster": self.new, "status": c.get("Status")} if c else False

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
                                        Tags=[{"Key": RUN_TAG, "Value": ctx.run_id}])
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

    def new_endpoint(self) -> tuple[str, int]:
        c = self._cluster(self.new) or {}
        if not c.get("Endpoint"):
            raise AwsAccessError(f"{self.new} reports no endpoint", "check the cluster in the RDS console, then rerun")
        return str(c["Endpoint"]), int(c.get("Port") or self.outputs.db_port)

    def cutover(self) -> Cutover | None:
        return Cutover(self.outputs, self.services, self.new, self.new_endpoint) if self.services else None

    def stakes(self, restored_what: str, point: str) -> dict[str, Any] | None:
        """The cutover's prompt and plan: where the clients go, and what it costs."""
        if not self.services:
            return None
        return {"new cluster": f"{self.new} ({restored_what})",
                "clients move": f"from the DB secret's current host to {self.new} (secret, parameter"
                                + (", service file" if self.services.config.database_service_file else "") + ")",
                "services": "stopped and started again: " + ", ".join(self.services.config.stop_order),
                "expected loss": f"every write after {point} (verify-new counts the blocks)"}

    def common_steps(self) -> list[Step]:
        """create-instance, wait-available, report: the steps after the restore call; then the cutover's."""
        cut = self.cutover()
        return [
            Step("create-instance", self.create_instance, touches=f"creates instance {self.instance}", check=self.has_instance),
            Step("wait-available", self.wait_available, touches=f"nothing (waits up to {self.opts.wait_timeout_s:g}s)"),
            Step("report", self.report, touches="nothing (prints the endpoint" + ("s)" if cut else " and the repoint steps)")),
            *(cut.steps() if cut else []),
        ]


def cutover_detail(journal: Any) -> dict[str, Any] | None:
    """verify-new's and repoint's details merged, when the run cut over; else None."""
    if not journal.completed("repoint"):
        return None
    return {**journal.step("verify-new").detail, **journal.step("repoint").detail}


def next_steps(outputs: StackOutputs, detail: dict[str, Any], restored_what: str, password: str = "",
               cutover: dict[str, Any] | None = None) -> list[str]:
    """What the operator does next, from the report step's detail (``restored_what``: e.g. 'restored to T';
    ``password``: what to say about the master password, default: unchanged, in the stack's secret;
    ``cutover``: the verify-new and repoint details of a cutover run)."""
    ep, rep, port, new = detail.get("endpoint"), detail.get("reader_endpoint"), detail.get("port"), detail.get("cluster")
    o = outputs
    if cutover is not None:
        lost = cutover.get("blocks_rolled_back")
        return [
            f"Clients now use {new} ({restored_what}): {cutover.get('now')}, was {cutover.get('previous')}; "
            f"{cutover.get('rows')} blocks up to height {cutover.get('max_height')}"
            + (f", {lost} blocks rolled back" if lost is not None else ", the source did not answer"),
            f"  next: make the infra config adopt {new}; the source cluster {o.db_cluster_id} was not modified - "
            "delete it only once the new one is verified",
        ]
    return [
        f"New cluster {new} ({restored_what}) is available:",
        f"  writer endpoint {ep}:{port}",
        f"  reader endpoint {rep}:{port}",
        "To repoint clients:",
        f"  1. check the data: psql -h {ep} -p {port} -U {o.db_username} -d {o.db_name} "
        "-c 'SELECT count(*), max(height) FROM blockchain'",
        "  2. stop the dependents: systemctl stop xai-node; systemctl stop xai-explorer",
        f"  3. point the database host at {ep} (service config or the DB DNS name; it replaces "
        f"{detail.get('source_endpoint')}); " + (password or f"the master password is unchanged (secret {o.db_secret_arn})"),
        "  4. start the dependents: systemctl start xai-node; systemctl start xai-explorer",
        f"  5. make the infra config adopt {new}; the source cluster {o.db_cluster_id} was not modified - "
        "delete it only once the new one is verified",
    ]
