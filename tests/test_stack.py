"""Stack outputs: every source, and the one-line errors an operator sees when they are wrong."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from recovery.errors import StackOutputsError
from recovery.stack import SECRET_SIG, load_outputs, parse_outputs

from conftest import Site, run_cli


def export_doc(stack: str, outputs: dict[str, Any], project: str = "xai-dr") -> dict[str, Any]:
    """What `pulumi stack export` prints (and, under `checkpoint.latest`, what the state file holds)."""
    return {"version": 3, "deployment": {"manifest": {"version": "3.200.0"}, "resources": [
        {"urn": f"urn:pulumi:{stack}::{project}::pulumi:providers:aws::default", "type": "pulumi:providers:aws"},
        {"urn": f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}",
         "type": "pulumi:pulumi:Stack", "outputs": outputs}]}}


def state_doc(stack: str, outputs: dict[str, Any], project: str = "xai-dr") -> dict[str, Any]:
    return {"version": 3, "checkpoint": {"stack": stack, "latest": export_doc(stack, outputs, project)["deployment"]}}


def test_flat_and_export_files_give_the_same_typed_outputs(site: Site, tmp_path: Path) -> None:
    flat = load_outputs("production", site.outputs_file)
    exp = tmp_path / "export.json"
    exp.write_text(json.dumps(export_doc("production", site.outputs)))
    assert load_outputs("production", exp) == flat
    assert flat.db_port == 5432 or isinstance(flat.db_port, int)
    assert flat.interval_minutes("db") == 60 and flat.interval_minutes("chain") == 360
    assert flat.role == "primary" and flat.replication_source_bucket_name is None


def test_numbers_arrive_as_floats_and_are_accepted(site: Site) -> None:
    raw = {**site.outputs, "db_port": 5432.0, "backup_retention_days": 30.0}
    assert parse_outputs("production", raw).db_port == 5432


def test_file_backend_project_layout_gzip_and_legacy(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stacks = tmp_path / ".pulumi" / "stacks"
    (stacks / "xai-dr").mkdir(parents=True)
    (stacks / "xai-dr" / "production.json.gz").write_bytes(gzip.compress(json.dumps(state_doc("production", site.outputs)).encode()))
    dr = {**site.outputs, "role": "dr", "replication_source_bucket_name": "b", "replication_role_arn": "arn:r"}
    (stacks / "production-dr.json").write_text(json.dumps(state_doc("production-dr", dr)))  # legacy layout
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}")
    assert load_outputs("production").backup_bucket_name == site.bucket
    assert load_outputs("production-dr").replication_source_bucket_name == "b"
    with pytest.raises(StackOutputsError, match=r"stack 'nosuch' not found in backend file://.*known: production, production-dr"):
        load_outputs("nosuch")


def test_s3_backend_state_file(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = site.s3()
    s3.create_bucket(Bucket="pulumi-state")
    s3.put_object(Bucket="pulumi-state", Key="org/.pulumi/stacks/xai-dr/production.json",
                  Body=json.dumps(state_doc("production", site.outputs)).encode())
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://pulumi-state/org")
    # The operator's own identity reads the state backend (before any job role is assumed).
    site.server.client("iam").put_user_policy(UserName="xai-local-oncall", PolicyName="pulumi-state", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"],
                                                 "Resource": ["arn:aws:s3:::pulumi-state", "arn:aws:s3:::pulumi-state/*"]}]}))
    assert load_outputs("production").backup_kms_key_arn == site.outputs["backup_kms_key_arn"]


@pytest.mark.parametrize("change,message", [
    (lambda o: o.pop("backup_bucket_name"), "missing output(s) backup_bucket_name"),
    (lambda o: o.update(db_port="5432"), "output 'db_port' should be a whole number"),
    (lambda o: o.update(db_instance_ids="i-1"), "output 'db_instance_ids' should be an array of strings"),
    (lambda o: o.update(db_endpoint={SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "x"}),
     "output 'db_endpoint' is a secret"),
    (lambda o: o.update(db_endpoint="[secret]"), "output 'db_endpoint' is a secret"),
    (lambda o: o.update(role="standby"), "output 'role' is 'standby'"),
])
def test_bad_outputs_name_the_output_and_stack(site: Site, change: Any, message: str) -> None:
    raw = dict(site.outputs)
    change(raw)
    with pytest.raises(StackOutputsError) as exc:
        parse_outputs("production", raw)
    assert message in str(exc.value) and "production" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_export_of_another_stack_is_refused(site: Site, tmp_path: Path) -> None:
    exp = tmp_path / "export.json"
    exp.write_text(json.dumps(export_doc("production-dr", site.outputs)))
    with pytest.raises(StackOutputsError, match="holds stack 'production-dr', not 'production'"):
        load_outputs("production", exp)


@pytest.mark.parametrize("setup,message", [
    ("missing", "does not exist"),
    ("malformed", "is not valid JSON"),
    ("lacking", "missing output(s) db_secret_arn"),
])
def test_cli_bad_outputs_file_one_line_exit_3_writes_nothing(site: Site, tmp_path: Path, setup: str, message: str) -> None:
    f = tmp_path / "bad.json"
    if setup == "malformed":
        f.write_text('{"role": "primary",')
    elif setup == "lacking":
        f.write_text(json.dumps({k: v for k, v in site.outputs.items() if k != "db_secret_arn"}))
    before = site.versions()
    r = run_cli("backup", "db", "--stack", "production", "--outputs", str(f), env=site.env)
    assert r.code == 3, r.err
    assert message in r.err and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert site.versions() == before


def test_cli_unknown_stack_exit_3(site: Site, tmp_path: Path) -> None:
    (tmp_path / ".pulumi" / "stacks" / "xai-dr").mkdir(parents=True)
    (tmp_path / ".pulumi" / "stacks" / "xai-dr" / "production.json").write_text(json.dumps(state_doc("production", site.outputs)))
    env = {**site.env, "PULUMI_BACKEND_URL": f"file://{tmp_path}"}
    before = site.versions()
    r = run_cli("backup", "db", "--stack", "staging", env=env)
    assert r.code == 3 and r.err.strip() == (
        f"error: stack 'staging' not found in backend file://{tmp_path} (known: production) - "
        "check --stack, or PULUMI_BACKEND_URL")
    assert site.versions() == before


def test_cli_no_source_at_all(site: Site, tmp_path: Path) -> None:
    # PATH names an empty directory: no pulumi CLI either, on any machine
    env = {k: v for k, v in site.env.items() if k != "PULUMI_BACKEND_URL"}
    r = run_cli("list", "--stack", "production", env={**env, "PATH": str(tmp_path)})
    assert r.code == 3 and "no source for stack 'production' outputs" in r.err
