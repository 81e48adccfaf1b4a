"""The two halves meet: every AWS call each command makes, evaluated against exactly the policies
`infra/` renders, and every action those policies grant, called by some runbook.

The local environment is the program deployed into the emulator (recovery/local/deploy.py), and
the emulator authorises every request as AWS would: the caller's identity policies, the bucket
policy, conditions (recovery/local/iam/, evaluated by @cloud-copilot/iam-simulate).
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
from recovery.local.iam import read_records
from cli_env import isolated_env, run_cli

JOBS = ("backup", "restore", "failover", "rotate", "contain")

# (job, statement Sid, action) -> why no command of the battery calls it, though the job needs it in AWS.
NOT_CALLED_HERE = {
    **{(j, "UseVaultKeyThroughS3", a): "S3 calls KMS on the caller's behalf for SSE-KMS objects; the emulator's "
       "S3 does not" for j in JOBS for a in ("kms:Decrypt", "kms:GenerateDataKey")},
    **{(j, sid, "s3:AbortMultipartUpload"): "only after a failed upload: the tool aborts what it started"
       for j, sid in (("backup", "WriteBackups"), ("restore", "ArchiveReplaced"))},
    **{(j, "ResumeJournals", "s3:GetObject"): "a journal is read back only to resume an interrupted run "
       "(tests/test_runbook.py and the SIGKILL tests do that)" for j in JOBS},
    **{("failover", sid, "s3:GetObject"): "the lock is read only when its conditional create meets one "
       "(tests/test_locks.py, and the stale-lock test of tests/test_failover.py)"
       for sid in ("FailoverLock", "FailoverLockInDrSite")},
    **{(j, "UseEventsKeyThroughSns", a): "SNS calls KMS on the publisher's behalf for an encrypted topic; the "
       "emulator's SNS does not" for j in ("backup", "failover", "rotate", "contain") for a in ("kms:Decrypt", "kms:GenerateDataKey")},
    **{(j, sid, a): "the backup and rotate jobs publish only when something fails or goes stale, which the battery "
       "never makes happen (tests/test_notifications.py does)" for j in ("backup", "rotate")
       for sid, a in (("PublishEvents", "sns:Publish"), ("ReadWebhooks", "secretsmanager:GetSecretValue"))},
    ("failover", "GlobalClusterFailover", "rds:FailoverGlobalCluster"): "the battery switches over; "
    "tests/test_failover.py fails over",
    ("failover", "ReadLag", "cloudwatch:GetMetricStatistics"): "lag is read from CloudWatch only when the standby "
    "cannot be queried; the local DR site's standby always can",
    ("restore", "PointInTimeRestore", "rds:AddTagsToResource"): "AWS checks it behind the Tags of "
    "RestoreDBClusterToPointInTime and CreateDBInstance; the emulator does not check dependent actions",
    ("contain", "TagOnCreate", "ec2:CreateTags"): "AWS checks it behind TagSpecifications; the emulator does not "
    "check dependent actions",
    ("contain", "RevokeRoleSessions", "iam:ListRolePolicies"): "read by the step's check, which runs when a run "
    "is resumed (tests/test_contain.py reruns containment)",
}
# (stack, job, statement Sid) -> why that statement is not exercised on that site at all.
SITE_NOT_EXERCISED = {
    **{("local-dr", "rotate", sid): "rotating the DR site's DB secret (a replica of the primary's, read-only) and "
       "its cache token (no redis-server backs the DR group) is a known gap of `recovery rotate`; the same "
       "statements are exercised on local" for sid in ("RotateSecrets", "SetDatabasePassword", "SetCacheToken")},
    **{("local-dr", "restore", sid): "no redis-server backs the DR group, so the redis drills run on local only; "
       "the same statements are exercised there" for sid in ("CacheRecovery", "CacheRecreate", "CacheToken")},
    **{("local-dr", "restore", sid): "the DR cluster has no WAL archive locally, so its restored clusters answer no "
       "SQL and a cutover stops at verify-new (tests/test_restore_cutover.py); the primary's cutover exercises "
       "the same repoint, and the DR failover's role the same calls on this site"
       for sid in ("RepointClients", "EndpointParameter", "PromoteSecretReplica")},
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
    local, dr = ("--stack", "local"), ("--stack", "local-dr")
    b.run("drill full", "drill", "full", *local, "--report-dir", str(tmp / "reports"))
    b.run("backup db", "backup", "db", *local)
    b.run("backup chain", "backup", "chain", *local)
    cfg = tmp / "config"
    cfg.mkdir()
    (cfg / "node.toml").write_text("[node]\nport = 8080\n")
    b.run("backup config", "backup", "config", *local, str(cfg))
    b.run("list", "list", *local)
    b.run("drill db", "drill", "db", *local, "--report-dir", str(tmp / "reports"))
    b.run("verify", "verify", *local)
    b.run("offsite sync", "offsite", "sync", *local, "--dest", str(tmp / "offsite"))
    b.run("status", "status", *local)
    b.run("sites", "sites", *local)
    b.run("metrics", "metrics", *local, "--json")
    b.run("restore db", "restore", "db", *local, "--yes", "--force")
    b.run("restore chain", "restore", "chain", *local, "--yes", "--archive-current")
    b.run("restore config", "restore", "config", *local, "--yes", "--path", str(cfg))
    b.run("runs list", "runs", "list", *local)
    b.run("runs show", "runs", "show", "latest", *local)
    b.run("backup describe", "backup", "describe", "latest-db", *local)
    b.run("quarantine list", "quarantine", "list", *local)
    b.run("quarantine prune", "quarantine", "prune", *local, "--older-than", "1s", "--yes")
    pitr_to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    b.run("restore pitr", "restore", "pitr", *local, "--to-time", pitr_to, "--new-cluster", "xai-local-pitr", "--yes")
    snap = _cluster_snapshot(b, "local")
    b.run("restore snapshot", "restore", "snapshot", *local, "--snapshot", snap, "--new-cluster", "xai-local-snap", "--yes")
    b.run("rotate all", "rotate", "all", *local, "--yes", "--no-grace")
    b.run("partition rejoin", "partition", "rejoin", *local, "--peers", "10.0.1.11:8333", "--min-peers", "1",
          "--interval", "0.3s", "--timeout", "30s")
    _lose_dr_chain_data(b, tmp)  # so the failover restores the DR node's chain, as its role allows
    b.run("failover (switchover)", "failover", *dr, "--mode", "switchover", "--yes")
    # The DR site is the writer now: everything an on-call engineer would run there.
    b.run("partition rejoin dr", "partition", "rejoin", *dr, "--peers", "10.0.1.11:8333", "--min-peers", "1",
          "--interval", "0.3s", "--timeout", "30s")
    b.run("drill chain dr", "drill", "chain", *dr, "--report-dir", str(tmp / "reports"))
    b.run("backup db on dr", "backup", "db", *dr)
    b.run("backup chain on dr", "backup", "chain", *dr)
    b.run("verify dr", "verify", *dr)
    b.run("status dr", "status", *dr)
    b.run("sites dr", "sites", *dr)
    b.run("list dr", "list", *dr)
    b.run("restore pitr dr", "restore", "pitr", *dr, "--to-time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "--new-cluster", "xai-local-dr-pitr", "--yes")
    _cluster_snapshot(b, "local-dr")
    b.run("restore snapshot dr", "restore", "snapshot", *dr, "--new-cluster", "xai-local-dr-snap", "--yes")
    b.run("restore db dr", "restore", "db", *dr, "--yes", "--force")
    b.run("restore chain dr", "restore", "chain", *dr, "--yes", "--archive-current")
    b.run("quarantine prune dr", "quarantine", "prune", *dr, "--older-than", "1s", "--yes")
    b.run("rotate app dr", "rotate", "app", *dr, "--yes")
    b.run("failback", "failback", *local, "--yes")
    # The failback's promotion took a new base on the primary (restored_clusters.renew_base), so a
    # restore there is a real server again: the cutover moves the clients to it, as the restore role
    # allows. Last of the database commands: the clients stay on the restored cluster.
    time.sleep(1.1)
    cut_to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1.1)
    b.run("restore pitr --cutover", "restore", "pitr", *local, "--to-time", cut_to, "--new-cluster", "xai-local-cut",
          "--cutover", "--yes")
    for stack, site in (("local", local), ("local-dr", dr)):
        iid = _instance(b, stack)
        b.admin("cloudtrail", b.outputs[stack]["region"]).stop_logging(Name=b.outputs[stack]["trail_name"])
        # every role containment may revoke: the stack's other job roles (and, DR, the replication role)
        roles = [arn for job, arn in b.outputs[stack]["recovery_role_arns"].items() if job != "contain"]
        roles += [b.outputs[stack]["replication_role_arn"]] if stack == "local-dr" else []
        role_args = [w for arn in roles for w in ("--role", arn.rsplit("/", 1)[-1])]
        b.run(f"contain {stack}", "contain", *site, "--instance", iid, "--user", f"mallory-{stack}", *role_args,
              "--incident", f"INC-{stack}", "--delete-keys", "--yes")
        b.run(f"investigate {stack}", "investigate", *site, "--incident", f"INC-{stack}")
        b.run(f"contain terminate {stack}", "contain", "terminate", *site, "--instance", iid,
              "--incident", f"INC-{stack}", "--yes")


def _lose_dr_chain_data(b: Battery, tmp: Path) -> None:
    """The DR node's data directory is gone (moved aside with the node stopped, through its own
    service control): the next failover must restore it from the replicated chain backup."""
    from recovery.services import ServiceControl, ServicesConfig

    sc = ServiceControl(ServicesConfig.from_file(b.dir / "services-dr.json"))
    sc.stop_all()
    Path(b.state["dr"]["node"]["data_dir"]).rename(tmp / "lost-dr-chain-data")
    sc.start_all()


def _cluster_snapshot(b: Battery, stack: str) -> str:
    """A snapshot of the site's cluster, made as the account (as AWS Backup or an operator makes one); its ARN."""
    out = b.outputs[stack]
    snap = b.admin("rds", out["region"]).create_db_cluster_snapshot(
        DBClusterIdentifier=out["db_cluster_id"], DBClusterSnapshotIdentifier=f"{out['db_cluster_id']}-jobs")
    return str(snap["DBClusterSnapshot"]["DBClusterSnapshotArn"])


