"""`recovery contain`, `contain terminate` and `investigate` against the emulator (the local environment's
AWS daemon, which records CloudTrail events and serves lookup_events), through the real CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

import prewarmed_cli
from cli_env import isolated_env

_SUBNET = [10]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return prewarmed_cli.run("recovery", args, env=env, timeout=180)


class Emu:
    def __init__(self, env: dict[str, str]) -> None:
        d = Path(env["RECOVERY_LOCAL_DIR"])
        aws = json.loads((d / "state.json").read_text())["aws"]
        self.endpoint, self.ca_bundle = aws["endpoint"], aws["ca_bundle"]
        res = json.loads((d / "backend/.pulumi/stacks/xai-dr/local.json").read_text())["checkpoint"]["latest"]["resources"]
        self.outputs = res[0]["outputs"]

    def client(self, service: str, **creds: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.endpoint, verify=self.ca_bundle,
                            aws_access_key_id=creds.get("key", "testing"),
                            aws_secret_access_key=creds.get("secret", "testing"))

    def instance(self, vpc_id: str | None = None) -> str:
        """An instance with two network interfaces in the stack's VPC (or vpc_id)."""
        ec2 = self.client("ec2")
        _SUBNET[0] += 1
        vpc = vpc_id or self.outputs["vpc_id"]
        cidr = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlock"].split(".")
        sub = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{cidr[0]}.{cidr[1]}.{_SUBNET[0]}.0/24")["Subnet"]["SubnetId"]
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=sub)["Instances"][0]["InstanceId"]
        eni = ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=iid, DeviceIndex=1)
        return str(iid)

    def user(self, name: str) -> list[str]:
        iam = self.client("iam")
        iam.create_user(UserName=name)
        # what the compromised user may do (the emulator enforces IAM)
        iam.put_user_policy(UserName=name, PolicyName="ec2-read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}]}))
        keys = [iam.create_access_key(UserName=name)["AccessKey"] for _ in range(2)]
        # the "attacker" uses a key, so CloudTrail has something to show for the user
        self.client("ec2", key=keys[0]["AccessKeyId"], secret=keys[0]["SecretAccessKey"]).describe_instances()
        return [k["AccessKeyId"] for k in keys]

    def snapshot(self) -> dict[str, Any]:
        """Everything containment could change, to prove 'no change' after a refusal."""
        ec2, iam = self.client("ec2"), self.client("iam")
        return {
            "groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
            "enis": sorted((e["NetworkInterfaceId"], tuple(g["GroupId"] for g in e["Groups"]))
                           for e in ec2.describe_network_interfaces()["NetworkInterfaces"]),
            "images": len(ec2.describe_images(Owners=["self"])["Images"]),
            "snapshots": len(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]),
            "keys": sorted((u["UserName"], k["AccessKeyId"], k["Status"]) for u in iam.list_users()["Users"]
                           for k in iam.list_access_keys(UserName=u["UserName"])["AccessKeyMetadata"]),
            "incidents": self.keys("incidents/"),
        }

    def keys(self, prefix: str) -> list[str]:
        r = self.client("s3").list_objects_v2(Bucket=self.outputs["backup_bucket_name"], Prefix=prefix)
        return sorted(o["Key"] for o in r.get("Contents", []))

    def text(self, key: str) -> str:
        s3 = self.client("s3")
        return s3.get_object(Bucket=self.outputs["backup_bucket_name"], Key=key)["Body"].read().decode()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    d = tmp_path_factory.mktemp("contain") / "env"
    e = isolated_env()
    e["RECOVERY_LOCAL_DIR"] = str(d)
    # containment needs no cache; this environment also shows what happens without redis-server
    up = cli({**e, "RECOVERY_REDIS_SERVER": "none"}, "local", "up", "--mine-interval", "2")
    assert up.returncode == 0, up.stderr
    yield e
    cli(e, "local", "down")


@pytest.fixture(scope="module")
def emu(env: dict[str, str]) -> Emu:
    return Emu(env)


