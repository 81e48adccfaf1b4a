"""`restore pitr|snapshot --cutover` (issue 16) on the local environment: the new cluster is a real
PostgreSQL server holding the source's data as of the restore point (recovery/local/restored_clusters.py),
and the cutover moves the real node and explorer onto it through the DB secret, the endpoints parameter
and the site's libpq service file, under the restore role the program declares.

One environment for the module; tests run in file order (each cutover moves the clients again).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli_env import isolated_env, run_cli
from polling import wait_for

CUTOVER = ["verify-new", "stop-services", "repoint", "start-services"]


class Env:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.dir = Path(env["RECOVERY_LOCAL_DIR"])
        backend = self.dir / "backend" / ".pulumi" / "stacks" / "xai-dr"
        self.outputs = {s: json.loads((backend / f"{s}.json").read_text())["checkpoint"]["latest"]["resources"][0]["outputs"]
                        for s in ("local", "local-dr")}

    @property
    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "state.json").read_text()))

    def admin(self, service: str, region: str) -> Any:
        from recovery.local.deploy import admin_client

        aws = self.state["aws"]
        return admin_client(service, region, aws["endpoint"], aws["ca_bundle"])

    def sql(self, host: str, query: str, *args: Any, port: int | None = None) -> Any:
        """As the control plane's superuser, on ``host`` at the primary's port (restored clusters share it)."""
        pg = self.state["postgres"]
        with psycopg.connect(host=host, port=port or pg["port"], user=pg["maint_user"], password=pg["maint_password"],
                             dbname=pg["dbname"], autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query, args)
            return cur.fetchall() if cur.description else None

    def secret(self, stack: str = "local") -> dict[str, Any]:
        o = self.outputs[stack]
        raw = self.admin("secretsmanager", o["region"]).get_secret_value(SecretId=o["db_secret_arn"])["SecretString"]
        return dict(json.loads(raw))

    def parameter(self, stack: str = "local") -> dict[str, Any]:
        o = self.outputs[stack]
        p = self.admin("ssm", o["region"]).get_parameter(Name=o["endpoint_parameter_name"])["Parameter"]["Value"]
        return dict(json.loads(p))

    def service_file(self) -> str:
        return (self.dir / "pg_service.conf").read_text()

    def cli(self, *args: str, timeout: float = 180) -> Any:
        return run_cli(self.env, *args, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("cutover") / "env"
    e = isolated_env(RECOVERY_LOCAL_DIR=str(d), RECOVERY_RDS_POLL_SECONDS="0.1")
    up = run_cli(e, "local", "up", "--mine-interval", "0.3")
    assert up.returncode == 0, up.stderr
    try:
        yield Env(e)
    finally:
        assert run_cli(e, "local", "down").returncode == 0


def steps(r: Any) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(r.stdout)["steps"]}


def max_height(env: Env, host: str) -> int:
    return int(env.sql(host, "SELECT coalesce(max(height), -1) FROM blockchain")[0][0])


def test_pitr_restores_the_data_of_its_time_and_moves_the_clients(env: Env) -> None:
    pg = env.state["postgres"]
    env.sql(pg["host"], "CREATE TABLE cutover_marks (mark text PRIMARY KEY)")
    env.sql(pg["host"], "INSERT INTO cutover_marks VALUES ('before')")
    time.sleep(1.1)
    to_time = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # whole seconds: after 'before'
    time.sleep(1.1)
    env.sql(pg["host"], "INSERT INTO cutover_marks VALUES ('after')")
    wait_for("a few more blocks", lambda: max_height(env, pg["host"]) >= 5)
    old_secret, old_param = env.secret(), env.parameter()

    r = env.cli("restore", "pitr", "--stack", "local", "--to-time", to_time, "--new-cluster", "xai-cut-pitr",
                "--cutover", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    got = steps(r)
    assert list(got)[-4:] == CUTOVER and all(got[n]["status"] == "ok" for n in CUTOVER)
    new_host = got["report"]["detail"]["endpoint"]
    assert new_host != pg["host"]

    # the new cluster holds the data of --to-time: the mark before it, not the one after
    assert env.sql(new_host, "SELECT mark FROM cutover_marks ORDER BY mark") == [("before",)]
    verified = got["verify-new"]["detail"]
    assert verified["rows"] > 0 and verified["max_height"] - verified["min_height"] + 1 == verified["rows"]

    # the clients' view moved: secret, parameter and service file name the new cluster; the cache stays
    secret, param = env.secret(), env.parameter()
    assert (secret["host"], int(secret["port"])) == (new_host, pg["port"])
    assert secret["password"] == old_secret["password"] and secret["username"] == old_secret["username"]
    assert (param["db_host"], param["db_port"]) == (new_host, pg["port"])
    assert {k: v for k, v in param.items() if k.startswith("cache")} == {k: v for k, v in old_param.items()
                                                                        if k.startswith("cache")}
    assert f"host={new_host}\n" in env.service_file()
    run_id = json.loads(r.stdout)["run_id"]
    kept = (env.dir / f"pg_service.conf.pre-{run_id}").read_text()
    assert f"host={pg['host']}\n" in kept
    repoint = got["repoint"]["detail"]
    assert repoint["previous"] == f"{old_secret['host']}:{old_secret['port']}"
    # measured on the source with the services stopped: every block it has beyond the restore point
    assert repoint["blocks_rolled_back"] == repoint["source_max_height"] - verified["max_height"] > 0

    # the real node indexes into the new cluster, the explorer reads it; the source is left as it was
    restored_top = verified["max_height"]
    wait_for("the node indexing into the new cluster", lambda: max_height(env, new_host) > restored_top + 2)
    assert env.sql(pg["host"], "SELECT count(*) FROM cutover_marks")[0][0] == 2
    import requests

    port = env.state["site_services"]["ports"]["explorer"]
    wait_for("the explorer reading the new cluster",
             lambda: (requests.get(f"http://127.0.0.1:{port}/health", timeout=3).json().get("index_height") or -1)
             > restored_top + 2)
    assert old_secret["password"] not in r.stdout + r.stderr  # never printed


def test_a_rerun_under_the_same_name_is_refused_and_changes_nothing(env: Env) -> None:
    before = env.secret(), env.parameter(), env.service_file()
    r = env.cli("restore", "pitr", "--stack", "local", "--to-time", "now", "--new-cluster", "xai-cut-pitr",
                "--cutover", "--yes")
    assert r.returncode == 4 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = env.cli("restore", "pitr", "--stack", "local", "--to-time", t, "--new-cluster", "xai-cut-pitr",
                "--cutover", "--yes")
    assert r.returncode == 4 and "already exists" in r.stderr, r.stderr
    assert (env.secret(), env.parameter(), env.service_file()) == before


def test_a_failed_repoint_puts_back_what_it_wrote_and_restarts_the_services(env: Env) -> None:
    """An explicit deny on PutParameter (as a tightened policy would) fails the repoint after the
    secret was written: the secret is put back and the services run again against the cluster they had."""
    o = env.outputs["local"]
    iam = env.admin("iam", o["region"])
    role = "xai-recovery-local-restore"  # infra/recovery_access.py role_name("local", "restore")
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ssm:PutParameter", "Resource": "*"}]}
    iam.put_role_policy(RoleName=role, PolicyName="test-deny-put-parameter", PolicyDocument=json.dumps(deny))
    before = env.secret(), env.parameter(), env.service_file()
    current = before[0]["host"]
    try:
        t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1.1)
        r = env.cli("restore", "pitr", "--stack", "local", "--to-time", t, "--new-cluster", "xai-cut-denied",
                    "--cutover", "--yes", "--json")
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="test-deny-put-parameter")
    assert r.returncode == 5, (r.returncode, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert "denied access while repointing the clients to xai-cut-denied" in last, last
    assert (env.secret(), env.parameter(), env.service_file()) == before
    top = max_height(env, current)
    wait_for("the node mining into the cluster it had", lambda: max_height(env, current) > top + 1)


def test_snapshot_restore_with_cutover(env: Env) -> None:
    o = env.outputs["local"]
    rds = env.admin("rds", o["region"])
    rds.create_db_cluster_snapshot(DBClusterIdentifier=o["db_cluster_id"], DBClusterSnapshotIdentifier="cut-snap-1")
    previous = env.secret()["host"]
    r = env.cli("restore", "snapshot", "--stack", "local", "--snapshot", "cut-snap-1", "--new-cluster", "xai-cut-snap",
                "--cutover", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    got = steps(r)
    new_host = got["report"]["detail"]["endpoint"]
    assert new_host not in (previous, env.state["postgres"]["host"])
    assert env.sql(new_host, "SELECT mark FROM cutover_marks ORDER BY mark") == [("after",), ("before",)]
    assert env.secret()["host"] == new_host == env.parameter()["db_host"]
    assert got["repoint"]["detail"]["previous"].startswith(previous + ":")
    top = got["verify-new"]["detail"]["max_height"]
    wait_for("the node indexing into the snapshot's cluster", lambda: max_height(env, new_host) > top + 1)


def test_an_unbacked_new_cluster_fails_verification_before_any_client_moves(env: Env) -> None:
    """The DR site's cluster has no local backing: its restored cluster answers no SQL. The cutover
    stops at verify-new (exit 6), before the services stop or anything is repointed."""
    before = env.secret("local-dr"), env.parameter("local-dr")
    t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.1)
    r = env.cli("restore", "pitr", "--stack", "local-dr", "--to-time", t, "--new-cluster", "xai-cut-dr",
                "--cutover", "--yes", "--json")
    assert r.returncode == 6, (r.returncode, r.stderr)
    assert "xai-cut-dr" in r.stderr and "--master-user-password" in r.stderr
    assert (env.secret("local-dr"), env.parameter("local-dr")) == before
    st = run_cli(env.env, "local", "status", "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["dr"]["node"]["running"]


def test_a_bad_service_section_is_refused_before_anything(env: Env) -> None:
    services = env.dir / "services.json"
    original = services.read_text()
    doc = json.loads(original)
    doc["database_service"] = "no-such-section"
    services.write_text(json.dumps(doc))
    before = env.secret(), env.parameter()
    clusters = {c["DBClusterIdentifier"] for c in env.admin("rds", "us-east-1").describe_db_clusters()["DBClusters"]}
    try:
        t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1.1)
        r = env.cli("restore", "pitr", "--stack", "local", "--to-time", t, "--new-cluster", "xai-cut-bad", "--cutover",
                    "--yes")
    finally:
        services.write_text(original)
    assert r.returncode == 4 and "no [no-such-section] section" in r.stderr, r.stderr
    assert (env.secret(), env.parameter()) == before
    assert {c["DBClusterIdentifier"] for c in env.admin("rds", "us-east-1").describe_db_clusters()["DBClusters"]} == clusters


def test_a_new_cluster_without_a_readable_blockchain_table_fails_verification(env: Env) -> None:
    """Restored to a moment when the table was gone: verify-new stops the cutover (exit 13) before the
    services stop or anything is repointed. Last: the source's table is renamed for a moment."""
    pg = env.state["postgres"]
    before = env.secret(), env.parameter(), env.service_file()
    env.sql(pg["host"], "ALTER TABLE blockchain RENAME TO blockchain_aside")
    try:
        time.sleep(1.1)
        t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1.1)
        r = env.cli("restore", "pitr", "--stack", "local", "--to-time", t, "--new-cluster", "xai-cut-notable",
                    "--cutover", "--yes", "--json")
    finally:
        env.sql(pg["host"], "ALTER TABLE blockchain_aside RENAME TO blockchain")
    assert r.returncode == 13, (r.returncode, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert "has no readable blockchain table" in last, last
    got = steps(r)
    assert got["verify-new"]["status"] == "failed" and got["stop-services"]["status"] == "pending"
    assert (env.secret(), env.parameter(), env.service_file()) == before
