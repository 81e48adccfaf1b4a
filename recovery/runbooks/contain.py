"""`recovery contain`, `recovery contain terminate`, `recovery investigate`: scenario 5, breach containment.

The plan's one-off commands, made into a recorded runbook. `--source-dest-check` isolates nothing,
so isolation here is a quarantine security group (no ingress, default egress revoked) put on EVERY
network interface of the instance, replacing its groups, and verified per interface.

Steps of ``contain`` (each with a check, so a rerun creates no second group, image or policy):

1. ``open-record``        ``s3://<bucket>/incidents/<id>/record.json`` with the instance, its VPC,
                          each interface's groups before isolation, users and roles named.
2. ``isolate``            create or reuse ``xai-quarantine`` in the instance's VPC, strip its rules,
                          set it as the only group of every interface, verify.
3. ``preserve-evidence``  image with NoReboot and a snapshot of each attached volume, tagged with
                          the incident id; waits until they are available/completed.
4. ``revoke-credentials`` deactivate every access key of each named user (``--delete-keys``: then
                          delete); a deny-all inline policy with ``aws:TokenIssueTime`` before now
                          on each named role of the stack (revokes its active sessions).
5. ``ensure-logging``     the stack's trail is logging (start it if not).
6. ``write-record``       every ID created, every key deactivated; timings are added after the run.

Bad input is refused before anything changes, dry run included, each with its own exit code:
unknown instance (42), unknown user or role (43), instance outside the stack's VPC (44), missing
trail (45). ``terminate`` refuses (46) unless the incident's image and snapshots exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from recovery import notify
from recovery.adapters.containment import (QUARANTINE_GROUP, ContainmentApi, IncidentRecord, group_ids, record_key,
                                           volumes)
from recovery.errors import EvidenceMissingError, InputError, UnknownUserError, WrongVpcError
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook, execute
from recovery.engine.steps import Step, StepContext, Target
from recovery.reports.render import Document, Items, Section, Strong, Table, html_page, markdown
from recovery.stack import StackOutputs

POLICY_PREFIX = "xai-incident-revoke-sessions-"
READ_ONLY = ("Describe", "List", "Get", "Lookup", "Head")
FOLLOW_UPS = [
    "Root cause: how did the attacker get in? (fill in)",
    "Scope: which data, keys and hosts were reachable from the instance? (fill in)",
    "Redeploy from a known-good state (plan, recovery step 2): `pulumi up` at the last reviewed commit, then "
    "`recovery restore config --stack STACK --backup KEY` with a configuration backup from before the breach",
    "Database tampered with? `recovery restore db --stack STACK --backup KEY --reindex` (scenario 1, with the "
    "plan's REINDEX)",
    "Rotate all credentials and secrets: `recovery rotate all --stack STACK` (plan, recovery step 3)",
    "Lessons learned: what detects this sooner next time? (fill in)",
    "Post-incident review date and owner (fill in)",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_incident_id(instance_id: str) -> str:
    """One incident per instance per UTC day unless --incident says otherwise (reruns find it)."""
    return f"inc-{datetime.now(timezone.utc):%Y%m%d}-{instance_id}"


_INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")


def check_instance_id(instance_id: str) -> str:
    """EC2's id format, checked before any AWS call, so a typo is an input error and not a lookup."""
    if not _INSTANCE_ID.fullmatch(instance_id):
        raise InputError(f"--instance '{instance_id[:40]}' is not an EC2 instance id",
                         "pass i- followed by 8 or 17 hex digits, e.g. --instance i-0123456789abcdef0")
    return instance_id


@dataclass
class ContainOptions:
    instance_id: str
    users: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    incident_id: str | None = None
    delete_keys: bool = False
    wait_timeout_s: float = 1800.0
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        check_instance_id(self.instance_id)
        if not self.incident_id:
            self.incident_id = default_incident_id(self.instance_id)
        if "/" in self.incident_id or not self.incident_id.strip():
            raise InputError(f"incident id '{self.incident_id}' must be non-empty without '/'", "pass e.g. --incident INC-42")


