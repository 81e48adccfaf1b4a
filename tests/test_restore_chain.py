"""`recovery restore chain`: real moto, real tar/SQLite, a real HTTP node API, the CLI as a real process."""

from __future__ import annotations

import pwd
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.local.node_api_stub import NodeApiStub
from recovery.backups.take import BackupOptions, backup_chain

from _restore_fixtures import (RSite, drop_test_databases, listing, make_chain_dir, make_rsite, make_services,  # noqa: F401
                               node, tree)  # node: a fixture

RB = "restore-chain"
STEPS = ["preflight", "check-backup", "extract-staging", "check-chain-db", "chown-staging", "stop-services",
         "swap-in", "start-services", "wait-sync", "verify-node"]
OWNER = "nobody:nogroup"


@pytest.fixture()
def rs(moto_server: Any, pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=0)
    s.extra_env["RECOVERY_SYNC_POLL_SECONDS"] = "0.2"
    yield s
    drop_test_databases(pg, s.db)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return make_chain_dir(tmp_path / "var-lib-xai")


def backup(rs: RSite, d: Path, fmt: str = "gzip") -> Any:
    return backup_chain(rs.act_as("backup"), d, BackupOptions(fmt=fmt, s3=rs.s3()))


def restore(rs: RSite, d: Path, node: NodeApiStub, *extra: str, **kw: Any) -> Any:
    return rs.cli("chain", "--data-dir", str(d), "--owner", OWNER, "--node-url", node.url, *extra, **kw)


def expected_tree(rs: RSite, m: Any, tmp: Path) -> dict[str, str]:
    """What real `tar -xzf` makes of the backup (chain.db in it is SQLite's consistent copy)."""
    f = tmp / m.name
    rs.s3().download_file(rs.bucket, m.key, str(f))
    out = tmp / "tar-x"
    out.mkdir()
    flag = "-xzf" if m.format == "gzip" else "--zstd -xf"
    subprocess.run(f"tar {flag} {f} -C {out}", shell=True, check=True)
    (root,) = [p for p in out.rglob("blockchain") if p.is_dir()]
    return tree(root)


def quarantined(d: Path) -> list[Path]:
    return sorted(d.parent.glob(d.name + ".quarantine-*"))


def leftovers(d: Path) -> list[Path]:
    return sorted(d.parent.glob(f".{d.name}.restore-*"))


def dump(db_path: Path) -> list[str]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def same_data(restored: Path, original: dict[str, str], original_dump: list[str]) -> None:
    """Files byte-identical to the backed-up dir; chain.db (archived through SQLite's backup API,
    whose copy has its own header counters) with identical content."""
    t = tree(restored)
    assert set(t) == set(original)
    assert {k: v for k, v in t.items() if k != "chain.db"} == {k: v for k, v in original.items() if k != "chain.db"}
    assert dump(restored / "chain.db") == original_dump


def blocks(d: Path) -> int:
    db = sqlite3.connect(d / "chain.db")
    try:
        return int(db.execute("SELECT count(*) FROM blocks").fetchone()[0])
    finally:
        db.close()


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("fmt", ["gzip", "zstd"])
def test_deleted_data_dir_is_restored_byte_identical(rs: RSite, data: Path, node: NodeApiStub, tmp_path: Path,
                                                     fmt: str) -> None:
    original, original_dump = tree(data), dump(data / "chain.db")
    m = backup(rs, data, fmt)
    shutil.rmtree(data)
    r = restore(rs, data, node, "--yes", "--json")
    assert r.code == 0, r.err
    assert tree(data) == expected_tree(rs, m, tmp_path)  # byte-identical to what real tar extracts
    same_data(data, original, original_dump)
    nobody = pwd.getpwnam("nobody").pw_uid
    assert all(p.stat().st_uid == nobody for p in [data, *data.rglob("*")])
    j = r.json()
    assert [s["name"] for s in j["steps"]] == STEPS and j["status"] == "ok"
    st = {s["name"]: s for s in j["steps"]}
    assert {"download_s", "decompress_s", "extract_s"} <= set(st["extract-staging"]["detail"])
    assert st["check-chain-db"]["detail"]["integrity_check"] == "ok"
    assert st["check-chain-db"]["detail"]["max_height"] == 499
    assert ("GET", "/api/v1/blockchain/verify") in node.state.requests
    assert quarantined(data) == [] and leftovers(data) == []
    assert rs.services.actions() == ["stop:xai-node", "stop:xai-explorer", "start:xai-node", "start:xai-explorer"]


