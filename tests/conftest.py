"""Shared fixtures: a real moto server (HTTP), a real PostgreSQL 15 cluster, and the CLI as a subprocess.

The fixtures themselves live in recovery/local/ so the local mode reuses them; here they are
only wrapped for pytest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from recovery import aws
from recovery.local import iam
from recovery.local.deploy_bound import site_for_tests
from recovery.local.moto_server import MotoServer
from recovery.local.postgres_cluster import PostgresCluster

import prewarmed_cli

ROOT = Path(__file__).resolve().parent.parent
DB_PASSWORD = "Xq9-s3cr3t-PaSSw0rd-do-not-print"
STACK = "production"
SEED_ROWS = 60_000  # ~27 MB of plain SQL, ~12 MB gzip-1: more than one 8 MB multipart part


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    # Every request the suite makes is authorised as AWS would: the CLI runs as the job roles the
    # program declares, under its bucket policy (recovery/local/iam/).
    iam.install()
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(password=DB_PASSWORD).start()
    cluster.seed_blockchain(SEED_ROWS)
    yield cluster
    cluster.stop()


@dataclass
class Site:
    stack: str
    outputs: dict[str, Any]
    outputs_file: Path
    env: dict[str, str]
    server: MotoServer

    @property
    def bucket(self) -> str:
        return str(self.outputs["backup_bucket_name"])

    def s3(self) -> Any:
        """The account's root, as an operator's own tooling: its writes into the vault carry the
        vault's key, or the bucket policy refuses them (as it refuses the root in AWS)."""
        aws.vault_key(self.bucket, self.outputs["backup_kms_key_arn"])
        return aws.encrypt_into_vaults(self.server.client("s3", self.outputs["region"]))

    def role_env(self, job: str) -> dict[str, str]:
        """Credentials of a session of `job`'s role, for a tool that is not `recovery` (awscli)."""
        sts = boto3.client("sts", region_name=self.outputs["region"], endpoint_url=self.server.endpoint,
                           verify=self.server.ca_bundle, aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])
        c = sts.assume_role(RoleArn=self.outputs["recovery_role_arns"][job], RoleSessionName=f"test-{job}")["Credentials"]
        return {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
                "AWS_SESSION_TOKEN": c["SessionToken"]}

    def act_as(self, job: str) -> Any:
        """The parsed outputs, with this process running as `job`'s role (for runbooks called in-process)."""
        from recovery.stack import parse_outputs

        outputs = parse_outputs(self.stack, self.outputs)
        aws.act_as(outputs, job)
        return outputs

    def versions(self) -> list[str]:
        """Every object version and delete marker in the bucket (proves 'nothing was written')."""
        r = self.s3().list_object_versions(Bucket=self.bucket)
        return sorted(f"{v['Key']}@{v['VersionId']}" for v in r.get("Versions", []) + r.get("DeleteMarkers", []))

    def keys(self, prefix: str = "") -> list[str]:
        r = self.s3().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in r.get("Contents", []))


@pytest.fixture()
def site(moto_server: MotoServer, pg: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """A freshly provisioned primary site in moto, its outputs file, and env pointing at both."""
    outputs, oncall = site_for_tests(moto_server, db_port=pg.port, db_password=DB_PASSWORD)
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps(outputs))
    # The CLI starts from the on-call identity the stack trusts and assumes each job's role.
    # Journals and host locks in the test's own dir: the workers of a parallel run never share them.
    env = {**moto_server.env(), **oncall.env(), "RECOVERY_AWS_MAX_ATTEMPTS": "2",
           "RECOVERY_JOURNAL_DIR": str(tmp_path / "journal")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PULUMI_BACKEND_URL"):
        monkeypatch.delenv(k, raising=False)
    aws.forget_sessions()  # this test's on-call identity, not the last one's
    return Site(STACK, outputs, f, env, moto_server)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw: Any) -> Result:
    """Run `recovery ARGS` as a real subprocess; every output is also checked for the DB password."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    full_env.update(env or {})
    proc = prewarmed_cli.run("recovery.cli", args, env=full_env, timeout=timeout, cwd=ROOT, **kw)
    assert DB_PASSWORD not in proc.stdout and DB_PASSWORD not in proc.stderr, "the DB password leaked"
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture()
def cli(site: Site) -> Any:
    """`cli("backup", "db", ...)` with --stack/--outputs of the site filled in after the subcommand."""

    def call(*args: str, stack_args: bool = True, env: dict[str, str] | None = None, **kw: Any) -> Result:
        words = list(args)
        if stack_args:
            # options go after the (sub)command words, i.e. before the first option/positional
            i = 0
            while i < len(words) and not words[i].startswith("-") and words[i] in _COMMAND_WORDS:
                i += 1
            words[i:i] = ["--stack", site.stack, "--outputs", str(site.outputs_file)]
        return run_cli(*words, env={**site.env, **(env or {})}, **kw)

    return call


_COMMAND_WORDS = {"backup", "db", "chain", "config", "list", "verify", "offsite", "sync"}