class Incident:
    """One incident of a stack: its record in the stack's bucket and the containment calls, by id."""

    def __init__(self, outputs: StackOutputs, incident_id: str) -> None:
        self.o = outputs
        self.id = incident_id
        self.record = IncidentRecord(outputs.region, outputs.backup_bucket_name, incident_id)
        self.api = ContainmentApi(outputs.region, incident_id)

    def load(self) -> dict[str, Any] | None:
        return self.record.load()

    def save(self, record: dict[str, Any]) -> str:
        return self.record.save(record, _now())

    def stack_roles(self) -> dict[str, str]:
        # Never the contain role itself: the policy would not let it, and it is the one doing the revoking.
        arns = [arn for job, arn in self.o.recovery_role_arns.items() if job != "contain"] + [self.o.replication_role_arn]
        return {a.rsplit("/", 1)[-1]: a for a in arns if a}

    def preflight(self, opts: ContainOptions) -> dict[str, Any]:
        """Bad input raises its own error before anything changes: instance, VPC, users, roles, trail."""
        inst = self.api.instance(opts.instance_id)
        if inst.get("VpcId") != self.o.vpc_id:
            raise WrongVpcError(f"instance {opts.instance_id} is in {inst.get('VpcId')}, not the stack's VPC {self.o.vpc_id}",
                                "check --stack and --instance; containment only acts inside the stack's VPC")
        for user in opts.users:
            self.api.require_user(user)
        stack_roles = self.stack_roles()
        for role in opts.roles:
            if role not in stack_roles:
                raise UnknownUserError(f"role '{role}' is not one of the stack's roles ({', '.join(sorted(stack_roles))})",
                                       "name a role from the stack's outputs with --role")
        self.api.trail_logging(self.o.trail_name)
        return inst


