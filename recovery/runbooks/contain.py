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

import html
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from recovery.aws import aws_error, client, error_code
from recovery.errors import (DeadlineError, EvidenceMissingError, InputError, TrailMissingError, UnknownInstanceError,
                             UnknownUserError, WrongVpcError)
from recovery.engine.journal import Journal, JournalStore
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step, StepContext, Target
from recovery.engine.runbook import execute
from recovery.stack import StackOutputs

QUARANTINE_GROUP = "xai-quarantine"
INCIDENT_TAG = "xai:incident-id"
POLICY_PREFIX = "xai-incident-revoke-sessions-"
READ_ONLY = ("Describe", "List", "Get", "Lookup", "Head")
FOLLOW_UPS = [
    "Root cause: how did the attacker get in? (fill in)",
    "Scope: which data, keys and hosts were reachable from the instance? (fill in)",
    "Redeploy from a known-good state: `bash deploy/scripts/deploy.sh production` (plan, recovery step 2)",
    "Rotate all credentials and secrets: `recovery rotate all --stack STACK` (plan, recovery step 3)",
    "Lessons learned: what detects this sooner next time? (fill in)",
    "Post-incident review date and owner (fill in)",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_incident_id(instance_id: str) -> str:
    """One incident per instance per UTC day unless --incident says otherwise (reruns find it)."""
    return f"inc-{datetime.now(timezone.utc):%Y%m%d}-{instance_id}"


def record_key(incident_id: str, name: str = "record.json") -> str:
    return f"incidents/{incident_id}/{name}"


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
    """The incident record in the stack's bucket, and the AWS calls containment makes."""

    def __init__(self, outputs: StackOutputs, incident_id: str) -> None:
        self.o = outputs
        self.id = incident_id
        self.s3 = client("s3", outputs.region)
        self.ec2 = client("ec2", outputs.region)
        self.iam = client("iam", outputs.region)
        self.ct = client("cloudtrail", outputs.region)

    # -- record ----------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.o.backup_bucket_name, Key=record_key(self.id))["Body"].read()
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise aws_error(exc, f"reading incident record {self.id}", bucket=self.o.backup_bucket_name) from None
        return dict(json.loads(body))

    def save(self, record: dict[str, Any]) -> str:
        record["updated_at"] = _now()
        key = record_key(self.id)
        self.put(key, json.dumps(record, indent=2, sort_keys=True, default=str), "application/json")
        return f"s3://{self.o.backup_bucket_name}/{key}"

    def put(self, key: str, text: str, content_type: str) -> None:
        try:
            self.s3.put_object(Bucket=self.o.backup_bucket_name, Key=key, Body=text.encode(), ContentType=content_type)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"writing s3://{self.o.backup_bucket_name}/{key}", bucket=self.o.backup_bucket_name) from None

    # -- preflight -------------------------------------------------------------------------
    def instance(self, instance_id: str) -> dict[str, Any]:
        try:
            res = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc).startswith("InvalidInstanceID"):
                raise UnknownInstanceError(f"instance {instance_id} does not exist in {self.o.region}",
                                           "check the instance id and the stack (region)") from None
            raise aws_error(exc, f"describing instance {instance_id}") from None
        if not res or not res[0]["Instances"]:
            raise UnknownInstanceError(f"instance {instance_id} does not exist in {self.o.region}",
                                       "check the instance id and the stack (region)")
        return dict(res[0]["Instances"][0])

    def preflight(self, opts: ContainOptions) -> dict[str, Any]:
        inst = self.instance(opts.instance_id)
        if inst.get("VpcId") != self.o.vpc_id:
            raise WrongVpcError(f"instance {opts.instance_id} is in {inst.get('VpcId')}, not the stack's VPC {self.o.vpc_id}",
                                "check --stack and --instance; containment only acts inside the stack's VPC")
        for user in opts.users:
            try:
                self.iam.get_user(UserName=user)
            except Exception as exc:  # noqa: BLE001
                if error_code(exc) == "NoSuchEntity":
                    raise UnknownUserError(f"IAM user '{user}' does not exist", "check the --user names") from None
                raise aws_error(exc, f"looking up IAM user {user}") from None
        stack_roles = self.stack_roles()
        for role in opts.roles:
            if role not in stack_roles:
                raise UnknownUserError(f"role '{role}' is not one of the stack's roles ({', '.join(sorted(stack_roles))})",
                                       "name a role from the stack's outputs with --role")
        self.trail_logging()
        return inst

    def stack_roles(self) -> dict[str, str]:
        # Never the contain role itself: the policy would not let it, and it is the one doing the revoking.
        arns = [arn for job, arn in self.o.recovery_role_arns.items() if job != "contain"] + [self.o.replication_role_arn]
        return {a.rsplit("/", 1)[-1]: a for a in arns if a}

    def trail_logging(self) -> bool:
        try:
            return bool(self.ct.get_trail_status(Name=self.o.trail_name).get("IsLogging"))
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("TrailNotFoundException", "ResourceNotFoundException"):
                raise TrailMissingError(f"the stack's trail '{self.o.trail_name}' does not exist",
                                        "create it (pulumi up) before containment so the forensic log is kept") from None
            raise aws_error(exc, f"reading the status of trail {self.o.trail_name}") from None

    # -- network ---------------------------------------------------------------------------
    def interfaces(self, instance_id: str) -> list[dict[str, Any]]:
        try:
            enis = self.ec2.describe_network_interfaces(
                Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["NetworkInterfaces"]
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"listing the network interfaces of {instance_id}") from None
        return sorted(enis, key=lambda e: e["NetworkInterfaceId"])

    def find_group(self, vpc_id: str) -> dict[str, Any] | None:
        groups = self.ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [QUARANTINE_GROUP]}])["SecurityGroups"]
        return dict(groups[0]) if groups else None

    # -- evidence --------------------------------------------------------------------------
    def tags(self, instance_id: str) -> list[dict[str, str]]:
        return [{"Key": INCIDENT_TAG, "Value": self.id}, {"Key": "xai:instance-id", "Value": instance_id}]

    def image_name(self, instance_id: str) -> str:
        return f"forensic-{self.id}-{instance_id}"[:128]

    def find_image(self, instance_id: str) -> dict[str, Any] | None:
        for filters in ([{"Name": f"tag:{INCIDENT_TAG}", "Values": [self.id]},
                         {"Name": "tag:xai:instance-id", "Values": [instance_id]}],
                        [{"Name": "name", "Values": [self.image_name(instance_id)]}]):
            images = self.ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
            if images:
                return dict(sorted(images, key=lambda i: i.get("CreationDate", ""))[0])
        return None

    def find_snapshot(self, volume_id: str) -> dict[str, Any] | None:
        snaps = self.ec2.describe_snapshots(OwnerIds=["self"], Filters=[
            {"Name": f"tag:{INCIDENT_TAG}", "Values": [self.id]}, {"Name": "volume-id", "Values": [volume_id]}])["Snapshots"]
        return dict(snaps[0]) if snaps else None