def test_corrupt_data_dir_is_quarantined_and_archived(rs: RSite, data: Path, node: NodeApiStub) -> None:
    original, original_dump = tree(data), dump(data / "chain.db")
    backup(rs, data)
    with open(data / "chain.db", "r+b") as f:  # damage the chain
        f.seek(4096)
        f.write(b"\xff" * 8192)
    (data / "garbage.tmp").write_text("left by the crash")
    damaged = tree(data)
    r = restore(rs, data, node, "--yes", "--archive-current", "--json")
    assert r.code == 0, r.err
    same_data(data, original, original_dump)
    (q,) = quarantined(data)
    assert tree(q) == damaged  # the damaged state is kept as it was, never deleted
    steps = {s["name"]: s for s in r.json()["steps"]}
    key = steps["archive-current"]["detail"]["archived"].split("/", 3)[3]
    assert key.startswith("quarantine/chain/corrupted-blockchain-") and key in rs.keys("quarantine/")
    assert rs.keys("backups/chain/") == sorted(rs.keys("backups/chain/"))  # the archive is not a catalogued backup
    assert not any(k.startswith("quarantine") for k in rs.keys("backups/"))


# ------------------------------------------------------------------------------------ dry run, confirmation


def test_dry_run_changes_nothing(rs: RSite, data: Path, node: NodeApiStub) -> None:
    backup(rs, data)
    before, keys = listing(data.parent), rs.keys()
    r = restore(rs, data, node, "--dry-run")
    assert r.code == 0, r.err
    assert "Plan for restore-chain" in r.err and "swap-in" in r.err
    assert listing(data.parent) == before and rs.keys() == keys
    assert rs.services.actions() == [] and not rs.journal_dir.exists()


def test_no_tty_and_no_yes_is_refused(rs: RSite, data: Path, node: NodeApiStub) -> None:
    backup(rs, data)
    before = listing(data.parent)
    r = restore(rs, data, node)
    assert r.code == 9 and "no terminal" in r.err
    assert listing(data.parent) == before and rs.services.actions() == []


# ------------------------------------------------------------------------------------ failure paths


def _unchanged(rs: RSite, data: Path, before: Any) -> None:
    # every path (inode, mtime) under the parent as before; only the parent's own mtime may move
    # (a staging dir was created and removed there)
    assert listing(data.parent)[1:] == before[1:], "the data dir or its parent changed"
    assert all(rs.services.running().values()), "services were left stopped"


def _last(r: Any) -> str:
    return r.err.strip().splitlines()[-1]


def test_bad_checksum(rs: RSite, data: Path, node: NodeApiStub) -> None:
    m = backup(rs, data)
    body = rs.s3().get_object(Bucket=rs.bucket, Key=m.key)["Body"].read()
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key, Body=body[:-200] + bytes(200))
    before = listing(data.parent)
    r = restore(rs, data, node, "--yes")
    assert r.code == 8 and _last(r).startswith("error: step 'check-backup'") and "checksum" in _last(r), r.err
    _unchanged(rs, data, before)
    assert rs.services.actions() == []