def test_contain_isolates_preserves_revokes_logs_and_records(env: dict[str, str], emu: Emu) -> None:
    iid = emu.instance()
    keys = emu.user("mallory")
    role = emu.outputs["recovery_role_arns"]["backup"].rsplit("/", 1)[-1]
    ct = emu.client("cloudtrail")
    ct.stop_logging(Name=emu.outputs["trail_name"])
    base = ["contain", "--stack", "local", "--instance", iid, "--user", "mallory", "--role", role, "--incident", "INC-7"]
    dry = cli(env, *base, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert emu.keys("incidents/INC-7/") == []
    r = cli(env, *base, "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "ok"

    ec2, iam = emu.client("ec2"), emu.client("iam")
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["xai-quarantine"]}])["SecurityGroups"]
    assert len(groups) == 1
    q = groups[0]
    assert q["VpcId"] == emu.outputs["vpc_id"] and q["IpPermissions"] == [] and q["IpPermissionsEgress"] == []
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["NetworkInterfaces"]
    assert len(enis) == 2
    for eni in enis:
        assert [g["GroupId"] for g in eni["Groups"]] == [q["GroupId"]], "every interface carries only the quarantine group"
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:xai:incident-id", "Values": ["INC-7"]}])["Images"]
    assert len(images) == 1 and images[0]["State"] == "available"
    snaps = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:xai:incident-id", "Values": ["INC-7"]}])["Snapshots"]
    assert snaps and all(s["State"] == "completed" for s in snaps)
    statuses = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName="mallory")["AccessKeyMetadata"]}
    assert statuses == {k: "Inactive" for k in keys}
    policy = iam.get_role_policy(RoleName=role, PolicyName="xai-incident-revoke-sessions-INC-7")["PolicyDocument"]
    policy = policy if isinstance(policy, dict) else json.loads(policy)
    assert "aws:TokenIssueTime" in json.dumps(policy) and policy["Statement"][0]["Effect"] == "Deny"
    assert ct.get_trail_status(Name=emu.outputs["trail_name"])["IsLogging"]

    rec = json.loads(emu.text("incidents/INC-7/record.json"))
    assert rec["quarantine_group_id"] == q["GroupId"]
    assert sorted(rec["isolated_interfaces"]) == sorted(e["NetworkInterfaceId"] for e in enis)
    assert rec["image_id"] == images[0]["ImageId"]
    assert sorted(rec["snapshots"].values()) == sorted(s["SnapshotId"] for s in snaps)
    assert sorted(k["access_key_id"] for k in rec["access_keys"]) == sorted(keys)
    assert rec["role_policies"][0]["role"] == role and rec["trail"]["is_logging"]
    assert set(rec["timings_s"]) >= {"isolate", "preserve-evidence", "revoke-credentials"}
    assert all(len(e["groups"]) == 1 and e["groups"][0] != q["GroupId"] for e in rec["instance_before"]["interfaces"])

    # a rerun creates no second group, image, snapshot or policy
    before = emu.snapshot()
    again = cli(env, *base, "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert {s["name"]: s["status"] for s in json.loads(again.stdout)["steps"]}["preserve-evidence"] == "held"
    after = emu.snapshot()
    assert {k: v for k, v in after.items() if k != "incidents"} == {k: v for k, v in before.items() if k != "incidents"}

    # investigate: the user's and the instance's CloudTrail events, the report with the plan's follow-ups
    inv = cli(env, "investigate", "--stack", "local", "--incident", "INC-7", "--json")
    assert inv.returncode == 0, inv.stderr
    assert json.loads(inv.stdout)["events"] > 0
    rec = json.loads(emu.text("incidents/INC-7/record.json"))
    events = rec["investigation"]["events"]
    assert any(e["user"] == "mallory" for e in events), "the compromised user's own calls are listed"
    assert any(iid in " ".join(e["resources"]) for e in events)
    md, page = emu.text("incidents/INC-7/report.md"), emu.text("incidents/INC-7/report.html")
    assert "Timeline" in md and "Root cause" in md and "Lessons learned" in md and q["GroupId"] in md
    assert page.startswith("<!doctype html>") and "Root cause" in page

    # terminate: only with evidence
    term = cli(env, "contain", "terminate", "--stack", "local", "--instance", iid, "--incident", "INC-7", "--yes")
    assert term.returncode == 0, term.stderr
    state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")


def test_terminate_refuses_without_evidence(env: dict[str, str], emu: Emu) -> None:
    iid = emu.instance()
    r = cli(env, "contain", "terminate", "--stack", "local", "--instance", iid, "--incident", "INC-none", "--yes")
    assert r.returncode == 46, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    state = emu.client("ec2").describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


def test_bad_input_is_one_line_distinct_code_and_no_change(env: dict[str, str], emu: Emu) -> None:
    iid = emu.instance()
    emu.user("eve")
    other_vpc = emu.client("ec2").create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    foreign = emu.instance(other_vpc)
    before = emu.snapshot()
    cases = {
        42: ["--instance", "i-0000000000000dead", "--user", "eve"],
        43: ["--instance", iid, "--user", "nobody-such"],
        44: ["--instance", foreign, "--user", "eve"],
    }
    codes = []
    for code, args in cases.items():
        r = cli(env, "contain", "--stack", "local", "--yes", *args)
        assert r.returncode == code, (code, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        codes.append(r.returncode)
    ct = emu.client("cloudtrail")
    trail = emu.outputs["trail_name"]
    ct.delete_trail(Name=trail)
    try:
        r = cli(env, "contain", "--stack", "local", "--yes", "--instance", iid, "--user", "eve")
        assert r.returncode == 45 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        codes.append(r.returncode)
    finally:
        ct.create_trail(Name=trail, S3BucketName=emu.outputs["backup_bucket_name"])
        ct.start_logging(Name=trail)
    assert len(set(codes)) == 4
    assert emu.snapshot() == before, "a refused containment changed nothing"


def contain_commands(env: dict[str, str], local: Any) -> list[str]:
    """Run every containment command with --debug --json on an environment; return all their output."""
    emu = Emu(env)
    iid = emu.instance()
    emu.user("leaky")
    outs: list[str] = []
    for args in (["contain", "--stack", "local", "--json", "--dry-run", "--instance", iid, "--user", "leaky"],
                 ["contain", "--stack", "local", "--json", "--yes", "--instance", iid, "--user", "leaky",
                  "--incident", "INC-LEAK", "--delete-keys"],
                 ["investigate", "--stack", "local", "--json", "--incident", "INC-LEAK"],
                 ["contain", "terminate", "--stack", "local", "--json", "--yes", "--instance", iid,
                  "--incident", "INC-LEAK"],
                 ["contain", "terminate", "--stack", "local", "--json", "--yes", "--instance", iid,
                  "--incident", "INC-MISSING"]):
        r = cli(env, "--debug", *args)
        outs += [r.stdout, r.stderr]
    outs += [emu.text(k) for k in emu.keys("incidents/")]
    return outs


def test_without_redis_server_cache_rotation_is_skipped_with_a_note(env: dict[str, str], emu: Emu) -> None:
    st = json.loads(cli(env, "local", "status", "--json").stdout)
    assert st["redis"]["running"] is False and "not installed" in st["redis"]["note"]
    arn = emu.outputs["cache_secret_arn"]
    sm = emu.client("secretsmanager")
    def versions() -> list[tuple[str, list[str]]]:
        return [(v["VersionId"], v["VersionStages"]) for v in sm.list_secret_version_ids(SecretId=arn)["Versions"]]

    before = versions()
    r = cli(env, "rotate", "cache", "--stack", "local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    steps = json.loads(r.stdout)["steps"]
    assert [s["name"] for s in steps] == ["cache-skipped"]
    assert "redis-server is not installed" in steps[0]["detail"]["skipped"]
    assert "redis-server is not installed" in r.stderr
    assert versions() == before, "nothing was rotated"
