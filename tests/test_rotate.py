"""`recovery rotate` on the local environment: real PostgreSQL, real redis-server, the real CLI.

The rotation must leave the old credential rejected and the new one working, survive a SIGKILL
after any step (a rerun completes, and at every point AWSCURRENT or AWSPENDING works against the
service), and never print, log or journal a secret value.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from recovery.local.deploy import admin_client
from cli_env import isolated_env

from recovery.cache import CacheTarget, token_works

pytestmark = pytest.mark.skipif(shutil.which("initdb") is None and not Path("/usr/lib/postgresql/15/bin/initdb").exists(),
                                reason="PostgreSQL 15 binaries missing")

HAVE_REDIS = shutil.which("redis-server") is not None or Path("/usr/bin/redis-server").exists()


def cli(env: dict[str, str], *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recovery", *args], capture_output=True, text=True,
                          env={**env, **(extra or {})}, timeout=180)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    d = tmp_path_factory.mktemp("rot") / "env"
    e = isolated_env()
    e["RECOVERY_LOCAL_DIR"] = str(d)
    up = cli(e, "local", "up", "--mine-interval", "0.5")
    assert up.returncode == 0, up.stderr
    yield e
    cli(e, "local", "down")


class Local:
    def __init__(self, env: dict[str, str]) -> None:
        self.dir = Path(env["RECOVERY_LOCAL_DIR"])
        state = json.loads((self.dir / "state.json").read_text())
        self.endpoint, self.ca_bundle = state["aws"]["endpoint"], state["aws"]["ca_bundle"]
        self.redis = state.get("redis") or {}
        stacks = self.dir / "backend" / ".pulumi" / "stacks" / "xai-dr" / "local.json"
        res = json.loads(stacks.read_text())["checkpoint"]["latest"]["resources"][0]
        self.outputs = res["outputs"]

    def client(self, service: str) -> Any:
        return admin_client(service, "us-east-1", self.endpoint, self.ca_bundle)

    def arns(self) -> list[str]:
        o = self.outputs
        return [o["db_secret_arn"], o["cache_secret_arn"], *o["app_secret_arns"]]

    def stage_value(self, arn: str, stage: str) -> str | None:
        try:
            return str(self.client("secretsmanager").get_secret_value(SecretId=arn, VersionStage=stage)["SecretString"])
        except Exception:  # noqa: BLE001 - the stage is not attached
            return None

    def version_count(self, arn: str) -> int:
        return len(self.client("secretsmanager").list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)["Versions"])

    def every_value(self) -> set[str]:
        """Every value ever stored in the stack's secrets (and the DB passwords inside the JSON)."""
        sm = self.client("secretsmanager")
        values: set[str] = set()
        for arn in self.arns():
            for v in sm.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)["Versions"]:
                text = sm.get_secret_value(SecretId=arn, VersionId=v["VersionId"])["SecretString"]
                values.add(text)
                try:
                    values.add(json.loads(text)["password"])
                except (ValueError, KeyError, TypeError):
                    pass
        return values

    def bucket_texts(self) -> list[str]:
        s3 = self.client("s3")
        bucket = self.outputs["backup_bucket_name"]
        out = []
        for prefix in ("runs/", "incidents/"):
            for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                out.append(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode("utf-8", "replace"))
        return out

    # -- do the stored credentials work against the real services? -------------------------
    def db_works(self, text: str | None) -> bool:
        if text is None:
            return False
        doc = json.loads(text)
        try:
            psycopg.connect(host=doc["host"], port=doc["port"], user=doc["username"], dbname=doc["dbname"],
                            password=doc["password"], connect_timeout=5).close()
            return True
        except psycopg.OperationalError:
            return False

    def cache_works(self, token: str | None) -> bool:
        return token is not None and token_works(CacheTarget(self.redis["host"], int(self.redis["port"])), token)


@pytest.fixture(scope="module")
def local(env: dict[str, str]) -> Local:
    return Local(env)


def _versions_of(journal: dict[str, Any]) -> set[str]:
    return {s["detail"]["version_id"] for s in journal["steps"] if s["name"].endswith("-create") and s["detail"]}