def _instance(b: Battery, stack: str) -> str:
    """A compromised host in the site's VPC, and a user with a key (as the containment tests make them)."""
    region = b.outputs[stack]["region"]
    ec2, iam = b.admin("ec2", region), b.admin("iam")
    sub = ec2.create_subnet(VpcId=b.outputs[stack]["vpc_id"], CidrBlock="10.40.30.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = str(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=sub)["Instances"][0]["InstanceId"])
    eni = ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=iid, DeviceIndex=1)
    iam.create_user(UserName=f"mallory-{stack}")
    iam.create_access_key(UserName=f"mallory-{stack}")
    return iid


# ------------------------------------------------------------------------------------- the rules


def denials(records: list[dict[str, Any]], role_arns: set[str]) -> list[dict[str, Any]]:
    """Calls by a job role that the program's policies refuse."""
    return [r for r in records if r.get("principal_arn") in role_arns and r.get("decision") != "Allowed"]


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def unused_grants(policies: dict[tuple[str, str], dict[str, Any]], records: list[dict[str, Any]],
                  excused: dict[tuple[str, str, str], str],
                  not_exercised: dict[tuple[str, str, str], str] | None = None) -> list[str]:
    """Grants no allowed call of that role used: an action of a statement that no call made on any of
    the statement's resources, or a resource of a statement that no call of its actions touched."""
    allowed = [r for r in records if r.get("decision") == "Allowed"]
    unused = []
    for (stack, job), p in sorted(policies.items()):
        calls = [r for r in allowed if r.get("principal_arn") == p["arn"]]
        for s in p["statements"]:
            if s.get("Effect") != "Allow":
                continue
            actions = [a for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
                       if (job, s.get("Sid"), a) not in excused]
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            if (stack, job, s.get("Sid")) in (not_exercised or {}):
                continue

            def used(action: str, res: str) -> bool:
                return any(a.lower() == action.lower() and _matches(res, r) for c in calls
                           for a, r in c.get("checked") or [[c["action"], c["resource"]]])

            for action in actions:
                if not any(used(action, res) for res in resources):
                    unused.append(f"{stack}/{job}: {action} (statement {s.get('Sid')}) is granted but no runbook "
                                  "called it")
            for res in resources:
                if actions and not any(used(action, res) for action in actions):
                    unused.append(f"{stack}/{job}: {res} (statement {s.get('Sid')}) is granted but no runbook "
                                  "touched it")
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
                and r["action"] not in ("sts:AssumeRole", "sts:GetCallerIdentity")], \
        "commands act as their job's role, never as the base identity (it only finds out who it is and assumes)"


def test_every_granted_action_is_called_by_some_runbook(battery: Battery) -> None:
    unused = unused_grants(battery.policies(), read_records(str(battery.records_file)), NOT_CALLED_HERE,
                           SITE_NOT_EXERCISED)
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
    unused = unused_grants(policies, read_records(str(battery.records_file)), NOT_CALLED_HERE, SITE_NOT_EXERCISED)
    assert unused == ["local/backup: s3:DeleteBucket (statement Unneeded) is granted but no runbook called it",
                      f"local/backup: {bucket} (statement Unneeded) is granted but no runbook touched it"]