def test_truncated_archive(rs: RSite, data: Path, node: NodeApiStub) -> None:
    m = backup(rs, data)
    body = rs.s3().get_object(Bucket=rs.bucket, Key=m.key)["Body"].read()
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key, Body=body[: len(body) // 3])
    before = listing(data.parent)
    r = restore(rs, data, node, "--yes")
    assert r.code == 8 and _last(r).startswith("error: step 'check-backup'"), r.err
    _unchanged(rs, data, before)


def test_disk_full_while_extracting(rs: RSite, data: Path, node: NodeApiStub) -> None:
    backup(rs, data)
    before = listing(data.parent)
    r = restore(rs, data, node, "--yes", env={"RECOVERY_TEST_FAULT": "enospc"})
    assert r.code == 4, r.err
    assert _last(r).startswith("error: step 'extract-staging'") and "No space left on device" in _last(r)
    _unchanged(rs, data, before)
    assert leftovers(data) == [] and rs.services.actions() == []


def _can_make_immutable() -> bool:
    """chattr +i needs root (CAP_LINUX_IMMUTABLE) and a filesystem that supports it."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        if subprocess.run(["chattr", "+i", d], capture_output=True).returncode != 0:
            return False
        subprocess.run(["chattr", "-i", d], check=True)
        return True


@pytest.mark.skipif(not _can_make_immutable(), reason="chattr +i is not permitted here")
def test_read_only_parent_directory(rs: RSite, data: Path, node: NodeApiStub) -> None:
    """chattr +i: not even root may create the staging dir (a read-only dir that holds for root)."""
    backup(rs, data)
    before = listing(data.parent)
    subprocess.run(["chattr", "+i", str(data.parent)], check=True)
    try:
        r = restore(rs, data, node, "--yes")
    finally:
        subprocess.run(["chattr", "-i", str(data.parent)], check=True)
    assert r.code != 0 and _last(r).startswith("error: step 'extract-staging'"), r.err
    _unchanged(rs, data, before)


def test_services_that_fail_to_stop(rs: RSite, data: Path, node: NodeApiStub, tmp_path: Path) -> None:
    backup(rs, data)
    rs.services = make_services(tmp_path / "svc2", fail_stop="xai-node")
    rs.extra_env["RECOVERY_SERVICES_CONFIG"] = str(rs.services.config)
    before = listing(data.parent)
    r = restore(rs, data, node, "--yes")
    assert r.code == 15 and _last(r).startswith("error: step 'stop-services'") and "xai-node" in _last(r), r.err
    _unchanged(rs, data, before)
    assert leftovers(data) == []


def test_sync_that_never_finishes_then_rerun(rs: RSite, data: Path, node: NodeApiStub) -> None:
    backup(rs, data)
    shutil.rmtree(data / "peers")
    staged = None
    node.state.is_synced = False
    r = restore(rs, data, node, "--yes", "--sync-timeout", "1s")
    assert r.code == 11, r.err
    assert _last(r).startswith("error: step 'wait-sync'") and "did not sync within 1s" in _last(r)
    # the swap is the commit point: the verified data stays in place, the old one quarantined, node running
    assert (data / "peers" / "peers.json").exists() and len(quarantined(data)) == 1
    assert all(rs.services.running().values())
    staged = tree(data)
    node.state.is_synced = True
    r = restore(rs, data, node, "--yes", "--sync-timeout", "1s", "--json")
    assert r.code == 0, r.err
    st = {s["name"]: s["status"] for s in r.json()["steps"]}
    assert st["wait-sync"] == "ok" and st["extract-staging"] == "held" and st["swap-in"] == "held"
    assert len(quarantined(data)) == 1 and tree(data) == staged


# ------------------------------------------------------------------------------------ crash


KILLS = [(step, "after") for step in STEPS]
KILLS.insert(STEPS.index("swap-in"), ("swap-in", "before"))


def test_sigkill_at_every_step_then_rerun_finishes(rs: RSite, data: Path, node: NodeApiStub) -> None:
    """As for the database: kill after every step (and before the swap), each rerun resuming the
    killed run; the data dir path always holds the old tree or the verified new one."""
    m = backup(rs, data)
    good = expected_tree(rs, m, data.parent.parent)
    (data / "chain.db").write_bytes(b"not a database")
    old = tree(data)
    for step, when in KILLS:
        rs.crash("chain", "--data-dir", str(data), "--owner", OWNER, "--node-url", node.url, "--yes",
                 at=f"{RB}:{step}:{when}")
        now = tree(data)
        assert now in (old, good), f"after a kill at {step}:{when} the data dir is neither old nor new"
        swapped = STEPS.index(step) > STEPS.index("swap-in") or (step == "swap-in" and when == "after")
        assert now == (good if swapped else old), f"kill at {step}:{when}"
    r = restore(rs, data, node, "--yes", "--json")
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and len(j["attempts"]) == len(KILLS) + 1
    assert tree(data) == good and leftovers(data) == []
    (q,) = quarantined(data)
    assert tree(q) == old
    assert all(rs.services.running().values())