class Containment:
    def __init__(self, outputs: StackOutputs, opts: ContainOptions) -> None:
        self.o = outputs
        self.opts = opts
        assert opts.incident_id
        self.inc = Incident(outputs, opts.incident_id)
        self.api = self.inc.api

    # -- 1 -----------------------------------------------------------------------------------
    def open_check(self, _ctx: StepContext) -> Any:
        rec = self.inc.load()
        return {"record": record_key(self.inc.id), "opened_at": rec.get("opened_at")} if rec else False

    def open_record(self, ctx: StepContext) -> dict[str, Any]:
        inst = self.api.instance(self.opts.instance_id)
        record = {
            "incident_id": self.inc.id, "stack": self.o.stack, "region": self.o.region, "opened_at": _now(),
            "instance_id": self.opts.instance_id, "vpc_id": inst.get("VpcId"), "users": self.opts.users,
            "roles": self.opts.roles, "contain_run_id": ctx.run_id,
            "instance_before": {
                "state": inst.get("State", {}).get("Name"),
                "interfaces": [{"id": e["NetworkInterfaceId"], "groups": group_ids(e)}
                               for e in self.api.interfaces(self.opts.instance_id)],
                "volumes": volumes(inst),
            },
            "follow_ups": FOLLOW_UPS,
        }
        where = self.inc.save(record)
        ctx.info(f"incident {self.inc.id}: record {where}")
        return {"record": record_key(self.inc.id), "opened_at": record["opened_at"]}

    # -- 2 -----------------------------------------------------------------------------------
    def isolate_check(self, _ctx: StepContext) -> Any:
        inst = self.api.instance(self.opts.instance_id)
        group = self.api.find_group(inst["VpcId"])
        if group is None or group.get("IpPermissions") or group.get("IpPermissionsEgress"):
            return False
        enis = self.api.interfaces(self.opts.instance_id)
        if not enis or any(group_ids(e) != [group["GroupId"]] for e in enis):
            return False
        return {"group_id": group["GroupId"], "interfaces": [e["NetworkInterfaceId"] for e in enis]}

    def isolate(self, ctx: StepContext) -> dict[str, Any]:
        iid = self.opts.instance_id
        gid, created, count = self.api.isolate(iid, self.api.instance(iid)["VpcId"])
        held = self.isolate_check(ctx)
        if not held:
            raise RuntimeError(f"after isolation an interface of {iid} still has other groups "
                               "or the quarantine group has rules")
        ctx.info(f"isolated {iid}: {count} interface(s) now only in {gid}")
        return {**held, "group_created": created}

    # -- 3 -----------------------------------------------------------------------------------
    def evidence_state(self) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any] | None], list[str]]:
        inst = self.api.instance(self.opts.instance_id)
        rec = self.inc.load() or {}
        vols = sorted(set(volumes(inst)) | set(rec.get("instance_before", {}).get("volumes", [])))
        return self.api.find_image(self.opts.instance_id), {v: self.api.find_snapshot(v) for v in vols}, vols

    def evidence_check(self, _ctx: StepContext) -> Any:
        image, snaps, _vols = self.evidence_state()
        if image is None or image.get("State") != "available":
            return False
        if any(s is None or s.get("State") != "completed" for s in snaps.values()):
            return False
        return {"image_id": image["ImageId"], "snapshots": {v: s["SnapshotId"] for v, s in snaps.items() if s}}

    def preserve(self, ctx: StepContext) -> dict[str, Any]:
        iid = self.opts.instance_id
        image_id, snap_ids = self.api.preserve(iid, *self.evidence_state())
        ctx.info(f"evidence: image {image_id}, {len(snap_ids)} snapshot(s); waiting until they are ready")
        self.api.wait_evidence(iid, image_id, list(snap_ids.values()), self.opts.wait_timeout_s, self.opts.poll_s)
        return {"image_id": image_id, "snapshots": snap_ids}

    # -- 4 -----------------------------------------------------------------------------------
    def policy_name(self) -> str:
        return (POLICY_PREFIX + self.inc.id)[:128]

    def revoke_check(self, _ctx: StepContext) -> Any:
        for user in self.opts.users:
            keys = self.api.access_keys(user)
            if any(k["Status"] != "Inactive" for k in keys) or (self.opts.delete_keys and keys):
                return False
        for role in self.opts.roles:
            if self.policy_name() not in self.api.role_policy_names(role):
                return False
        return {"users": self.opts.users, "roles": self.opts.roles, "verified": True}

    def revoke(self, ctx: StepContext) -> dict[str, Any]:
        keys_done: list[dict[str, str]] = []
        cutoff = _now()
        try:
            self.api.revoke(self.opts.users, self.opts.roles, self.policy_name(), cutoff, self.opts.delete_keys,
                            keys_done)
        finally:
            if keys_done:  # a failure part way still journals the keys already deactivated
                ctx.detail["access_keys"] = keys_done
        ctx.info(f"revoked: {len(keys_done)} access key(s), {len(self.opts.roles)} role session policy(ies)")
        return {"access_keys": keys_done, "role_policies": [{"role": r, "policy": self.policy_name(),
                                                             "token_issued_before": cutoff} for r in self.opts.roles]}

    # -- 5 -----------------------------------------------------------------------------------
    def logging_check(self, _ctx: StepContext) -> Any:
        return {"trail": self.o.trail_name, "is_logging": True} if self.api.trail_logging(self.o.trail_name) else False

    def ensure_logging(self, _ctx: StepContext) -> dict[str, Any]:
        self.api.start_logging(self.o.trail_name)
        if not self.api.trail_logging(self.o.trail_name):
            raise RuntimeError(f"trail {self.o.trail_name} is still not logging after start_logging")
        return {"trail": self.o.trail_name, "is_logging": True, "started": True}

    # -- 6 -----------------------------------------------------------------------------------
    def write_record(self, ctx: StepContext) -> dict[str, Any]:
        rec = self.inc.load() or {}
        r = ctx.results
        rec.update({
            "quarantine_group_id": r.get("isolate", {}).get("group_id"),
            "isolated_interfaces": r.get("isolate", {}).get("interfaces", []),
            "image_id": r.get("preserve-evidence", {}).get("image_id"),
            "snapshots": r.get("preserve-evidence", {}).get("snapshots", {}),
            "access_keys": r.get("revoke-credentials", {}).get("access_keys", rec.get("access_keys", [])),
            "role_policies": r.get("revoke-credentials", {}).get("role_policies", rec.get("role_policies", [])),
            "trail": {"name": self.o.trail_name, "is_logging": True},
            "contained_at": _now(),
        })
        return {"record": self.inc.save(rec)}

    def runbook(self) -> Runbook:
        o, iid = self.o, self.opts.instance_id
        steps = [
            Step("open-record", self.open_record, touches=self.inc.record.url(), check=self.open_check),
            Step("isolate", self.isolate, touches=f"security group {QUARANTINE_GROUP}, every interface of {iid}",
                 check=self.isolate_check),
            Step("preserve-evidence", self.preserve, touches=f"new image (NoReboot) + volume snapshots of {iid}",
                 check=self.evidence_check),
            Step("revoke-credentials", self.revoke, touches=f"access keys of {', '.join(self.opts.users) or 'no user'}; "
                 f"session policy on {', '.join(self.opts.roles) or 'no role'}", check=self.revoke_check),
            Step("ensure-logging", self.ensure_logging, touches=f"trail {o.trail_name}", check=self.logging_check),
            Step("write-record", self.write_record, touches="the incident record"),
        ]
        return Runbook("contain", steps,
                       Target(f"{o.stack}:{self.inc.id}", production=False), destructive=True,
                       params={"instance": iid, "users": self.opts.users, "roles": self.opts.roles,
                               "delete_keys": self.opts.delete_keys})


