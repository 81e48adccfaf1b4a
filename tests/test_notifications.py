"""Notifications (issue 15 item 5): DR events reach the local receiver through the emulator's SNS
topic (declared by infra/, delivered by the emulator over HTTP), the Slack-compatible webhook and the
PagerDuty Events v2 webhook (its URL and routing key in Secrets Manager), once per event, with no
secret in them; retries after a refused delivery; a stale backup pages once. Plus the topic under
Pulumi mocks (the CrossGuard rule is tested in tests/test_policy.py)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Iterator

import psycopg
import pytest

from cli_env import isolated_env, run_cli

FORMATS = ("/local/sns", "/local/slack", "/local/pagerduty")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("notify")
    d = tmp / "env"
    e = isolated_env(RECOVERY_LOCAL_DIR=str(d), RECOVERY_JOURNAL_DIR=str(tmp / "journal"),
                     RECOVERY_REPORT_DIR=str(tmp / "reports"))
    up = run_cli(e, "local", "up", "--mine-interval", "0.3")
    assert up.returncode == 0, up.stderr
    try:
        for kind in ("db", "chain"):
            b = run_cli(e, "backup", kind, "--stack", "local")
            assert b.returncode == 0, b.stderr
        yield {"env": e, "dir": d, "state": json.loads((d / "state.json").read_text())}
    finally:
        assert run_cli(e, "local", "down").returncode == 0


def deliveries(env: dict[str, Any]) -> list[dict[str, Any]]:
    from recovery.local.webhook_receiver import deliveries as read

    return read(env["dir"] / "deliveries.jsonl")


def since(env: dict[str, Any], mark: int) -> list[dict[str, Any]]:
    return deliveries(env)[mark:]


def secret_values(env: dict[str, Any]) -> dict[str, str]:
    """Every secret the local stack holds (as the emulator's admin), and the sandbox's DB passwords."""
    from recovery.local.deploy import admin_client

    aws = env["state"]["aws"]
    sm = admin_client("secretsmanager", "us-east-1", aws["endpoint"], aws["ca_bundle"])
    values = {}
    for s in sm.list_secrets()["SecretList"]:
        raw = sm.get_secret_value(SecretId=s["ARN"], VersionStage="AWSCURRENT")["SecretString"]
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = raw
        for k, v in (doc.items() if isinstance(doc, dict) else [("value", doc)]):
            if k in ("password", "token", "value", "auth_token", "routing_key") and isinstance(v, str) and len(v) >= 8:
                values[f"{s['Name']}:{k}"] = v
    pg = env["state"]["postgres"]
    values["pg"], values["maint"] = pg["password"], pg["maint_password"]
    return values


def assert_no_secret(records: list[dict[str, Any]], env: dict[str, Any]) -> None:
    for rec in records:
        body = dict(rec["body"]) if isinstance(rec["body"], dict) else rec["body"]
        if rec["path"].endswith("/pagerduty"):
            body.pop("routing_key")  # the pager's own credential: PagerDuty's API requires it here
        text = json.dumps(body)
        for name, value in secret_values(env).items():
            assert value not in text, f"secret {name} leaked into a delivery to {rec['path']}"


def by_path(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["path"], []).append(r)
    return out


def test_a_failing_drill_scenario_is_announced_once_in_each_format(env: dict[str, Any]) -> None:
    pg = env["state"]["postgres"]
    # Real damage behind the indexer's back: the scenario's preflight finds the table already broken.
    with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["maint_user"], password=pg["maint_password"],
                         dbname=pg["dbname"], autocommit=True) as conn:
        assert conn.execute("DELETE FROM blockchain WHERE height = 2").rowcount == 1
    mark = len(deliveries(env))
    r = run_cli(env["env"], "drill", "full", "--stack", "local", "--scenario", "database-corruption", timeout=300)
    assert r.returncode == 21, r.stdout + r.stderr
    time.sleep(0.5)
    got = by_path(since(env, mark))
    assert sorted(got) == sorted(FORMATS) and all(len(v) == 1 for v in got.values()), got
    sns = got["/local/sns"][0]["body"]
    assert sns["Type"] == "Notification" and sns["TopicArn"].endswith(":xai-dr-events-local")
    event = json.loads(sns["Message"])
    assert (event["kind"], event["component"], event["severity"]) == ("drill-failed", "postgresql", "error")
    assert "database-corruption" in event["summary"] and "already damaged" in event["summary"]
    slack = got["/local/slack"][0]["body"]
    assert "database-corruption" in slack["text"] and slack["blocks"][0]["type"] == "header"
    pd = got["/local/pagerduty"][0]["body"]
    secret = json.loads(_admin_secret(env, "xai/local/webhooks/oncall-pager"))
    assert pd["routing_key"] == secret["routing_key"] and pd["event_action"] == "trigger"
    assert pd["dedup_key"] == event["dedup_key"]
    assert pd["payload"]["source"] == "local" and pd["payload"]["severity"] == "error"
    assert pd["payload"]["custom_details"]["scenario"] == "database-corruption"
    assert_no_secret(since(env, mark), env)
    # The routing key is never printed either.
    assert secret["routing_key"] not in r.stdout + r.stderr


def _admin_secret(env: dict[str, Any], name: str) -> str:
    from recovery.local.deploy import admin_client

    aws = env["state"]["aws"]
    sm = admin_client("secretsmanager", "us-east-1", aws["endpoint"], aws["ca_bundle"])
    return str(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"])


def test_a_stale_backup_pages_once_and_its_recovery_resolves_it(env: dict[str, Any]) -> None:
    mark = len(deliveries(env))
    for _ in range(2):  # the daily verification finds the same stale backup twice
        r = run_cli(env["env"], "verify", "--stack", "local", "--kind", "db", "--max-age-db", "0")
        assert r.returncode == 13, r.stdout + r.stderr
    time.sleep(0.5)
    got = by_path(since(env, mark))
    assert sorted(got) == sorted(FORMATS) and all(len(v) == 1 for v in got.values()), got
    assert json.loads(got["/local/sns"][0]["body"]["Message"])["kind"] == "backup-stale"
    assert got["/local/pagerduty"][0]["body"]["dedup_key"] == "xai-dr/local/backup-stale/db"
    # A fresh enough backup again: the pager's incident is resolved (people were told once, not again).
    mark = len(deliveries(env))
    r = run_cli(env["env"], "verify", "--stack", "local", "--kind", "db")
    assert r.returncode == 0, r.stdout + r.stderr
    got = by_path(since(env, mark))
    assert list(got) == ["/local/pagerduty"], got
    assert got["/local/pagerduty"][0]["body"]["event_action"] == "resolve"
    assert got["/local/pagerduty"][0]["body"]["dedup_key"] == "xai-dr/local/backup-stale/db"


@pytest.fixture
def as_backup(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This process as the backup job of the local stack (the role a backup host runs as)."""
    from recovery import aws
    from recovery.stack import load_outputs

    for k, v in env["env"].items():
        monkeypatch.setenv(k, v)
    outputs = load_outputs("local")
    aws.act_as(outputs, "backup")
    try:
        yield outputs
    finally:
        aws.forget_sessions()


def _control(env: dict[str, Any], doc: dict[str, Any]) -> None:
    req = urllib.request.Request(env["state"]["receiver"]["url"] + "/_control/fail", data=json.dumps(doc).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def test_a_refused_delivery_is_retried(env: dict[str, Any], as_backup: Any) -> None:
    from recovery import notify

    _control(env, {"count": 1, "path": "/local/slack"})
    mark = len(deliveries(env))
    result = notify.announce(as_backup, "backup-failed", "node", "chain backup failed: disk full")
    assert result["sent"] == {"sns": None, "webhook:oncall-chat": None, "webhook:oncall-pager": None}
    slack = by_path(since(env, mark))["/local/slack"]
    assert [d["status"] for d in slack] == [503, 202]


def test_a_destination_that_stays_down_never_fails_the_caller(env: dict[str, Any], as_backup: Any) -> None:
    from recovery import notify

    _control(env, {"count": 50, "path": "/local/pagerduty"})
    try:
        started = time.monotonic()
        result = notify.announce(as_backup, "rotation-failed", "security", "rotation failed")
        took = time.monotonic() - started
    finally:
        _control(env, {"count": 0, "path": "/local/pagerduty"})
    assert result["sent"]["sns"] is None and result["sent"]["webhook:oncall-chat"] is None
    assert "503" in str(result["sent"]["webhook:oncall-pager"])
    assert took < 10, f"a dead pager held the caller for {took:.1f}s"


def test_a_secret_planted_in_an_error_never_reaches_anyone(env: dict[str, Any], as_backup: Any) -> None:
    from recovery import notify, redact

    pw = json.loads(_admin_secret(env, as_backup.db_secret_arn))["password"]
    redact.register(pw)  # what reading the DB secret does (recovery/adapters/secrets.py)
    mark = len(deliveries(env))
    notify.failed(as_backup, "backup-failed", "postgresql",
                  RuntimeError(f"pg_dump: connection to postgresql://xaiadmin:{pw}@db failed"),
                  details={"dsn": f"postgresql://xaiadmin:{pw}@db"})
    got = since(env, mark)
    assert sorted(by_path(got)) == sorted(FORMATS)
    raw = json.dumps([g["body"] for g in got])
    assert pw not in raw and "***" in raw


# ------------------------------------------------------------------------------- infra and policy


def test_each_site_declares_an_encrypted_topic_with_the_plans_contacts() -> None:
    from infra_runs import run

    for stack in ("production", "production-dr"):
        r = run(stack)
        topic = r.one("aws:sns/topic:Topic")
        key = r.one("aws:kms/key:Key", "events-key")
        assert topic.inputs["name"] == f"xai-dr-events-{stack}"
        assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"] and key.inputs["enableKeyRotation"]
        subs = r.of_type("aws:sns/topicSubscription:TopicSubscription")
        assert {s.name.split("-", 1)[1].rsplit("-", 1)[0] for s in subs} == {"dr-lead", "infrastructure", "database",
                                                                             "security"}
        assert {s.inputs["endpoint"] for s in subs} >= {"john.doe@company.com", "bob.johnson@company.com"}
        db = next(s for s in subs if s.inputs["endpoint"] == "bob.johnson@company.com")
        assert json.loads(db.inputs["filterPolicy"]) == {"component": ["postgresql"]}
        policy = json.loads(r.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
        allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
        roles = r.outputs["recovery_role_arns"]
        assert sorted(allow["Principal"]["AWS"]) == sorted(roles[j] for j in ("backup", "failover", "rotate", "contain"))
        assert allow["Action"] == "sns:Publish"
        out = r.outputs["notifications"]
        assert out["topic_arn"] == topic.outputs["arn"]
        assert all("secret_arn" in h and "url" not in h for h in out["webhooks"])
        # The restore job never publishes: it holds no sns:Publish.
        restore = json.loads(r.one("aws:iam/rolePolicy:RolePolicy", "recovery-restore").inputs["policy"])
        assert not any("sns:Publish" in s["Action"] for s in restore["Statement"])
        backup = json.loads(r.one("aws:iam/rolePolicy:RolePolicy", "recovery-backup").inputs["policy"])
        publish = next(s for s in backup["Statement"] if s["Sid"] == "PublishEvents")
        assert publish["Resource"] == topic.outputs["arn"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"subscriptions": []}, "notifications.subscriptions is empty"),
    ({"subscriptions": [{"role": "ceo", "protocol": "email", "endpoint": "x@y"}]}, "subscriptions[0].role"),
    ({"webhooks": [{"name": "p", "format": "pagerduty", "url": "https://events.pagerduty.com/v2/enqueue"}]},
     "cannot carry a PagerDuty routing key"),
    ({"webhooks": [{"name": "s", "format": "slack"}]}, "exactly one of url and secretName"),
])
def test_bad_notifications_config_is_one_line_naming_the_key(change: dict[str, Any], problem: str) -> None:
    from infra_runs import offline  # noqa: F401 - puts infra/ on sys.path
    import stack_config

    raw = {k.split(":", 1)[1]: v for k, v in offline.stack_config("production").items() if k.startswith("xai-dr:")}
    raw["notifications"] = {**raw["notifications"], **change}
    with pytest.raises(stack_config.ConfigError) as err:
        stack_config.load(raw, stack="production", region="us-east-1")
    assert problem in str(err.value) and "\n" not in str(err.value)
