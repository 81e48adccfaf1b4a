"""The two halves meet: every AWS call each command makes, evaluated against exactly the policies
`infra/` renders, and every action those policies grant, called by some runbook.

The local environment is the program deployed into the emulator (recovery/local/deploy.py), and
the emulator authorises every request as AWS would: the caller's identity policies, the bucket
policy, conditions (recovery/local/iam_authorizer.py, evaluated by @cloud-copilot/iam-simulate).
It records each request it authorised: who, which IAM action, on which resource, and the decision.
This module runs a battery of commands that together exercise every job, attributes the records to
the command that was running, and fails

- when a call by a job's role was denied: naming the command, action, resource and why;
- when a job's policy grants an action on a resource that no recorded call used, unless
  `NOT_CALLED_HERE` lists it with the reason.

Two control tests prove each rule fires: one takes a needed action out of a deployed policy and
runs the command that needs it, one adds an action no runbook calls.
"""

from __future__ import annotations

import calendar
import copy
import fnmatch
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.local.deploy import admin_client
from recovery.local.iam_authorizer import read_records
from cli_env import isolated_env, run_cli

JOBS = ("backup", "restore", "failover", "rotate", "contain")

# (stack, job, action) -> why no command of the battery calls it, though the job needs it in AWS.
NOT_CALLED_HERE = {
    **{(s, j, a): "S3 calls KMS on the caller's behalf for SSE-KMS objects; the emulator's S3 does not"
       for s in ("local", "local-dr") for j in JOBS for a in ("kms:Decrypt", "kms:GenerateDataKey")},
    **{(s, j, "s3:AbortMultipartUpload"): "only on a failed upload: the tool aborts what it started"
       for s in ("local", "local-dr") for j in ("backup", "restore")},
    **{(s, "failover", "rds:FailoverGlobalCluster"): "the battery switches over (the drill fails over)"
       for s in ("local", "local-dr")},
    ("local", "failover", "cloudwatch:GetMetricStatistics"): "lag is read from CloudWatch only when the "
    "standby cannot be queried; the local DR site's standby always can",
    ("local-dr", "failover", "cloudwatch:GetMetricStatistics"): "as for local",
}