def test_rotate_db_old_rejected_new_works_and_node_keeps_indexing(env: dict[str, str], local: Local) -> None:
    arn = local.outputs["db_secret_arn"]
    old = local.stage_value(arn, "AWSCURRENT")
    assert local.db_works(old)
    dry = cli(env, "rotate", "db", "--stack", "local", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert local.stage_value(arn, "AWSCURRENT") == old and local.stage_value(arn, "AWSPENDING") is None
    refused = cli(env, "rotate", "db", "--stack", "local")  # no terminal, no --yes
    assert refused.returncode == 9 and len(refused.stderr.strip().splitlines()) >= 1
    assert local.stage_value(arn, "AWSPENDING") is None
    r = cli(env, "rotate", "db", "--stack", "local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "ok"
    new = local.stage_value(arn, "AWSCURRENT")
    assert new != old and local.stage_value(arn, "AWSPREVIOUS") == old
    assert local.stage_value(arn, "AWSPENDING") is None
    assert not local.db_works(old), "the old password is rejected"
    assert local.db_works(new), "the new password works"
    # the node reads its credential from the pgpass the control plane rewrote: it keeps indexing
    doc = json.loads(new)
    with psycopg.connect(host=doc["host"], port=doc["port"], user=doc["username"], dbname=doc["dbname"],
                         password=doc["password"]) as conn:
        before = conn.execute("SELECT count(*) FROM blockchain").fetchone()[0]  # type: ignore[index]
    import time

    deadline = time.monotonic() + 15
    while True:
        with psycopg.connect(host=doc["host"], port=doc["port"], user=doc["username"], dbname=doc["dbname"],
                             password=doc["password"]) as conn:
            after = conn.execute("SELECT count(*) FROM blockchain").fetchone()[0]  # type: ignore[index]
        if after > before or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert after > before, "the node kept indexing into PostgreSQL after the rotation"


DB_STEPS = ["db-create", "db-set", "db-test", "db-finish", "db-verify"]


@pytest.mark.parametrize("point", [f"{s}:after" for s in DB_STEPS] + ["db-set:before"])
def test_db_sigkill_after_each_step_rerun_completes(env: dict[str, str], local: Local, point: str) -> None:
    arn = local.outputs["db_secret_arn"]
    old = local.stage_value(arn, "AWSCURRENT")
    count = local.version_count(arn)
    killed = cli(env, "rotate", "db", "--stack", "local", "--yes",
                 extra={"RECOVERY_TEST_CRASH_AT": f"rotate-db:{point}"})
    assert killed.returncode == -9, killed.stderr
    # at this instant some stored version works against the real server: try both
    current, pending = local.stage_value(arn, "AWSCURRENT"), local.stage_value(arn, "AWSPENDING")
    assert local.db_works(current) or local.db_works(pending), f"locked out after a kill at {point}"
    rerun = cli(env, "rotate", "db", "--stack", "local", "--yes", "--json")
    assert rerun.returncode == 0, rerun.stderr
    new = local.stage_value(arn, "AWSCURRENT")
    assert new != old and local.db_works(new) and not local.db_works(old)
    assert local.version_count(arn) == count + 1, "the rerun generated a value nobody stored"
    assert len(_versions_of(json.loads(rerun.stdout))) == 1


CACHE_STEPS = ["cache-create", "cache-set", "cache-test", "cache-finish", "cache-grace", "cache-only-new"]


@pytest.mark.skipif(not HAVE_REDIS, reason="redis-server is not installed (apt-get install redis-server)")
@pytest.mark.parametrize("point", [f"{s}:after" for s in CACHE_STEPS])
def test_cache_sigkill_after_each_step_rerun_completes(env: dict[str, str], local: Local, point: str) -> None:
    arn = local.outputs["cache_secret_arn"]
    old = local.stage_value(arn, "AWSCURRENT")
    assert local.cache_works(old)
    count = local.version_count(arn)
    killed = cli(env, "rotate", "cache", "--stack", "local", "--yes", "--no-grace",
                 extra={"RECOVERY_TEST_CRASH_AT": f"rotate-cache:{point}"})
    assert killed.returncode == -9, killed.stderr
    current, pending = local.stage_value(arn, "AWSCURRENT"), local.stage_value(arn, "AWSPENDING")
    assert local.cache_works(current) or local.cache_works(pending), f"locked out after a kill at {point}"
    rerun = cli(env, "rotate", "cache", "--stack", "local", "--yes", "--no-grace", "--json")
    assert rerun.returncode == 0, rerun.stderr
    new = local.stage_value(arn, "AWSCURRENT")
    assert new != old and local.cache_works(new)
    assert not local.cache_works(old), "the old token really stops working after SET"
    assert local.version_count(arn) == count + 1


@pytest.mark.skipif(not HAVE_REDIS, reason="redis-server is not installed")
def test_cache_rotate_keeps_both_tokens_valid_during_grace(env: dict[str, str], local: Local) -> None:
    arn = local.outputs["cache_secret_arn"]
    old = local.stage_value(arn, "AWSCURRENT")
    killed = cli(env, "rotate", "cache", "--stack", "local", "--yes", "--grace", "1h",
                 extra={"RECOVERY_TEST_CRASH_AT": "rotate-cache:cache-finish:after"})
    assert killed.returncode == -9
    new = local.stage_value(arn, "AWSCURRENT")
    assert new != old and local.cache_works(old) and local.cache_works(new), "ROTATE: two passwords"
    done = cli(env, "rotate", "cache", "--stack", "local", "--yes", "--no-grace")
    assert done.returncode == 0, done.stderr
    assert local.cache_works(new) and not local.cache_works(old)


def test_app_and_all_in_one_journal(env: dict[str, str], local: Local) -> None:
    before = {arn: local.stage_value(arn, "AWSCURRENT") for arn in local.arns()}
    r = cli(env, "rotate", "all", "--stack", "local", "--yes", "--no-grace", "--json")
    assert r.returncode == 0, r.stderr
    journal = json.loads(r.stdout)
    assert journal["runbook"] == "rotate-all"
    names = [s["name"] for s in journal["steps"]]
    assert names[0] == "db-create" and any(n.startswith("cache-") for n in names)
    assert sum(n.startswith("app-") and n.endswith("-finish") for n in names) == len(local.outputs["app_secret_arns"])
    for arn, value in before.items():
        assert local.stage_value(arn, "AWSCURRENT") != value
        assert local.stage_value(arn, "AWSPREVIOUS") == value


def test_no_secret_value_leaks_from_any_command(env: dict[str, str], local: Local) -> None:
    """Every command of this issue with --debug --json; search everything for the real values."""
    from tests.test_contain import contain_commands  # the containment commands on this environment

    outputs: list[str] = []
    for args in (["rotate", "db", "--dry-run"], ["rotate", "all", "--yes", "--no-grace"],
                 ["rotate", "cache", "--yes", "--no-grace"], ["rotate", "app", "--yes"]):
        words = [args[0], args[1], "--stack", "local", "--json", *args[2:]]
        r = cli(env, "--debug", *words)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    outputs += contain_commands(env, local)
    # the drill's rotation scenario: its output, record and reports
    reports = local.dir.parent / "reports"
    drill = cli(env, "--debug", "drill", "full", "--stack", "local", "--scenario", "credential-rotation", "--json",
                "--report-dir", str(reports),
                extra={"RECOVERY_JOURNAL_DIR": str(local.dir.parent / "state"),  # its own host lock
                       "XDG_STATE_HOME": str(local.dir.parent / "state")})
    assert drill.returncode == 0, drill.stderr
    doc = json.loads(drill.stdout)
    assert doc["passed"] and doc["scenarios"][0]["name"] == "credential-rotation"
    verify = [s for s in doc["scenarios"][0]["steps"] if s["name"] == "verify"][0]["detail"]
    assert verify["old_rejected"] and verify["new_works"] and verify["explorer_height"] >= 0
    outputs += [drill.stdout, drill.stderr] + [p.read_text() for p in reports.glob("*")]
    outputs += local.bucket_texts()
    values = local.every_value()
    assert len(values) >= 8
    # control: the search finds a real value where one is shown on purpose (`local status` shows the
    # sandbox's original, long since rotated, PostgreSQL password)
    shown = cli(env, "local", "status", "--json").stdout
    assert any(v in shown for v in values), "the leak search would not find a leaked value"
    for text in outputs:
        for value in values:
            assert value not in text, "a secret value leaked"


def test_generated_values_follow_the_services_character_rules() -> None:
    from recovery.runbooks.rotate import CACHE_ALPHABET, DB_ALPHABET, generate

    for _ in range(200):
        pw = generate(DB_ALPHABET)
        assert len(pw) == 32 and not set(pw) & set("/'\"@ :\\%") and pw.isprintable()
        tok = generate(CACHE_ALPHABET)
        assert 16 <= len(tok) <= 128 and set(tok) <= set(CACHE_ALPHABET) and not set(tok) - set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!&#$^<>-")