def _volumes(inst: dict[str, Any]) -> list[str]:
    return sorted(m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("VolumeId"))


class Containment:
    def __init__(self, outputs: StackOutputs, opts: ContainOptions) -> None:
        self.o = outputs
        self.opts = opts
        assert opts.incident_id
        self.inc = Incident(outputs, opts.incident_id)

    # -- 1 -----------------------------------------------------------------------------------
    def open_check(self, _ctx: StepContext) -> Any:
        rec = self.inc.load()
        return {"record": record_key(self.inc.id), "opened_at": rec.get("opened_at")} if rec else False

    def open_record(self, ctx: StepContext) -> dict[str, Any]:
        inst = self.inc.instance(self.opts.instance_id)
        record = {
            "incident_id": self.inc.id, "stack": self.o.stack, "region": self.o.region, "opened_at": _now(),
            "instance_id": self.opts.instance_id, "vpc_id": inst.get("VpcId"), "users": self.opts.users,
            "roles": self.opts.roles, "contain_run_id": ctx.run_id,
            "instance_before": {
                "state": inst.get("State", {}).get("Name"),
                "interfaces": [{"id": e["NetworkInterfaceId"], "groups": [g["GroupId"] for g in e.get("Groups", [])]}
                               for e in self.inc.interfaces(self.opts.instance_id)],
                "volumes": _volumes(inst),
            },
            "follow_ups": FOLLOW_UPS,
        }
        where = self.inc.save(record)
        ctx.info(f"incident {self.inc.id}: record {where}")
        return {"record": record_key(self.inc.id), "opened_at": record["opened_at"]}

    # -- 2 -----------------------------------------------------------------------------------
    def isolate_check(self, _ctx: StepContext) -> Any:
        inst = self.inc.instance(self.opts.instance_id)
        group = self.inc.find_group(inst["VpcId"])
        if group is None or group.get("IpPermissions") or group.get("IpPermissionsEgress"):
            return False
        enis = self.inc.interfaces(self.opts.instance_id)
        if not enis or any([g["GroupId"] for g in e.get("Groups", [])] != [group["GroupId"]] for e in enis):
            return False
        return {"group_id": group["GroupId"], "interfaces": [e["NetworkInterfaceId"] for e in enis]}

    def isolate(self, ctx: StepContext) -> dict[str, Any]:
        ec2 = self.inc.ec2
        inst = self.inc.instance(self.opts.instance_id)
        vpc = inst["VpcId"]
        try:
            group = self.inc.find_group(vpc)
            created = group is None
            if group is None:
                gid = ec2.create_security_group(
                    GroupName=QUARANTINE_GROUP, VpcId=vpc,
                    Description="Incident quarantine: no ingress, no egress (recovery contain)",
                    TagSpecifications=[{"ResourceType": "security-group", "Tags": [
                        {"Key": "xai:purpose", "Value": "quarantine"}]}])["GroupId"]
                group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
            gid = group["GroupId"]
            if group.get("IpPermissions"):
                ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=group["IpPermissions"])
            if group.get("IpPermissionsEgress"):  # the default allow-all egress rule
                ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=group["IpPermissionsEgress"])
            enis = self.inc.interfaces(self.opts.instance_id)
            for eni in enis:
                # per interface: setting the instance's groups alone can leave an interface in its old ones
                ec2.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"], Groups=[gid])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"isolating {self.opts.instance_id}") from None
        held = self.isolate_check(ctx)
        if not held:
            raise RuntimeError(f"after isolation an interface of {self.opts.instance_id} still has other groups "
                               "or the quarantine group has rules")
        ctx.info(f"isolated {self.opts.instance_id}: {len(enis)} interface(s) now only in {gid}")
        return {**held, "group_created": created}

    # -- 3 -----------------------------------------------------------------------------------
    def evidence_state(self) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any] | None], list[str]]:
        inst = self.inc.instance(self.opts.instance_id)
        vols = _volumes(inst)
        rec = self.inc.load() or {}
        vols = sorted(set(vols) | set(rec.get("instance_before", {}).get("volumes", [])))
        return self.inc.find_image(self.opts.instance_id), {v: self.inc.find_snapshot(v) for v in vols}, vols

    def evidence_check(self, _ctx: StepContext) -> Any:
        image, snaps, _vols = self.evidence_state()
        if image is None or image.get("State") != "available":
            return False
        if any(s is None or s.get("State") != "completed" for s in snaps.values()):
            return False
        return {"image_id": image["ImageId"], "snapshots": {v: s["SnapshotId"] for v, s in snaps.items() if s}}

    def preserve(self, ctx: StepContext) -> dict[str, Any]:
        ec2 = self.inc.ec2
        iid = self.opts.instance_id
        tags = self.inc.tags(iid)
        try:
            image, snaps, vols = self.evidence_state()
            if image is None:
                image_id = ec2.create_image(InstanceId=iid, Name=self.inc.image_name(iid), NoReboot=True,
                                            Description=f"forensic image, incident {self.inc.id}",
                                            TagSpecifications=[{"ResourceType": "image", "Tags": tags}])["ImageId"]
                ec2.create_tags(Resources=[image_id], Tags=tags)  # also where TagSpecifications is unsupported
            else:
                image_id = image["ImageId"]
            snap_ids: dict[str, str] = {}
            for vol in vols:
                s = snaps.get(vol)
                if s is None:
                    sid = ec2.create_snapshot(VolumeId=vol, Description=f"forensic snapshot, incident {self.inc.id}",
                                              TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}])["SnapshotId"]
                else:
                    sid = s["SnapshotId"]
                snap_ids[vol] = sid
            ctx.info(f"evidence: image {image_id}, {len(snap_ids)} snapshot(s); waiting until they are ready")
            wait = {"Delay": max(1, int(self.opts.poll_s)), "MaxAttempts": max(1, int(self.opts.wait_timeout_s / max(1, self.opts.poll_s)))}
            ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig=wait)
            if snap_ids:
                ec2.get_waiter("snapshot_completed").wait(SnapshotIds=list(snap_ids.values()), WaiterConfig=wait)
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ == "WaiterError":
                raise DeadlineError(f"the forensic image/snapshots of {iid} were not ready in {self.opts.wait_timeout_s:g}s",
                                    "rerun the same command to keep waiting (nothing is created twice)") from None
            raise aws_error(exc, f"preserving evidence of {iid}") from None
        return {"image_id": image_id, "snapshots": snap_ids}

    # -- 4 -----------------------------------------------------------------------------------
    def policy_name(self) -> str:
        return (POLICY_PREFIX + self.inc.id)[:128]

    def revoke_check(self, _ctx: StepContext) -> Any:
        iam = self.inc.iam
        for user in self.opts.users:
            keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            if any(k["Status"] != "Inactive" for k in keys) or (self.opts.delete_keys and keys):
                return False
        for role in self.opts.roles:
            names = iam.list_role_policies(RoleName=role)["PolicyNames"]
            if self.policy_name() not in names:
                return False
        return {"users": self.opts.users, "roles": self.opts.roles, "verified": True}

    def revoke(self, ctx: StepContext) -> dict[str, Any]:
        iam = self.inc.iam
        keys_done: list[dict[str, str]] = []
        try:
            for user in self.opts.users:
                for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
                    if k["Status"] != "Inactive":
                        iam.update_access_key(UserName=user, AccessKeyId=k["AccessKeyId"], Status="Inactive")
                    action = "deactivated"
                    if self.opts.delete_keys:
                        iam.delete_access_key(UserName=user, AccessKeyId=k["AccessKeyId"])
                        action = "deactivated+deleted"
                    keys_done.append({"user": user, "access_key_id": k["AccessKeyId"], "action": action})
                    ctx.detail["access_keys"] = keys_done
            cutoff = _now()
            doc = {"Version": "2012-10-17", "Statement": [{
                "Sid": "RevokeSessionsIssuedBeforeContainment", "Effect": "Deny", "Action": "*", "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}}}]}
            for role in self.opts.roles:
                iam.put_role_policy(RoleName=role, PolicyName=self.policy_name(), PolicyDocument=json.dumps(doc))
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, "revoking credentials") from None
        ctx.info(f"revoked: {len(keys_done)} access key(s), {len(self.opts.roles)} role session policy(ies)")
        return {"access_keys": keys_done, "role_policies": [{"role": r, "policy": self.policy_name(),
                                                             "token_issued_before": cutoff} for r in self.opts.roles]}

    # -- 5 -----------------------------------------------------------------------------------
    def logging_check(self, _ctx: StepContext) -> Any:
        return {"trail": self.o.trail_name, "is_logging": True} if self.inc.trail_logging() else False

    def ensure_logging(self, _ctx: StepContext) -> dict[str, Any]:
        try:
            self.inc.ct.start_logging(Name=self.o.trail_name)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"starting trail {self.o.trail_name}") from None
        if not self.inc.trail_logging():
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
            Step("open-record", self.open_record, touches=f"s3://{o.backup_bucket_name}/{record_key(self.inc.id)}",
                 check=self.open_check),
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
    journal, plan = execute(c.runbook(), store, yes=yes, dry_run=dry_run, reporter=reporter)
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
    image = inc.find_image(instance_id)
    if image is None or image.get("State") != "available":
        raise EvidenceMissingError(f"incident {inc.id} has no available forensic image of {instance_id}",
                                   "rerun `recovery contain` for it; terminating now would destroy the evidence")
    vols = rec.get("instance_before", {}).get("volumes", [])
    missing = [v for v in vols if (inc.find_snapshot(v) or {}).get("State") != "completed"]
    if missing:
        raise EvidenceMissingError(f"incident {inc.id} lacks completed snapshots of {', '.join(missing)}",
                                   "rerun `recovery contain` for it before terminating")
    return {"image_id": image["ImageId"], "volumes": vols}


def terminate(outputs: StackOutputs, instance_id: str, incident_id: str, store: JournalStore, *, yes: bool = False,
              dry_run: bool = False, reporter: Any = None) -> tuple[Journal | None, dict[str, Any] | None]:
    inc = Incident(outputs, incident_id)
    inc.instance(instance_id)
    check_evidence(inc, instance_id)  # refuse before anything, dry run included

    def gone(_ctx: StepContext) -> Any:
        state = inc.instance(instance_id).get("State", {}).get("Name")
        return {"state": state} if state in ("shutting-down", "terminated") else False

    def do_terminate(ctx: StepContext) -> dict[str, Any]:
        evidence = check_evidence(inc, instance_id)
        try:
            inc.ec2.terminate_instances(InstanceIds=[instance_id])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"terminating {instance_id}") from None
        return {"terminated": instance_id, **evidence}

    def note(ctx: StepContext) -> dict[str, Any]:
        rec = inc.load() or {}
        rec["terminated_at"] = rec.get("terminated_at") or _now()
        rec["terminate_run_id"] = ctx.run_id
        return {"record": inc.save(rec)}

    steps = [Step("terminate", do_terminate, touches=f"EC2 instance {instance_id} (terminated)", check=gone),
             Step("update-record", note, touches="the incident record")]
    rb = Runbook("contain-terminate", steps,
                 Target(f"{outputs.stack}:{incident_id}", production=outputs.production), destructive=True,
                 params={"instance": instance_id})
    return execute(rb, store, yes=yes, dry_run=dry_run, reporter=reporter)


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
        try:
            pages = inc.ct.get_paginator("lookup_events").paginate(
                LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}], StartTime=start)
            for page in pages:
                for e in page.get("Events", []):
                    events[e.get("EventId") or f"{e.get('EventTime')}-{e.get('EventName')}"] = {
                        **_event(e), "matched": f"{key}={value}"}
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"looking up CloudTrail events for {value}") from None
        if say:
            say(f"cloudtrail: {key}={value}: {len(events)} event(s) so far")
    ordered = sorted(events.values(), key=lambda e: e["time"])
    rec["investigation"] = {"at": _now(), "since": start.isoformat(timespec="seconds"), "events": ordered}
    where = inc.save(rec)
    md, page = report(rec)
    inc.put(record_key(incident_id, "report.md"), md, "text/markdown")
    inc.put(record_key(incident_id, "report.html"), page, "text/html")
    base = f"s3://{outputs.backup_bucket_name}/incidents/{incident_id}/"
    return {"incident_id": incident_id, "record": where, "events": len(ordered),
            "report_md": base + "report.md", "report_html": base + "report.html"}


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