@dataclass
class Battery:
    env: dict[str, str]
    dir: Path
    state: dict[str, Any]
    outputs: dict[str, dict[str, Any]]
    ran: list[tuple[str, float, float, int, str]] = field(default_factory=list)

    @property
    def records_file(self) -> Path:
        return self.dir / "authorization.jsonl"

    def admin(self, service: str, region: str = "us-east-1") -> Any:
        return admin_client(service, region, self.state["aws"]["endpoint"], self.state["aws"]["ca_bundle"])

    def run(self, label: str, *args: str, expect: int = 0) -> Any:
        t0 = time.time()
        r = run_cli(self.env, *args, timeout=600)
        self.ran.append((label, t0, time.time(), r.returncode, r.stderr.strip().splitlines()[-1:][0]
                         if r.stderr.strip() else ""))
        assert r.returncode == expect, f"{label}: exit {r.returncode}: {r.stderr[-2000:]}"
        return r

    def command_at(self, when: str) -> str:
        """The command that was running at a record's time (whole seconds, UTC)."""
        t = calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ"))
        running = [label for label, t0, t1, *_ in self.ran if int(t0) <= t <= t1 + 1]
        return " or ".join(running) or "(no command)"

    def policies(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The job policies as deployed, i.e. as the program rendered them (inline, one per role)."""
        iam = self.admin("iam")
        docs = {}
        for stack, out in self.outputs.items():
            for job, arn in out["recovery_role_arns"].items():
                name = arn.rsplit("/", 1)[-1]
                for pname in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                    doc = iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]
                    doc = json.loads(doc) if isinstance(doc, str) else doc
                    docs.setdefault((stack, job), {"arn": arn, "statements": []})["statements"] += doc["Statement"]
        return docs


def _stacks(d: Path) -> dict[str, dict[str, Any]]:
    backend = d / "backend" / ".pulumi" / "stacks" / "xai-dr"
    return {s: json.loads((backend / f"{s}.json").read_text())["checkpoint"]["latest"]["resources"][0]["outputs"]
            for s in ("local", "local-dr")}


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battery]:
    tmp = tmp_path_factory.mktemp("jobs")
    d = tmp / "env"
    env = isolated_env(RECOVERY_LOCAL_DIR=str(d), RECOVERY_JOURNAL_DIR=str(tmp / "journal"),
                       RECOVERY_REPORT_DIR=str(tmp / "reports"))
    up = run_cli(env, "local", "up", "--mine-interval", "0.25")
    assert up.returncode == 0, up.stderr
    b = Battery(env, d, json.loads((d / "state.json").read_text()), _stacks(d))
    try:
        _exercise(b, tmp)
        yield b
    finally:
        run_cli(env, "local", "down")


def _exercise(b: Battery, tmp: Path) -> None:
    """Every command, as an on-call engineer or a backup host would run it, on both sites."""
    local = ("--stack", "local")
    b.run("drill full", "drill", "full", *local, "--report-dir", str(tmp / "reports"))
    b.run("backup db", "backup", "db", *local)
    b.run("backup chain", "backup", "chain", *local)
    cfg = tmp / "config"
    cfg.mkdir()
    (cfg / "node.toml").write_text("[node]\nport = 8080\n")
    b.run("backup config", "backup", "config", *local, str(cfg))
    b.run("list", "list", *local)
    b.run("verify", "verify", *local)
    b.run("verify dr", "verify", "--stack", "local-dr")
    b.run("offsite sync", "offsite", "sync", *local, "--dest", str(tmp / "offsite"))
    b.run("status", "status", *local)
    b.run("metrics", "metrics", *local, "--json")
    b.run("restore db", "restore", "db", *local, "--yes", "--force")
    b.run("restore chain", "restore", "chain", *local, "--yes")
    pitr_to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    b.run("restore pitr", "restore", "pitr", *local, "--to-time", pitr_to, "--new-cluster", "xai-local-pitr", "--yes")
    b.run("rotate all", "rotate", "all", *local, "--yes", "--no-grace")
    b.run("failover (switchover)", "failover", "--stack", "local-dr", "--mode", "switchover", "--yes")
    b.run("backup db on dr", "backup", "db", "--stack", "local-dr")
    b.run("failback", "failback", *local, "--yes")
    iid = _instance(b)
    b.run("contain", "contain", *local, "--instance", iid, "--user", "mallory",
          "--role", b.outputs["local"]["recovery_role_arns"]["backup"].rsplit("/", 1)[-1], "--incident", "INC-1", "--yes")
    b.run("investigate", "investigate", *local, "--incident", "INC-1")
    b.run("contain terminate", "contain", "terminate", *local, "--instance", iid, "--incident", "INC-1", "--yes")


def _instance(b: Battery) -> str:
    """A compromised host in the site's VPC, and a user with a key (as the containment tests make them)."""
    ec2, iam = b.admin("ec2"), b.admin("iam")
    vpc = b.outputs["local"]["vpc_id"]
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.30.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = str(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=sub)["Instances"][0]["InstanceId"])
    iam.create_user(UserName="mallory")
    iam.create_access_key(UserName="mallory")
    return iid


# ------------------------------------------------------------------------------------- the rules


