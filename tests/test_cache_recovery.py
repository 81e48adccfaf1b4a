"""`recovery cache failover|recreate` on the local environment: a real redis-server primary + replica,
real SIGKILLs, the real CLI running as the restore job's role against the emulator's ElastiCache.

The tests run in order on one environment: refusals first (nothing changes), then the loss of a
replica (status yellow), of the primary (status red, failover, the rotation still works on both
nodes), of the whole group (recreate, empty), and both drills within the 10-minute RTO.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from cli_env import isolated_env, run_cli
from recovery.cache import CacheTarget, round_trip, token_works
from recovery.local.deploy import admin_client
from recovery.local.emulator import read_record_file
from recovery.local.iam import read_records
from recovery.local.redis_cache import admin_call, read_cfg, restart_redis
from recovery.local.redis_group import kill_nodes

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists(),
                                reason="redis-server missing")


class Env:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.dir = Path(env["RECOVERY_LOCAL_DIR"])
        self.state = json.loads((self.dir / "state.json").read_text())
        backend = self.dir / "backend" / ".pulumi" / "stacks" / "xai-dr" / "local.json"
        self.outputs = json.loads(backend.read_text())["checkpoint"]["latest"]["resources"][0]["outputs"]

    def cli(self, *args: str) -> Any:
        return run_cli(self.env, *args, timeout=300)

    def client(self, service: str) -> Any:
        return admin_client(service, "us-east-1", self.state["aws"]["endpoint"], self.state["aws"]["ca_bundle"])

    def token(self) -> str:
        return str(self.client("secretsmanager").get_secret_value(
            SecretId=self.outputs["cache_secret_arn"], VersionStage="AWSCURRENT")["SecretString"])

    @property
    def endpoint(self) -> CacheTarget:
        return CacheTarget(self.outputs["cache_endpoint"], int(self.outputs["cache_port"]))

    def roles(self) -> dict[str, str]:
        g = self.client("elasticache").describe_replication_groups(
            ReplicationGroupId=self.outputs["cache_replication_group_id"])["ReplicationGroups"][0]
        return {m["CacheClusterId"]: m["CurrentRole"] for m in g["NodeGroups"][0]["NodeGroupMembers"]}

    def replication(self, cid: str) -> bytes:
        cfg = read_cfg(self.dir)
        assert cfg is not None
        return admin_call(int(cfg["nodes"][cid]["port"]), cfg["admin_password"], "INFO", "replication")

    def failovers(self) -> list[dict[str, Any]]:
        return read_record_file(str(self.dir / "emulator-calls.jsonl"), "cache_failover")

    def cache_line(self) -> str:
        r = self.cli("status", "--stack", "local")
        return next(ln for ln in r.stdout.splitlines() if " cache " in f" {ln} ")

    def heal_nodes(self) -> None:
        """Start the nodes that were killed (as an outage's heal does), for the next test."""
        restart_redis(self.dir, self.state["redis"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d = tmp_path_factory.mktemp("cache") / "env"
    e = isolated_env(RECOVERY_LOCAL_DIR=str(d), RECOVERY_REPORT_DIR=str(d.parent / "reports"))
    up = run_cli(e, "local", "up", "--mine-interval", "0.5", timeout=300)
    assert up.returncode == 0, up.stderr
    yield Env(e)
    run_cli(e, "local", "down")


def one_error_line(r: Any) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_the_group_is_a_real_primary_and_replica(env: Env) -> None:
    gid = env.outputs["cache_replication_group_id"]
    assert env.roles() == {f"{gid}-001": "primary", f"{gid}-002": "replica"}
    info = env.replication(f"{gid}-002")
    assert b"role:slave" in info and b"master_link_status:up" in info
    assert round_trip(env.endpoint, env.token())["set_get"] is True
    line = env.cache_line()
    assert line.startswith("✓") and "primary and 1 replica(s) answer" in line


def test_failover_is_refused_while_the_primary_answers(env: Env) -> None:
    r = env.cli("cache", "failover", "--stack", "local", "--yes")
    assert r.returncode == 51
    assert "answers; nothing to fail over" in one_error_line(r)
    assert env.failovers() == [] and env.roles()[f"{env.outputs['cache_replication_group_id']}-001"] == "primary"


def test_recreate_is_refused_while_a_node_answers(env: Env) -> None:
    r = env.cli("cache", "recreate", "--stack", "local", "--yes")
    assert r.returncode == 53
    assert "still answers" in one_error_line(r)
    assert round_trip(env.endpoint, env.token())["ping"] is True  # nothing was deleted


def test_a_lost_replica_is_yellow(env: Env) -> None:
    assert kill_nodes(env.dir, "replica") == [f"{env.outputs['cache_replication_group_id']}-002"]
    line = env.cache_line()
    assert line.startswith("!") and "replica lost" in line, line
    env.heal_nodes()


def test_failover_without_a_healthy_replica_changes_nothing(env: Env) -> None:
    gid = env.outputs["cache_replication_group_id"]
    kill_nodes(env.dir, "replica")
    kill_nodes(env.dir, "primary")
    r = env.cli("cache", "failover", "--stack", "local", "--yes")
    assert r.returncode == 52
    assert "has no replica that answers" in one_error_line(r) and "cache recreate" in r.stderr
    assert env.failovers() == [] and env.roles() == {f"{gid}-001": "primary", f"{gid}-002": "replica"}
    env.heal_nodes()


def test_primary_loss_red_then_failover_as_the_restore_role(env: Env) -> None:
    gid = env.outputs["cache_replication_group_id"]
    assert kill_nodes(env.dir, "primary") == [f"{gid}-001"]
    assert env.cache_line().startswith("✗")
    dry = env.cli("cache", "failover", "--stack", "local", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert [s["name"] for s in json.loads(dry.stdout)["steps"]] == ["detect", "failover", "verify"]
    assert env.failovers() == []  # a dry run changes nothing
    r = env.cli("cache", "failover", "--stack", "local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    journal = json.loads(r.stdout)
    assert journal["status"] == "ok"
    assert {s["name"]: s["status"] for s in journal["steps"]} == {"detect": "ok", "failover": "ok", "verify": "ok"}
    assert env.roles() == {f"{gid}-001": "replica", f"{gid}-002": "primary"}
    assert b"role:master" in env.replication(f"{gid}-002")
    old = env.replication(f"{gid}-001")  # replaced: follows the new primary
    assert b"role:slave" in old and b"master_link_status:up" in old
    assert round_trip(env.endpoint, env.token())["set_get"] is True
    assert env.cache_line().startswith("✓")
    assert env.token() not in r.stdout + r.stderr
    # the calls were the restore job's role's, and allowed
    calls = [c for c in read_records(str(env.dir / "authorization.jsonl")) if c["action"] == "elasticache:TestFailover"]
    assert calls and all(c["decision"] == "Allowed" and c["principal_arn"].endswith("-restore") for c in calls)


def test_rotation_after_a_failover_reaches_both_nodes(env: Env) -> None:
    old = env.token()
    r = env.cli("rotate", "cache", "--stack", "local", "--yes", "--no-grace")
    assert r.returncode == 0, r.stderr
    new = env.token()
    cfg = read_cfg(env.dir)
    assert cfg is not None and new != old
    for node in cfg["nodes"].values():
        target = CacheTarget("127.0.0.1", int(node["port"]))
        assert token_works(target, new) and not token_works(target, old)


def test_a_failed_verify_is_resumed_not_refused(env: Env) -> None:
    """The failover happened but verify failed (the promoted replica's ACL had drifted from the token):
    after the fix a rerun resumes the same run (detect from its journal, the failover's check holds)
    instead of refusing with "the primary answers"."""
    gid = env.outputs["cache_replication_group_id"]
    cfg = read_cfg(env.dir)
    assert cfg is not None and cfg["primary"] == f"{gid}-002"
    replica_port, pw = int(cfg["nodes"][f"{gid}-001"]["port"]), cfg["admin_password"]
    drifted = ["ACL", "SETUSER", "default", "on", "resetpass", ">drifted-token-0123456789", "~*", "&*", "+@all"]
    admin_call(replica_port, pw, *drifted)
    kill_nodes(env.dir, "primary")
    r = env.cli("cache", "failover", "--stack", "local", "--yes")
    assert r.returncode == 41, r.stdout + r.stderr  # CacheError: the token was rejected
    assert env.token() not in r.stdout + r.stderr
    assert env.roles() == {f"{gid}-001": "primary", f"{gid}-002": "replica"}  # the failover itself happened
    before = len(env.failovers())
    admin_call(replica_port, pw, "ACL", "SETUSER", "default", "on", "resetpass", f">{env.token()}", "~*", "&*", "+@all")
    r = env.cli("cache", "failover", "--stack", "local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert {s["name"]: s["status"] for s in json.loads(r.stdout)["steps"]}["verify"] == "ok"
    assert len(env.failovers()) == before  # resumed: no second TestFailover


def test_group_loss_recreate_from_declared_settings(env: Env) -> None:
    gid = env.outputs["cache_replication_group_id"]
    round_trip(env.endpoint, env.token(), key="warm-before-loss")  # deleted by round_trip; add a lasting key:
    cfg = read_cfg(env.dir)
    assert cfg is not None
    admin_call(int(cfg["nodes"][cfg["primary"]]["port"]), cfg["admin_password"], "SET", "left-behind", "1")
    assert sorted(kill_nodes(env.dir, "all")) == [f"{gid}-001", f"{gid}-002"]
    assert env.cache_line().startswith("✗")
    r = env.cli("cache", "recreate", "--stack", "local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    steps = {s["name"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["delete"]["detail"]["deleted"] is True and steps["verify"]["detail"]["keys"] == 0
    assert env.roles() == {f"{gid}-001": "primary", f"{gid}-002": "replica"}
    assert b"master_link_status:up" in env.replication(f"{gid}-002")
    assert round_trip(env.endpoint, env.token())["set_get"] is True
    assert env.token() not in r.stdout + r.stderr
    # the group as the program declares it, not as the runbook would write it
    g = env.client("elasticache").describe_replication_groups(ReplicationGroupId=gid)["ReplicationGroups"][0]
    assert g["AutomaticFailover"] == "enabled" and g["AtRestEncryptionEnabled"] is True
    assert g["CacheNodeType"] == env.outputs["cache_settings"]["CacheNodeType"]


def test_recreate_after_the_group_was_deleted(env: Env) -> None:
    gid = env.outputs["cache_replication_group_id"]
    env.client("elasticache").delete_replication_group(ReplicationGroupId=gid)  # its nodes stop with it
    r = env.cli("cache", "recreate", "--stack", "local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    steps = {s["name"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["delete"]["detail"] == {"deleted": False, "absent": True}
    assert round_trip(env.endpoint, env.token())["set_get"] is True


@pytest.mark.parametrize("scenario", ["redis-primary-loss", "redis-group-loss"])
def test_drill_within_the_rto(env: Env, scenario: str) -> None:
    r = env.cli("drill", "full", "--stack", "local", "--scenario", scenario, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(r.stdout)
    (sc,) = rec["scenarios"]
    assert sc["component"] == "redis" and sc["passed"] is True, sc
    assert sc["rto_met"] is True and sc["rto_seconds"] < 600
    print(f"{scenario}: RTO {sc['rto_seconds']:.1f}s of {sc['rto_target_minutes']} min")
    assert env.token() not in r.stdout + r.stderr


# ------------------------------------------------------------------ the emulator's TestFailover itself


def test_emulator_test_failover_refusals_and_hook(moto_server: Any, request: pytest.FixtureRequest) -> None:
    """moto has no TestFailover: ours refuses as AWS does, and a refusing hook changes nothing."""
    import uuid

    from botocore.exceptions import ClientError

    from recovery.local import emulator
    from recovery.local.emulator import elasticache_failover as ef

    if not emulator.installed():  # left installed, every later test's moto would have them
        emulator.install()
        request.addfinalizer(emulator.uninstall)
    ec = moto_server.client("elasticache")
    gid = f"fo-{uuid.uuid4().hex[:8]}"
    ec.create_replication_group(ReplicationGroupId=gid, ReplicationGroupDescription="c", Engine="redis",
                                CacheNodeType="cache.t4g.micro", NumCacheClusters=2, AutomaticFailoverEnabled=True)

    def code(**kw: Any) -> str:
        with pytest.raises(ClientError) as err:
            ec.test_failover(**kw)
        return str(err.value.response["Error"]["Code"])

    def roles() -> list[str]:
        g = ec.describe_replication_groups(ReplicationGroupId=gid)["ReplicationGroups"][0]
        return [m["CurrentRole"] for m in g["NodeGroups"][0]["NodeGroupMembers"]]

    assert roles() == ["primary", "replica"]  # moto alone creates one member
    assert code(ReplicationGroupId=gid, NodeGroupId="0002") == "NodeGroupNotFoundFault"
    assert code(ReplicationGroupId="no-such-group", NodeGroupId="0001") == "ReplicationGroupNotFoundFault"

    def refuse(_g: str, _old: str, _new: str) -> None:
        raise RuntimeError("replica does not answer")

    ef.set_cache_failover_hook(refuse)
    try:
        assert code(ReplicationGroupId=gid, NodeGroupId="0001") == "InvalidReplicationGroupState"
    finally:
        ef.set_cache_failover_hook(None)
    assert roles() == ["primary", "replica"]
    ec.test_failover(ReplicationGroupId=gid, NodeGroupId="0001")
    assert roles() == ["replica", "primary"]
    assert [c["outcome"] for c in ef.cache_failover_calls() if c["replication_group_id"] == gid] == ["error", "ok"]
    ec.delete_replication_group(ReplicationGroupId=gid)  # gone, so the same id can be created again
    ec.create_replication_group(ReplicationGroupId=gid, ReplicationGroupDescription="c", Engine="redis",
                                CacheNodeType="cache.t4g.micro", NumCacheClusters=2, AutomaticFailoverEnabled=False)
    assert code(ReplicationGroupId=gid, NodeGroupId="0001") == "InvalidReplicationGroupState"
