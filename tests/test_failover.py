"""`recovery failover` / `failback` on the real local environment: a real hot standby promoted by the
emulator's global-cluster extension, real health checks, real SIGKILLs, the real CLI.

One environment for the module; the tests run in file order because each leaves the sites in the
state the next one starts from (fresh -> refusals/dry run -> switchover -> failback -> unplanned
failover with crashes -> failback after a rejoin).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from recovery.local.deploy import admin_client
import prewarmed_cli
from cli_env import isolated_env

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["preflight", "restore-chain", "quiesce-writers", "measure-lag", "promote", "repoint-clients", "resume-peer",
         "start-services", "move-traffic", "verify-dns", "verify-node", "verify-db", "verify-fence", "report"]


def cli(env: dict[str, str], *args: str, extra: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return prewarmed_cli.run("recovery", args, env={**env, **(extra or {})}, timeout=timeout, cwd=ROOT)


class Env:
    def __init__(self, env: dict[str, str], d: Path) -> None:
        self.env = env
        self.dir = d
        self.state = json.loads((d / "state.json").read_text())
        self.endpoint, self.ca_bundle = self.state["aws"]["endpoint"], self.state["aws"]["ca_bundle"]
        backend = d / "backend" / ".pulumi" / "stacks" / "xai-dr"
        self.outputs = {s: json.loads((backend / f"{s}.json").read_text())["checkpoint"]["latest"]["resources"][0]["outputs"]
                        for s in ("local", "local-dr")}

    @property
    def password(self) -> str:
        """The master password now: `local up` set the program's generated one (pgpass follows it)."""
        return (self.dir / "pgpass").read_text().strip().split(":", 4)[4]

    def aws(self, service: str, region: str = "us-east-1") -> Any:
        return admin_client(service, region, self.endpoint, self.ca_bundle)

    def q(self, site: str, sql: str, args: Any = None) -> Any:
        pg = self.state["postgres"] if site == "primary" else self.state["dr"]["postgres"]
        with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=self.password,
                             dbname=pg["dbname"], autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else None

    def node(self, site: str, path: str, body: Any = None) -> dict[str, Any]:
        url = (self.state["node"] if site == "primary" else self.state["dr"]["node"])["url"] + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def promotions(self) -> list[dict[str, Any]]:
        from recovery.local.emulator import read_record_file

        return read_record_file(str(self.dir / "emulator-calls.jsonl"), "promotion")

    def writer(self) -> str:
        gc = self.aws("rds").describe_global_clusters(GlobalClusterIdentifier="xai-local-global")["GlobalClusters"][0]
        return next(m["DBClusterArn"].split(":")[-1] for m in gc["GlobalClusterMembers"] if m["IsWriter"])

    def traffic_on_dr(self) -> bool:
        """The traffic flag (a CloudWatch alarm in the DR region) says the DR site serves."""
        tc = self.outputs["local"]["traffic_control"]
        alarms = self.aws("cloudwatch", tc["region"]).describe_alarms(AlarmNames=[tc["alarm_name"]])["MetricAlarms"]
        return alarms[0]["StateValue"] == "ALARM"

    def dns(self) -> str | None:
        """What the emulator's DNS server (Route 53's data plane) answers for the failover record."""
        import dns.message
        import dns.query

        host, _, port = json.loads((self.dir / "aws.json").read_text())["dns"].rpartition(":")
        q = dns.message.make_query(self.outputs["local"]["dns_record_name"], "CNAME")
        resp = dns.query.udp(q, host, port=int(port), timeout=3)
        return next((str(next(iter(r)).target).rstrip(".") for r in resp.answer), None)

    def sites(self, stack: str = "local-dr") -> dict[str, Any]:
        r = cli(self.env, "sites", "--stack", stack, "--json")
        assert r.returncode == 0, r.stderr[-1500:]
        return dict(json.loads(r.stdout))

    def secret(self) -> dict[str, Any]:
        sm = self.aws("secretsmanager", "us-west-2")
        return dict(json.loads(sm.get_secret_value(SecretId=self.outputs["local-dr"]["db_secret_arn"],
                                                   VersionStage="AWSCURRENT")["SecretString"]))

    def snapshot(self) -> dict[str, Any]:
        """Everything a failover changes, to prove a refusal or a dry run changed nothing."""
        s3 = self.aws("s3")
        objects = {}
        for out in self.outputs.values():
            r = s3.list_object_versions(Bucket=out["backup_bucket_name"])
            objects[out["backup_bucket_name"]] = sorted(
                f"{v['Key']}@{v['VersionId']}" for v in r.get("Versions", []) + r.get("DeleteMarkers", []))
        try:
            param = self.aws("ssm", "us-west-2").get_parameter(Name="/xai-dr/xai-local-global/endpoints")["Parameter"]["Value"]
        except Exception:  # noqa: BLE001
            param = None
        return {"writer": self.writer(), "promotions": len(self.promotions()), "objects": objects, "param": param,
                "secret": hashlib.sha256(json.dumps(self.secret(), sort_keys=True).encode()).hexdigest(),
                "traffic_on_dr": self.traffic_on_dr(), "dns": self.dns(), "dr_in_recovery": self.q("dr", "SELECT pg_is_in_recovery()")[0][0],
                "dr_node_height": self.node("dr", "/api/v1/blockchain/info")["block_height"]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("failover") / "env"
    e = isolated_env()
    e["RECOVERY_LOCAL_DIR"] = str(d)
    e["RECOVERY_JOURNAL_DIR"] = str(d.parent / "journal")
    up = cli(e, "local", "up", "--mine-interval", "0.3")
    assert up.returncode == 0, up.stderr
    try:
        for kind in ("chain", "db", "config"):  # replicated into the DR bucket (chain: the DR node restores from there)
            r = cli(e, "backup", kind, "--stack", "local")
            assert r.returncode == 0, r.stderr
        yield Env(e, d)
    finally:
        down = cli(e, "local", "down")
        assert down.returncode == 0, down.stderr


def assert_no_secret(env: Env, r: subprocess.CompletedProcess[str]) -> None:
    assert env.password not in r.stdout + r.stderr, "the DB password leaked"


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_local_status_shows_both_sites(env: Env) -> None:
    st = json.loads(cli(env.env, "local", "status", "--json").stdout)
    assert st["dr"]["postgres"] == {"port": env.outputs["local-dr"]["db_port"], "running": True, "role": "standby"}
    assert st["dr"]["node"]["running"] and st["dr"]["node"]["url"] == env.outputs["local-dr"]["node_api_url"]
    assert env.outputs["local-dr"]["db_port"] != env.outputs["local"]["db_port"]
    # a real standby: the primary streams to it
    assert env.q("primary", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")[0][0] == 1


def test_refusals_are_one_line_distinct_codes_and_change_nothing(env: Env, tmp_path: Path) -> None:
    before = env.snapshot()
    codes = {}
    # a stack that is not a DR stack
    r = cli(env.env, "failover", "--stack", "local", "--yes")
    codes["not-dr"] = r.returncode
    assert "is a primary stack" in one_line_error(r)
    # missing outputs
    broken = {k: v for k, v in env.outputs["local-dr"].items() if k != "global_cluster_id"}
    f = tmp_path / "missing.json"
    f.write_text(json.dumps(broken))
    r = cli(env.env, "failover", "--stack", "local-dr", "--outputs", str(f), "--yes")
    codes["missing"] = r.returncode
    assert "global_cluster_id" in one_line_error(r)
    # the DR cluster is not a member of the global cluster
    oncall = env.state["oncall"]  # the identity the stacks trust; the command assumes the failover role
    aws_env = {"AWS_ENDPOINT_URL": env.endpoint, "AWS_CA_BUNDLE": env.ca_bundle,
               "AWS_ACCESS_KEY_ID": oncall["access_key_id"], "AWS_SECRET_ACCESS_KEY": oncall["secret_access_key"],
               "PULUMI_BACKEND_URL": f"file://{env.dir / 'backend'}"}
    ghost = {**env.outputs["local-dr"], "db_cluster_id": "xai-local-db-ghost"}
    f2 = tmp_path / "ghost.json"
    f2.write_text(json.dumps(ghost))
    r = cli(env.env, "failover", "--stack", "local-dr", "--outputs", str(f2), "--yes", extra=aws_env)
    codes["not-member"] = r.returncode
    assert "not a member of global cluster" in one_line_error(r)
    # replication lag over the limit: the standby stops replaying while the primary keeps writing
    env.q("dr", "SELECT pg_wal_replay_pause()")
    try:
        time.sleep(1.5)
        r = cli(env.env, "failover", "--stack", "local-dr", "--yes", "--max-lag", "0.5s")
        codes["lag"] = r.returncode
        assert "over the 0.5s limit" in one_line_error(r)
    finally:
        env.q("dr", "SELECT pg_wal_replay_resume()")
    assert_no_secret(env, r)
    assert codes == {"not-dr": 31, "missing": 3, "not-member": 32, "lag": 33}
    after = env.snapshot()
    after["dr_node_height"] = before["dr_node_height"]
    assert after == before


def test_a_chain_backup_that_could_not_restore_stops_the_failover_first(env: Env, tmp_path: Path) -> None:
    """The DR node has no chain data, and the newest replicated chain backup has no chain.db (taken
    before backups checked it). The failover used to promote the database and move DNS, then fail at
    restore-chain on every rerun; now preflight refuses it before anything changes."""
    from recovery import aws
    from recovery.archive import plan_tree
    from recovery.backups.take import BackupOptions, _tar_backup
    from recovery.stack import parse_outputs

    dr = parse_outputs("local-dr", env.outputs["local-dr"])
    aws.vault_key(dr.backup_bucket_name, dr.backup_kms_key_arn)
    s3 = aws.encrypt_into_vaults(env.aws("s3", dr.region))
    empty = tmp_path / "blockchain"
    empty.mkdir()
    m = _tar_backup(dr, "chain", plan_tree(empty), str(empty), BackupOptions(s3=s3))
    try:
        before = env.snapshot()
        r = cli(env.env, "failover", "--stack", "local-dr", "--yes")
        assert r.returncode == 17, r.stderr
        line = one_line_error(r)
        assert m.key in line and "no chain.db at the top of the archive" in line and "--force" in line
        after = env.snapshot()
        after["dr_node_height"] = before["dr_node_height"]
        assert after == before
    finally:
        s3.delete_object(Bucket=dr.backup_bucket_name, Key=m.key + ".manifest.json")  # no longer a backup


def test_dry_run_changes_nothing(env: Env) -> None:
    before = env.snapshot()
    r = cli(env.env, "failover", "--stack", "local-dr", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [s["name"] for s in plan["steps"]] == STEPS
    assert plan["preflight"]["mode"] == "switchover"  # the primary is healthy
    assert plan["preflight"]["node"]["has_chain"] is False  # the DR node starts without chain data
    assert env.snapshot() == before


def test_switchover_two_concurrent_runs_exactly_one_proceeds(env: Env) -> None:
    n0 = len(env.promotions())
    args = [sys.executable, "-m", "recovery", "failover", "--stack", "local-dr", "--mode", "switchover", "--yes", "--json"]
    procs = [subprocess.Popen(args, env=env.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _o, _e in results)
    assert codes == [0, 7], [e[-600:] for _c, _o, e in results]
    loser = next(e for c, _o, e in results if c == 7)
    assert "held by" in loser and "pid" in loser
    out = json.loads(next(o for c, o, _e in results if c == 0))
    report = next(s for s in out["steps"] if s["name"] == "report")["detail"]
    # afterwards: the DR cluster is the writer, the traffic flag set and DNS answering the DR site,
    # endpoints repointed
    assert env.writer() == "xai-local-db-dr"
    assert env.traffic_on_dr() and env.dns() == env.outputs["local-dr"]["node_api_fqdn"]
    sec = env.secret()
    assert (sec["host"], sec["port"]) == (env.outputs["local-dr"]["db_endpoint"], env.outputs["local-dr"]["db_port"])
    param = json.loads(env.aws("ssm", "us-west-2").get_parameter(Name="/xai-dr/xai-local-global/endpoints")["Parameter"]["Value"])
    assert param["site"] == "local-dr" and param["cache_replication_group_id"] == "xai-local-redis-dr"
    calls = env.promotions()[n0:]
    assert [(c["mode"], c["target_cluster_id"], c["outcome"]) for c in calls] == [("switchover", "xai-local-db-dr", "ok")]
    # the database really moved: the DR PostgreSQL is writable, the old primary a streaming standby
    assert env.q("dr", "SELECT pg_is_in_recovery()")[0][0] is False
    assert env.q("primary", "SELECT pg_is_in_recovery()")[0][0] is True
    # the DR node serves verified data, restored from the replicated chain backup
    info, verify = env.node("dr", "/api/v1/blockchain/info"), env.node("dr", "/api/v1/blockchain/verify")
    assert info["is_synced"] and verify["is_valid"] and info["block_height"] > 0
    assert env.q("dr", "SELECT hash FROM blockchain WHERE height = %s", (info["block_height"],))[0][0] == info["tip_hash"]
    assert report["chain_restored_from_backup"] is True and report["mode"] == "switchover"
    assert report["rpo_blocks_lost"] == 0 and report["rto_s"] > 0 and report["writer"] == "local-dr"
    fence = next(s for s in out["steps"] if s["name"] == "verify-fence")["detail"]
    assert fence["observed"] and fence["peer_db_refuses_writes"] and not fence["peer_node_mining"]
    # the old primary's node stands down: its database is a standby now, so it mines nothing of its
    # own and follows the writer's chain through its replicated index
    time.sleep(1.5)  # five of its mine intervals
    info = env.node("primary", "/api/v1/blockchain/info")
    assert info["consensus_state"] == "fenced", info
    assert env.q("dr", "SELECT hash FROM blockchain WHERE height = %s", (info["block_height"],))[0][0] == info["tip_hash"]
    # both views agree: the DR site writes and serves; status is green on both stacks and names the writer
    view = env.sites()
    assert view["writer"] == "local-dr" and not view["warnings"], view
    roles = {s["stack"]: s["database"] for s in view["sites"]}
    assert roles == {"local-dr": "writer", "local": "standby"}
    for stack in ("local", "local-dr"):
        st = json.loads(cli(env.env, "status", "--stack", stack, "--json").stdout)
        assert st["level"] == "green", [ln for ln in st["lines"] if ln["level"] != "green"]
        site = next(ln for ln in st["lines"] if ln["component"] == "site")
        assert site["data"]["database"] == ("writer" if stack == "local-dr" else "standby")


def test_failback_stale_lock_needs_the_flag(env: Env) -> None:
    bucket = env.outputs["local-dr"]["backup_bucket_name"]  # failover and failback share the DR bucket's lock
    stale = {"owner": "oncall@other-host pid 4242", "token": "x", "purpose": "failback lock",
             "acquired_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:15:00Z"}
    env.aws("s3", "us-west-2").put_object(Bucket=bucket, Key="locks/failover.lock", Body=json.dumps(stale).encode(),
                                          ServerSideEncryption="aws:kms",
                                          SSEKMSKeyId=env.outputs["local-dr"]["backup_kms_key_arn"])
    before = env.snapshot()
    r = cli(env.env, "failback", "--stack", "local", "--yes")
    assert r.returncode == 7
    assert "stale" in one_line_error(r) and "--take-over-stale" in r.stderr
    after = env.snapshot()
    moving = ("objects", "dr_node_height")  # the DR node is the writer's now: it mines on
    assert {k: v for k, v in after.items() if k not in moving} == {k: v for k, v in before.items() if k not in moving}
    r = cli(env.env, "failback", "--stack", "local", "--yes", "--take-over-stale")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "took over the stale failback lock, held by oncall@other-host pid 4242" in r.stderr
    assert env.writer() == "xai-local-db-primary" and not env.traffic_on_dr()
    assert env.dns() == env.outputs["local"]["node_api_fqdn"]
    assert env.q("primary", "SELECT pg_is_in_recovery()")[0][0] is False
    assert env.q("dr", "SELECT pg_is_in_recovery()")[0][0] is True  # back on standby duty
    assert env.sites("local")["writer"] == "local"
    assert_no_secret(env, r)


def test_unplanned_failover_survives_sigkill_after_every_step(env: Env) -> None:
    # The DR standby stops receiving WAL while the primary keeps mining: a real replication gap.
    env.q("dr", "ALTER SYSTEM SET primary_conninfo = ''")
    env.q("dr", "SELECT pg_reload_conf()")
    time.sleep(2.0)
    env.node("primary", "/admin/mining", {"enabled": False})  # the primary stops writing (the disaster)
    time.sleep(0.5)
    primary_blocks = env.q("primary", "SELECT max(height) FROM blockchain")[0][0]
    dr_blocks = env.q("dr", "SELECT max(height) FROM blockchain")[0][0]  # the standby no longer receives
    n0 = len(env.promotions())
    # Steps whose check already holds in an unplanned failover never run their action, so there
    # is nothing to kill them after: the peer is not quiesced or resumed, the DR node runs and has
    # the chain restored by the switchover above.
    held = {"quiesce-writers", "resume-peer", "start-services", "restore-chain"}
    assert env.sites()["writer"] == "local"  # before
    for step in [s for s in STEPS if s not in held]:
        r = cli(env.env, "failover", "--stack", "local-dr", "--mode", "failover", "--yes",
                extra={"RECOVERY_TEST_CRASH_AT": f"failover:{step}:after"})
        assert r.returncode == -9, (step, r.stderr[-1500:])
        if step == "promote":  # interrupted between the promotion and the traffic move
            view = env.sites()
            assert view["writer"] == "local-dr", view
            assert view["traffic"]["flag"] != "ALARM" and view["lock"] is not None
            assert any("interrupted" in w or "under way" in w for w in view["warnings"]), view["warnings"]
    r = cli(env.env, "failover", "--stack", "local-dr", "--mode", "failover", "--yes", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    journal = json.loads(r.stdout)
    assert len(journal["attempts"]) >= 2  # one run, resumed
    calls = [c for c in env.promotions()[n0:]]
    assert [(c["mode"], c["outcome"]) for c in calls] == [("failover", "ok")], calls
    assert env.writer() == "xai-local-db-dr" and env.traffic_on_dr()
    assert env.sites()["writer"] == "local-dr"  # after
    sec = env.secret()
    assert (sec["host"], sec["port"]) == (env.outputs["local-dr"]["db_endpoint"], env.outputs["local-dr"]["db_port"])
    assert env.q("dr", "SELECT pg_is_in_recovery()")[0][0] is False
    info, verify = env.node("dr", "/api/v1/blockchain/info"), env.node("dr", "/api/v1/blockchain/verify")
    assert info["is_synced"] and verify["is_valid"]
    # the data-loss figure against blocks counted on both sides, independently of the runbook (the
    # DR node mines on the promoted database now: the count is of what it had at promotion)
    report = next(s for s in journal["steps"] if s["name"] == "report")["detail"]
    assert primary_blocks - dr_blocks > 0
    assert report["rpo_blocks_lost"] == primary_blocks - dr_blocks
    assert report["peer_db_height_at_promotion"] == primary_blocks
    assert report["rpo_lag_at_promotion_s"] > 0
    assert_no_secret(env, r)


def test_failback_after_unplanned_failover_says_what_remains(env: Env) -> None:
    r = cli(env.env, "failback", "--stack", "local", "--yes")
    assert r.returncode == 32
    assert "python -m recovery.local.dr_site rejoin" in one_line_error(r)
    rj = subprocess.run([sys.executable, "-m", "recovery.local.dr_site", "rejoin"], env=env.env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert rj.returncode == 0, rj.stderr
    env.node("primary", "/admin/mining", {"enabled": True})
    r = cli(env.env, "failback", "--stack", "local", "--yes")
    assert r.returncode == 0, r.stderr[-2000:]
    assert env.writer() == "xai-local-db-primary" and not env.traffic_on_dr()
    assert env.q("dr", "SELECT pg_is_in_recovery()")[0][0] is True


def test_drill_scenario_fails_over_and_back_with_measured_rto_rpo(env: Env, tmp_path: Path) -> None:
    r = cli(env.env, "drill", "full", "--stack", "local", "--scenario", "region-outage", "--json",
            "--report-dir", str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(r.stdout)
    sc = next(s for s in rec["scenarios"] if s["name"] == "region-outage")
    assert sc["passed"], sc
    assert sc["rto_seconds"] > 0 and sc["rpo_blocks"] is not None and sc["rto_met"] and sc["rpo_met"]
    rep = sc["extra"]["failover_report"]
    assert rep["mode"] == "failover" and rep["peer_reachable"] is False  # the region was down: unplanned
    assert "peer-db-secret-region" in rep["not_checked"]
    assert "rpo_mismatch" not in sc["extra"]
    assert env.writer() == "xai-local-db-primary" and not env.traffic_on_dr()


def test_region_outage_failover_asks_nothing_of_us_east_1_and_fences_the_old_primary(env: Env) -> None:
    """The issue's bar, with the commands as an operator types them."""
    from recovery.local import outage

    # The DR standby stops receiving while the primary keeps mining: writes that never replicate.
    env.q("dr", "ALTER SYSTEM SET primary_conninfo = ''")
    env.q("dr", "SELECT pg_reload_conf()")
    time.sleep(2.0)
    r = cli(env.env, "local", "outage", "us-east-1", "--json")
    assert r.returncode == 0, r.stderr
    since = json.loads(r.stdout)["since"]
    last_replicated = env.q("dr", "SELECT max(height) FROM blockchain")[0][0]
    r = cli(env.env, "failover", "--stack", "local-dr", "--yes", "--json", timeout=240)
    done = time.time()
    assert r.returncode == 0, r.stderr[-3000:]
    assert outage.refused_between(env.dir, since, done) == []  # nothing asked of us-east-1 or a global API
    journal = json.loads(r.stdout)
    report = next(s for s in journal["steps"] if s["name"] == "report")["detail"]
    assert report["mode"] == "failover" and report["rto_s"] > 0 and report["peer_reachable"] is False
    assert report["rpo_last_replicated_height"] == last_replicated and report["rpo_window_s"] > 0
    assert "RTO" in r.stderr and "last replicated block" in r.stderr
    assert env.dns() == env.outputs["local-dr"]["node_api_fqdn"] and env.traffic_on_dr()
    during = env.sites()
    assert during["writer"] == "local-dr"
    assert {s["stack"]: s["database"] for s in during["sites"]}["local"] == "unreachable"

    r = cli(env.env, "local", "outage", "--heal", "--json")
    assert r.returncode == 0, r.stderr
    # the old primary is back and accepts no write: its database refuses, its node does not mine
    with pytest.raises(psycopg.Error):
        env.q("primary", "INSERT INTO blockchain (height, hash, prev_hash, \"timestamp\", tx_count, transactions)"
                         " VALUES (999999, 'x', 'y', now(), 0, '[]')")
    h0 = env.node("primary", "/api/v1/blockchain/info")["block_height"]
    time.sleep(2.0)
    assert env.node("primary", "/api/v1/blockchain/info")["block_height"] == h0
    assert {s["stack"]: s["database"] for s in env.sites()["sites"]}["local"] == "fenced"
    # the independent count: the old primary's rows above the last block the standby had
    n, newest = env.q("primary", 'SELECT count(*), extract(epoch FROM max("timestamp")) FROM blockchain'
                                 " WHERE height > %s", (last_replicated,))[0]
    base = env.q("primary", 'SELECT extract(epoch FROM "timestamp") FROM blockchain WHERE height = %s',
                 (last_replicated,))[0][0]
    assert n > 0

    r = cli(env.env, "failback", "--stack", "local", "--yes", "--json", timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    back = next(s for s in json.loads(r.stdout)["steps"] if s["name"] == "report")["detail"]
    assert back["diverged_blocks"] == n
    assert back["diverged_seconds"] == pytest.approx(float(newest) - float(base), abs=0.01)
    assert back["diverged_heights"] == [last_replicated + 1, last_replicated + n]
    assert env.writer() == "xai-local-db-primary" and not env.traffic_on_dr()
    assert env.dns() == env.outputs["local"]["node_api_fqdn"]
    assert env.q("dr", "SELECT pg_is_in_recovery()")[0][0] is True
    assert list(Path(env.state["postgres"]["datadir"]).parent.glob("*.diverged-*"))  # kept aside, not removed
    # the DR copy of the DB secret (promoted while us-east-1 was down) follows the primary's again
    sec = env.secret()
    assert (sec["host"], sec["port"]) == (env.outputs["local"]["db_endpoint"], env.outputs["local"]["db_port"])
