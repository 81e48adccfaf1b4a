"""`recovery list`, `recovery verify` and `recovery offsite sync` against real backups in moto."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from recovery.backups.offsite import offsite_sync
from recovery.stack import parse_outputs

from conftest import DB_PASSWORD, ROOT, Site
from test_backup import make_chain_dir

SEED_PLAN = ROOT / "docs" / "disaster-recovery-plan.md"  # the plan we implement, committed verbatim


@pytest.fixture()
def backed_up(cli: Any, site: Site, tmp_path: Path) -> dict[str, Any]:
    """One db and one chain backup, as the schedule would leave them."""
    db = cli("backup", "db", "--json")
    chain = cli("backup", "chain", "--data-dir", str(make_chain_dir(tmp_path, 200)),
                "--member-prefix", "var/lib/xai/blockchain", "--json")
    assert db.code == 0 and chain.code == 0, db.err + chain.err
    return {"db": db.json(), "chain": chain.json()}


def test_verify_passes_and_is_recorded(cli: Any, site: Site, backed_up: dict[str, Any]) -> None:
    r = cli("verify")
    assert r.code == 0, r.out + r.err
    lines = r.out.splitlines()
    db_name = backed_up["db"]["key"].rsplit("/", 1)[-1]
    assert f"✓ db     sha256      {db_name}: sha256 {backed_up['db']['sha256'][:12]} matches the manifest" in r.out
    assert any(line.startswith("✓ db     decompress") and "(gunzip -t)" in line for line in lines)
    assert "✓ db     structure   " in r.out and "completion marker" in r.out
    assert "✓ chain  structure   " in r.out and "tar lists 3 file(s)" in r.out
    for name in ("encryption", "age"):
        assert f"✓ db     {name}" in r.out and f"✓ chain  {name}" in r.out
    for name in ("versioning", "encryption", "lifecycle"):
        assert f"✓ bucket {name}" in r.out
    assert "- config present     no config backup in the catalogue (taken on deployment only)" in r.out
    assert lines[-1].startswith("✓ all ") and lines[-1].endswith(" checks passed")
    runs = site.keys("verifications/")
    assert len(runs) == 1
    record = json.loads(site.s3().get_object(Bucket=site.bucket, Key=runs[0])["Body"].read())
    assert record["ok"] is True and record["backups"]["db"] == backed_up["db"]["key"]

    listing = cli("list")
    assert listing.code == 0
    header, *rows = listing.out.splitlines()
    assert header.split() == ["KIND", "TIME", "SIZE", "AGE", "SHA256", "VERIFIED", "NAME"]
    assert len(rows) == 2 and all("✓ yes" in row for row in rows)
    assert rows[0].startswith("db ") and backed_up["db"]["sha256"][:12] in rows[0]
    js = cli("list", "--kind", "chain", "--json").json()
    assert [x["key"] for x in js] == [backed_up["chain"]["key"]] and js[0]["verified"] is True


def test_objects_without_manifest_are_not_backups(cli: Any, site: Site, backed_up: dict[str, Any]) -> None:
    site.s3().put_object(Bucket=site.bucket, Key="backups/db/database-29990101T000000Z.sql.gz",
                         Body=gzip.compress(b"-- half a dump"))
    rows = cli("list", "--json").json()
    assert [r["key"] for r in rows] == [backed_up["db"]["key"], backed_up["chain"]["key"]]
    assert rows[0]["verified"] is None
    assert cli("verify", "--kind", "db").code == 0  # latest = newest *with* a manifest


def _rewrite(site: Site, key: str, body: bytes) -> None:
    site.s3().put_object(Bucket=site.bucket, Key=key, Body=body, ServerSideEncryption="aws:kms",
                         SSEKMSKeyId=site.outputs["backup_kms_key_arn"])


def test_corrupted_object_fails_verify(cli: Any, site: Site, backed_up: dict[str, Any]) -> None:
    key = backed_up["db"]["key"]
    data = bytearray(site.s3().get_object(Bucket=site.bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    _rewrite(site, key, bytes(data))
    r = cli("verify")
    assert r.code == 13
    assert re.search(r"^✗ db     sha256 .* != manifest", r.out, re.M)
    assert re.search(r"^✗ db     decompress .*the gzip stream is corrupt", r.out, re.M)
    assert r.err.strip() == ("error: 3 verification check(s) failed on stack 'production' (first: db sha256) - "
                             "read the ✗ lines above; take a new backup if the latest one is bad")
    assert "✗ FAILED" in cli("list", "--kind", "db").out


def test_truncated_gzip_fails_verify(cli: Any, site: Site, backed_up: dict[str, Any]) -> None:
    for kind in ("db", "chain"):
        key = backed_up[kind]["key"]
        data = site.s3().get_object(Bucket=site.bucket, Key=key)["Body"].read()
        _rewrite(site, key, data[: len(data) * 2 // 3])
    r = cli("verify", "--json")
    assert r.code == 13
    failed = {(c["scope"], c["name"]): c["detail"] for c in r.json()["checks"] if c["ok"] is False}
    assert "the gzip stream is truncated" in failed[("db", "decompress")]
    assert "the gzip stream is truncated" in failed[("chain", "decompress")]
    assert ("db", "sha256") in failed and ("db", "structure") in failed


def test_stale_backup_fails_the_age_check(cli: Any, backed_up: dict[str, Any]) -> None:
    r = cli("verify", "--max-age-db", "0", "--no-record")
    assert r.code == 13 and re.search(r"^✗ db     age +database-.*min old, limit 0 min$", r.out, re.M)


def test_missing_backup_and_bucket_drift_fail(cli: Any, site: Site) -> None:
    site.s3().put_bucket_versioning(Bucket=site.bucket, VersioningConfiguration={"Status": "Suspended"})
    site.s3().delete_bucket_lifecycle(Bucket=site.bucket)
    r = cli("verify", "--json")
    assert r.code == 13
    failed = {(c["scope"], c["name"]) for c in r.json()["checks"] if c["ok"] is False}
    assert {("db", "present"), ("chain", "present"), ("bucket", "versioning"), ("bucket", "lifecycle")} <= failed


def test_replication_status_is_checked_where_configured(moto_server: Any, site: Site, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    """Both sites as the program deploys them: the primary replicates into the DR vault, and the
    primary's verify (as its backup role) reads each backup's replication status."""
    from recovery.local import emulator as ext
    from recovery.local.deploy_bound import deploy_for_tests

    if not ext.installed():  # S3 replication, as the local environment's emulator has it
        ext.install()
        request.addfinalizer(ext.uninstall)
    deployed = deploy_for_tests(moto_server, db_port=site.outputs["db_port"],
                                db_password=DB_PASSWORD)
    primary, dr = deployed.outputs["local"], deployed.outputs["local-dr"]
    f = tmp_path / "primary.json"
    f.write_text(json.dumps(primary))
    env = {**site.env, **deployed.oncall.env()}
    from conftest import run_cli

    def verify() -> Any:
        return run_cli("verify", "--stack", "production", "--outputs", str(f), "--kind", "db", "--no-record", env=env)

    db = run_cli("backup", "db", "--stack", "production", "--outputs", str(f), "--json", env=env)
    assert db.code == 0, db.err
    r = verify()
    assert r.code == 0 and "✓ db     replication database-" in r.out and "COMPLETED" in r.out, r.out + r.err
    # A rule that no longer matches the backups (say, a filter typed wrong): the next backup is not copied.
    east = moto_server.client("s3", "us-east-1")
    rules = east.get_bucket_replication(Bucket=primary["backup_bucket_name"])["ReplicationConfiguration"]
    rules["Rules"][0]["Filter"] = {"Prefix": "bakcups/"}
    east.put_bucket_replication(Bucket=primary["backup_bucket_name"], ReplicationConfiguration=rules)
    assert run_cli("backup", "db", "--stack", "production", "--outputs", str(f), env=env).code == 0
    r = verify()
    assert r.code == 13 and "✗ db     replication database-" in r.out and "not found in DR bucket" in r.out

def _plan_script(dest: Path, bucket: str) -> str:
    text = SEED_PLAN.read_text()
    script = text.split("cat > /usr/local/bin/verify-backups.sh << 'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    return (script.replace('BACKUP_DIR="/var/backups/pre-deployment"', f'BACKUP_DIR="{dest}"')
            .replace('LOG_FILE="/var/log/backup-verification.log"', f'LOG_FILE="{dest.parent}/verify.log"')
            .replace("s3://xai-backups-production/", f"s3://{bucket}/"))


def test_offsite_sync_passes_the_plans_verify_script(cli: Any, site: Site, backed_up: dict[str, Any], tmp_path: Path) -> None:
    assert cli("verify").code == 0
    dest = tmp_path / "off-site"
    dest.mkdir()
    (dest / "database-20200101T000000Z.sql.gz").write_bytes(gzip.compress(b"old"))  # beyond retention
    (dest / "notes.txt").write_text("not ours")
    r = cli("offsite", "sync", "--dest", str(dest))
    assert r.code == 0, r.err
    db_name = backed_up["db"]["key"].rsplit("/", 1)[-1]
    assert f"✓ copied   {db_name}" in r.out and "- pruned   database-20200101T000000Z.sql.gz  older than 90 days" in r.out
    assert r.out.splitlines()[-1] == f"✓ {dest}: 2 copied, 0 already present, 1 pruned, 0 failed"
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [db_name, db_name + ".manifest.json", "notes.txt",
         backed_up["chain"]["key"].rsplit("/", 1)[-1], backed_up["chain"]["key"].rsplit("/", 1)[-1] + ".manifest.json"])
    assert int((dest / db_name).stat().st_mtime) == int(
        __import__("recovery.catalog", fromlist=["parse_iso"]).parse_iso(backed_up["db"]["ended_at"]).timestamp())
    if shutil.which("aws"):
        script = tmp_path / "verify-backups.sh"
        script.write_text(_plan_script(dest, site.bucket))
        # The plan's script runs on the backup host, as the backup role (an instance profile there).
        p = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                           env={**os.environ, **site.env, **site.role_env("backup")})
        assert p.returncode == 0, p.stdout + p.stderr
        assert "✓ Database backup verified" in p.stdout and "✓ Blockchain backup verified" in p.stdout
        assert "All backup verifications passed" in p.stdout
    again = cli("offsite", "sync", "--dest", str(dest), "--json")
    assert again.code == 0 and again.json()["copied"] == 0 and again.json()["present"] == 2


def test_offsite_sync_refuses_a_corrupted_copy_and_writes_nothing(site: Site, backed_up: dict[str, Any], tmp_path: Path) -> None:
    key = backed_up["db"]["key"]
    data = bytearray(site.s3().get_object(Bucket=site.bucket, Key=key)["Body"].read())
    data[100] ^= 0x01
    _rewrite(site, key, bytes(data))
    dest = tmp_path / "off"
    report = offsite_sync(site.act_as("backup"), dest, kinds=("db",))
    assert not report.ok and report.items[0].action == "failed" and "sha256 on arrival" in report.items[0].detail
    assert list(dest.iterdir()) == []  # no partial file, no temp file


def test_offsite_sync_skips_backups_whose_verification_failed(cli: Any, site: Site, backed_up: dict[str, Any], tmp_path: Path) -> None:
    key = backed_up["chain"]["key"]
    data = site.s3().get_object(Bucket=site.bucket, Key=key)["Body"].read()
    _rewrite(site, key, data[:-20])
    assert cli("verify").code == 13
    r = cli("offsite", "sync", "--dest", str(tmp_path / "o"), "--json")
    assert r.code == 0
    actions = {i["name"].split("-")[0]: i["action"] for i in r.json()["items"]}
    assert actions == {"database": "copied", "blockchain": "skipped-failed-verification"}


def test_unwritable_dest_is_an_input_error(cli: Any, backed_up: dict[str, Any], tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("offsite", "sync", "--dest", str(f / "sub"))
    assert r.code == 4 and r.err.startswith("error: cannot create ") and len(r.err.strip().splitlines()) == 1


def test_dr_stack_checks_that_the_primary_replicates_into_it(moto_server: Any, site: Site, tmp_path: Path) -> None:
    from recovery.local.deploy_bound import site_for_tests

    dr, oncall = site_for_tests(moto_server, role="dr")  # both sites, deployed together as the program does
    f = tmp_path / "dr.json"
    f.write_text(json.dumps(dr))
    primary = dr["replication_source_bucket_name"]
    east = moto_server.client("s3", "us-east-1")
    east.delete_bucket_replication(Bucket=primary)  # as if the DR stack had not been deployed yet
    from conftest import run_cli

    def bucket_checks() -> dict[str, Any]:
        r = run_cli("verify", "--stack", "production-dr", "--outputs", str(f), "--json", "--no-record",
                    env={**site.env, **oncall.env()})
        return {c["name"]: c for c in r.json()["checks"] if c["scope"] == "bucket"}

    assert bucket_checks()["replication"]["ok"] is False  # the primary does not replicate here yet
    east.put_bucket_replication(Bucket=primary, ReplicationConfiguration={
        "Role": dr["replication_role_arn"],
        "Rules": [{"ID": "dr", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": dr["backup_bucket_arn"]}}]})
    check = bucket_checks()["replication"]
    assert check["ok"] is True and check["detail"] == f"source bucket {primary} replicates into this bucket"


def legacy_chain_backup(site: Site, data_dir: Path) -> Any:
    """A chain backup as versions before the chain.db check took them: the archive alone, unchecked."""
    from recovery.archive import plan_tree
    from recovery.backups.take import BackupOptions, _tar_backup

    return _tar_backup(site.act_as("backup"), "chain", plan_tree(data_dir, "var/lib/xai/blockchain"),
                       str(data_dir), BackupOptions(s3=site.s3()))


def test_verify_fails_a_chain_backup_that_could_not_restore(cli: Any, site: Site, tmp_path: Path) -> None:
    """An archive without chain.db used to pass ("tar lists 0 file(s)"); a restore from it fails."""
    empty = tmp_path / "blockchain"
    empty.mkdir()
    m = legacy_chain_backup(site, empty)
    r = cli("verify", "--kind", "chain")
    assert r.code == 13, r.out + r.err
    line = next(x for x in r.out.splitlines() if x.startswith("✗ chain  structure"))
    assert line.endswith(f"{m.name}: tar lists 0 file(s); no chain.db at the top of the archive"), line


def test_verify_passes_a_sound_chain_db_and_names_the_check(cli: Any, site: Site, tmp_path: Path) -> None:
    cli("backup", "chain", "--data-dir", str(make_chain_dir(tmp_path, 50)), "--member-prefix", "var/lib/xai/blockchain")
    r = cli("verify", "--kind", "chain")
    assert r.code == 0, r.out + r.err
    assert "tar lists 3 file(s); chain.db passes integrity_check" in r.out