def report(rec: dict[str, Any]) -> tuple[str, str]:
    head = f"Incident {rec.get('incident_id')} — {rec.get('instance_id')} ({rec.get('stack')})"
    facts = [("Instance", rec.get("instance_id")), ("VPC", rec.get("vpc_id")),
             ("Quarantine group", rec.get("quarantine_group_id")), ("Forensic image", rec.get("image_id")),
             ("Snapshots", ", ".join(f"{v}: {s}" for v, s in rec.get("snapshots", {}).items()) or "-"),
             ("Access keys deactivated", ", ".join(f"{k['user']}/{k['access_key_id']} ({k['action']})"
                                                   for k in rec.get("access_keys", [])) or "-"),
             ("Role session policies", ", ".join(p["role"] for p in rec.get("role_policies", [])) or "-"),
             ("Trail", (rec.get("trail") or {}).get("name"))]
    rows = timeline(rec)
    md = [f"# {head}", "", "## Facts", ""] + [f"- **{k}**: {v}" for k, v in facts]
    md += ["", "## Timeline (UTC)", "", "| time | event |", "|---|---|"]
    md += [f"| {t} | {w.replace('|', '/')} |" for t, w in rows]
    md += ["", "## Follow-ups (fill in)", ""] + [f"- [ ] {f}" for f in rec.get("follow_ups", FOLLOW_UPS)]
    e = html.escape
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(head)}</title></head><body>"
            f"<h1>{e(head)}</h1><h2>Facts</h2><ul>" + "".join(f"<li><b>{e(k)}</b>: {e(str(v))}</li>" for k, v in facts)
            + "</ul><h2>Timeline (UTC)</h2><table border='1'><tr><th>time</th><th>event</th></tr>"
            + "".join(f"<tr><td>{e(t)}</td><td>{e(w)}</td></tr>" for t, w in rows)
            + "</table><h2>Follow-ups (fill in)</h2><ul>"
            + "".join(f"<li>&#9744; {e(f)}</li>" for f in rec.get("follow_ups", FOLLOW_UPS)) + "</ul></body></html>")
    return "\n".join(md) + "\n", page


__all__ = ["ContainOptions", "Containment", "contain", "terminate", "investigate", "report", "default_incident_id",
           "time"]