def contain(outputs: StackOutputs, opts: ContainOptions, store: JournalStore, *, yes: bool = False,
            dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    c = Containment(outputs, opts)
    c.inc.preflight(opts)  # bad input: one line, its own exit code, nothing changed (dry run too)
    with notify.on_failure(outputs, "containment", "security", incident=opts.incident_id):
        journal, plan = execute(c.runbook(), store, yes=yes, dry_run=dry_run, reporter=reporter)
    if journal is not None and not dry_run:
        notify.announce(outputs, "containment", "security", f"incident {opts.incident_id} contained",
                        details={"incident": opts.incident_id, "record": f"incidents/{opts.incident_id}"})
    if journal is not None:
        rec = c.inc.load() or {}
        rec["timings_s"] = journal.step_durations()
        rec["contain_journal"] = journal.location
        c.inc.save(rec)
    return journal, plan


# --------------------------------------------------------------------------------------------
# terminate
# --------------------------------------------------------------------------------------------


def check_evidence(inc: Incident, instance_id: str) -> dict[str, Any]:
    rec = inc.load()
    if rec is None:
        raise EvidenceMissingError(f"incident {inc.id} has no record in s3://{inc.o.backup_bucket_name}/incidents/",
                                   f"run `recovery contain --instance {instance_id} --incident {inc.id}` first")
    if rec.get("instance_id") != instance_id:
        raise EvidenceMissingError(f"incident {inc.id} is about {rec.get('instance_id')}, not {instance_id}",
                                   "check --incident and --instance")
    image = inc.api.find_image(instance_id)
    if image is None or image.get("State") != "available":
        raise EvidenceMissingError(f"incident {inc.id} has no available forensic image of {instance_id}",
                                   "rerun `recovery contain` for it; terminating now would destroy the evidence")
    vols = rec.get("instance_before", {}).get("volumes", [])
    missing = [v for v in vols if (inc.api.find_snapshot(v) or {}).get("State") != "completed"]
    if missing:
        raise EvidenceMissingError(f"incident {inc.id} lacks completed snapshots of {', '.join(missing)}",
                                   "rerun `recovery contain` for it before terminating")
    return {"image_id": image["ImageId"], "volumes": vols}


class Termination:
    """``contain terminate``: only an instance whose evidence is preserved."""

    def __init__(self, outputs: StackOutputs, instance_id: str, incident_id: str) -> None:
        self.o = outputs
        self.instance_id = instance_id
        self.inc = Incident(outputs, incident_id)

    def gone(self, _ctx: StepContext) -> Any:
        state = self.inc.api.instance(self.instance_id).get("State", {}).get("Name")
        return {"state": state} if state in ("shutting-down", "terminated") else False

    def terminate(self, _ctx: StepContext) -> dict[str, Any]:
        evidence = check_evidence(self.inc, self.instance_id)
        self.inc.api.terminate(self.instance_id)
        return {"terminated": self.instance_id, **evidence}

    def note(self, ctx: StepContext) -> dict[str, Any]:
        rec = self.inc.load() or {}
        rec["terminated_at"] = rec.get("terminated_at") or _now()
        rec["terminate_run_id"] = ctx.run_id
        return {"record": self.inc.save(rec)}

    def runbook(self) -> Runbook:
        steps = [Step("terminate", self.terminate, touches=f"EC2 instance {self.instance_id} (terminated)",
                      check=self.gone),
                 Step("update-record", self.note, touches="the incident record")]
        return Runbook("contain-terminate", steps,
                       Target(f"{self.o.stack}:{self.inc.id}", production=self.o.production), destructive=True,
                       params={"instance": self.instance_id})


def terminate(outputs: StackOutputs, instance_id: str, incident_id: str, store: JournalStore, *, yes: bool = False,
              dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    t = Termination(outputs, instance_id, incident_id)
    t.inc.api.instance(instance_id)
    check_evidence(t.inc, instance_id)  # refuse before anything, dry run included
    return execute(t.runbook(), store, yes=yes, dry_run=dry_run, reporter=reporter)


# --------------------------------------------------------------------------------------------
# investigate
# --------------------------------------------------------------------------------------------


def _event(e: dict[str, Any]) -> dict[str, Any]:
    when: Any = e.get("EventTime")
    return {"time": when.isoformat() if isinstance(when, datetime) else str(when), "name": e.get("EventName"),
            "source": e.get("EventSource"), "user": e.get("Username"),
            "access_key_id": e.get("AccessKeyId"),
            "resources": [f"{r.get('ResourceType')}:{r.get('ResourceName')}" for r in e.get("Resources", [])]}


def investigate(outputs: StackOutputs, incident_id: str, since_s: float, say: Any = None) -> dict[str, Any]:
    """CloudTrail events of the incident's users and instance into the record; Markdown+HTML report."""
    inc = Incident(outputs, incident_id)
    rec = inc.load()
    if rec is None:
        raise EvidenceMissingError(f"incident {incident_id} has no record in s3://{outputs.backup_bucket_name}/incidents/",
                                   "check --incident (see `recovery contain`)")
    start = datetime.now(timezone.utc) - timedelta(seconds=since_s)
    lookups = [("Username", u) for u in rec.get("users", [])] + [("ResourceName", rec["instance_id"])]
    events: dict[str, dict[str, Any]] = {}
    for key, value in lookups:
        for e in inc.api.lookup_events(key, value, start):
            events[e.get("EventId") or f"{e.get('EventTime')}-{e.get('EventName')}"] = {
                **_event(e), "matched": f"{key}={value}"}
        if say:
            say(f"cloudtrail: {key}={value}: {len(events)} event(s) so far")
    ordered = sorted(events.values(), key=lambda e: e["time"])
    rec["investigation"] = {"at": _now(), "since": start.isoformat(timespec="seconds"), "events": ordered}
    where = inc.save(rec)
    md, page = report(rec)
    inc.record.put("report.md", md, "text/markdown")
    inc.record.put("report.html", page, "text/html")
    return {"incident_id": incident_id, "record": where, "events": len(ordered),
            "report_md": inc.record.url("report.md"), "report_html": inc.record.url("report.html")}


def suspect_keys(outputs: StackOutputs, since_s: float) -> dict[str, dict[str, Any]]:
    """CloudTrail's calls since ``since_s`` ago made with a long-term access key (AKIA...) by an IAM
    user the stack does not trust: {user: {"access_keys", "calls", "events"}}. The job roles'
    sessions use temporary keys (ASIA...), and the trusted principals are the stack's
    `trusted_principal_arns`, so on a healthy site this is empty."""
    trusted = {arn.rsplit("/", 1)[-1] for arn in outputs.trusted_principal_arns if ":user/" in arn}
    start = datetime.now(timezone.utc) - timedelta(seconds=since_s)
    api = ContainmentApi(outputs.region, "detect")
    found: dict[str, dict[str, Any]] = {}
    for e in api.lookup_events("ReadOnly", "true", start) + api.lookup_events("ReadOnly", "false", start):
        user, key = e.get("Username") or "", str(e.get("AccessKeyId") or "")
        if not key.startswith("AKIA") or user in trusted or user == "root":
            continue
        s = found.setdefault(user, {"access_keys": set(), "calls": 0, "events": set()})
        s["access_keys"].add(key)
        s["calls"] += 1
        s["events"].add(str(e.get("EventName")))
    return {u: {"access_keys": sorted(v["access_keys"]), "calls": v["calls"], "events": sorted(v["events"])}
            for u, v in found.items()}


def timeline(rec: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if rec.get("opened_at"):
        rows.append((rec["opened_at"], f"incident opened for {rec.get('instance_id')}"))
    if rec.get("contained_at"):
        rows.append((rec["contained_at"], f"contained: interfaces only in {rec.get('quarantine_group_id')}, image "
                                          f"{rec.get('image_id')}, {len(rec.get('snapshots', {}))} snapshot(s), "
                                          f"{len(rec.get('access_keys', []))} key(s) deactivated"))
    if rec.get("terminated_at"):
        rows.append((rec["terminated_at"], f"instance {rec.get('instance_id')} terminated"))
    reads = 0
    for e in rec.get("investigation", {}).get("events", []):
        if str(e.get("name") or "").startswith(READ_ONLY):  # in the record, not in the timeline
            reads += 1
            continue
        rows.append((e["time"], f"{e['name']} by {e['user']} ({e['source']}) {' '.join(e['resources'][:3])}"))
    rows.sort()
    if reads:
        rows.append(("", f"{reads} read-only call(s) (Describe/List/Get) are in the record, not shown here"))
    return rows


def document(rec: dict[str, Any]) -> Document:
    """The incident report: facts, the timeline (UTC) and the plan's follow-ups to fill in."""
    facts = [("Instance", rec.get("instance_id")), ("VPC", rec.get("vpc_id")),
             ("Quarantine group", rec.get("quarantine_group_id")), ("Forensic image", rec.get("image_id")),
             ("Snapshots", ", ".join(f"{v}: {s}" for v, s in rec.get("snapshots", {}).items()) or "-"),
             ("Access keys deactivated", ", ".join(f"{k['user']}/{k['access_key_id']} ({k['action']})"
                                                   for k in rec.get("access_keys", [])) or "-"),
             ("Role session policies", ", ".join(p["role"] for p in rec.get("role_policies", [])) or "-"),
             ("Trail", (rec.get("trail") or {}).get("name"))]
    return Document(
        title=f"Incident {rec.get('incident_id')} — {rec.get('instance_id')} ({rec.get('stack')})",
        sections=[Section("Facts", [Items([[Strong(k), f": {v}"] for k, v in facts])]),
                  Section("Timeline (UTC)", [Table(["time", "event"], [[t, w] for t, w in timeline(rec)])]),
                  Section("Follow-ups (fill in)", [Items(list(rec.get("follow_ups", FOLLOW_UPS)), checkbox=True)])])


def report(rec: dict[str, Any]) -> tuple[str, str]:
    doc = document(rec)
    return markdown(doc), html_page(doc)


__all__ = ["ContainOptions", "Containment", "contain", "terminate", "investigate", "report", "default_incident_id"]