def denials(records: list[dict[str, Any]], role_arns: set[str]) -> list[dict[str, Any]]:
    """Calls by a job role that the program's policies refuse."""
    return [r for r in records if r.get("principal_arn") in role_arns and r.get("decision") != "Allowed"]


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def unused_grants(policies: dict[tuple[str, str], dict[str, Any]], records: list[dict[str, Any]],
                  excused: dict[tuple[str, str, str], str]) -> list[str]:
    """(stack, job, action, resource) granted but never used by an allowed call of that role."""
    allowed = [r for r in records if r.get("decision") == "Allowed"]
    unused = []
    for (stack, job), p in sorted(policies.items()):
        calls = [r for r in allowed if r.get("principal_arn") == p["arn"]]
        for s in p["statements"]:
            if s.get("Effect") != "Allow":
                continue
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            for action in actions:
                if (stack, job, action) in excused:
                    continue
                for res in resources:
                    if not any(c["action"].lower() == action.lower() and _matches(res, c["resource"]) for c in calls):
                        unused.append(f"{stack}/{job}: {action} on {res} (statement {s.get('Sid')}) is granted "
                                      "but no runbook called it")
    return unused


def _role_arns(b: Battery) -> set[str]:
    return {arn for out in b.outputs.values() for arn in out["recovery_role_arns"].values()}


def test_every_call_of_every_command_is_allowed_by_the_programs_policies(battery: Battery) -> None:
    records = read_records(str(battery.records_file))
    assert records, "the emulator recorded no authorisation at all"
    by_role = {r.get("principal_arn") for r in records}
    assert _role_arns(battery) <= by_role | set(), "every job's role made calls in the battery"
    bad = [f"{battery.command_at(r['time'])}: {r['action']} on {r['resource']} denied for {r['principal_arn']} "
           f"({r.get('detail')})" for r in denials(records, _role_arns(battery))]
    assert not bad, "\n".join(bad)
    assert not [r for r in records if r.get("principal_arn") == battery.state["oncall"]["arn"]
                and r["action"] != "sts:AssumeRole"], "commands act as their job's role, never as the base identity"


def test_every_granted_action_is_called_by_some_runbook(battery: Battery) -> None:
    unused = unused_grants(battery.policies(), read_records(str(battery.records_file)), NOT_CALLED_HERE)
    assert not unused, "\n".join(unused)


def test_control_a_missing_action_fails_the_command_and_is_named(battery: Battery) -> None:
    iam = battery.admin("iam")
    role = battery.outputs["local"]["recovery_role_arns"]["backup"].rsplit("/", 1)[-1]
    original = iam.get_role_policy(RoleName=role, PolicyName="backup")["PolicyDocument"]
    original = json.loads(original) if isinstance(original, str) else original
    broken = copy.deepcopy(original)
    for s in broken["Statement"]:
        if s["Sid"] == "WriteBackups":
            s["Action"] = [a for a in s["Action"] if a != "s3:PutObject"]
    iam.put_role_policy(RoleName=role, PolicyName="backup", PolicyDocument=json.dumps(broken))
    try:
        seen = len(read_records(str(battery.records_file)))
        r = battery.run("backup db without s3:PutObject", "backup", "db", "--stack", "local", expect=5)
        assert "denied" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        new = read_records(str(battery.records_file))[seen:]
        [d] = {(x["action"], x["resource"].split("/", 1)[0]) for x in denials(new, _role_arns(battery))} or [None]
        assert d == ("s3:PutObject", f"arn:aws:s3:::{battery.outputs['local']['backup_bucket_name']}")
    finally:
        iam.put_role_policy(RoleName=role, PolicyName="backup", PolicyDocument=json.dumps(original))


def test_control_an_action_no_runbook_calls_is_reported(battery: Battery) -> None:
    policies = battery.policies()
    bucket = battery.outputs["local"]["backup_bucket_arn"]
    policies[("local", "backup")]["statements"].append(
        {"Sid": "Unneeded", "Effect": "Allow", "Action": ["s3:DeleteBucket"], "Resource": bucket})
    unused = unused_grants(policies, read_records(str(battery.records_file)), NOT_CALLED_HERE)
    assert unused == [f"local/backup: s3:DeleteBucket on {bucket} (statement Unneeded) is granted but no runbook "
                      "called it"]
