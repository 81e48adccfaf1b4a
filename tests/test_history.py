"""`recovery runs list|show`, `backup describe` and `quarantine list|prune`: real moto over HTTP with the
job roles' policies enforced, real PostgreSQL, real restores making the journals and quarantines, and the
CLI as a real process."""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.backups.take import BackupOptions, backup_db
from recovery.runbooks.restore_chain import archive_key, run_paths
from recovery.runbooks.restore_db import quarantine_name

from _restore_fixtures import RECOVERY, RSite, drop_test_databases, make_rsite
from conftest import DB_PASSWORD, ROOT, Result

OLD_RUN = "20200101T000000Z-abcdef"  # a restore run of long ago, as the engine names runs


@pytest.fixture()
def rs(moto_server: Any, pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=500)
    yield s
    drop_test_databases(pg, s.db)
    drop_test_databases(pg, f"mydb_{s.db}")


def rec(s: RSite, *words: str, stdin: Any = subprocess.DEVNULL, timeout: float = 120) -> Result:
    """`recovery WORDS... --stack S --outputs F` as a real process (click takes options after arguments)."""
    argv = [RECOVERY, *words, "--stack", s.stack, "--outputs", str(s.outputs_file)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=s.full_env(), timeout=timeout, cwd=ROOT,
                          stdin=stdin)
    assert DB_PASSWORD not in proc.stdout + proc.stderr, "the DB password leaked"
    return Result(proc.returncode, proc.stdout, proc.stderr)


def one_line_error(r: Result, code: int, *says: str) -> None:
    assert r.code == code, (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and " - " in lines[0], r.err
    for text in says:
        assert text in lines[0], lines[0]


def backup(s: RSite) -> Any:
    return backup_db(s.act_as("backup"), BackupOptions(s3=s.s3()))


# ------------------------------------------------------------------------------------------- runs


def test_runs_list_and_show_from_the_journals(rs: RSite) -> None:
    backup(rs)
    ok = rs.cli("db", "--yes", "--force", "--json")
    assert ok.code == 0, ok.err
    ok_id = ok.json()["run_id"]
    # a run killed mid-way never ends: its journal says "running", its process is gone
    rs.crash("db", "--yes", "--force", at="restore-db:verify-scratch:before")

    r = rec(rs, "runs", "list", "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert [x["runbook"] for x in rows] == ["restore-db", "restore-db"]
    dead, done = rows
    assert done["run_id"] == ok_id and done["status"] == "ok" and done["target"] == rs.db
    assert dead["status"] == "unfinished" and dead["run_id"] > ok_id  # newest first
    assert dead["host"] == done["host"] == socket.gethostname()
    assert done["elapsed_s"] > 0 and done["location"] == f"s3://{rs.bucket}/runs/restore-db/{ok_id}.json"

    assert [x["run_id"] for x in rec(rs, "runs", "list", "--unfinished", "--json").json()] == [dead["run_id"]]
    assert [x["run_id"] for x in rec(rs, "runs", "list", "--limit", "1", "--json").json()] == [dead["run_id"]]
    assert rec(rs, "runs", "list", "--runbook", "restore-chain", "--json").json() == []

    text = rec(rs, "runs", "list")
    assert text.code == 0 and text.out.splitlines()[0].split() == ["RUNBOOK", "RUN", "ID", "TARGET", "STATUS",
                                                                   "STARTED", "ELAPSED", "HOST"]
    assert ok_id in text.out and "unfinished" in text.out

    show = rec(rs, "runs", "show", ok_id)
    assert show.code == 0, show.err
    assert show.out.startswith(f"restore-db {ok_id} on {rs.db}: ok")
    for step in ("preflight", "check-backup", "restore-scratch", "swap", "start-services"):
        assert any(line.startswith(step) and " ok " in line for line in show.out.splitlines()), step
    assert f"journal s3://{rs.bucket}/runs/restore-db/{ok_id}.json" in show.out
    assert "quarantined_as=" in show.out  # the steps' detail

    j = rec(rs, "runs", "show", dead["run_id"], "--json").json()
    assert j["status"] == "unfinished" and j["journal_status"] == "running"
    assert {s["name"]: s["status"] for s in j["steps"]}["verify-scratch"] == "running"
    assert rec(rs, "runs", "show", "latest", "--json").json()["run_id"] == dead["run_id"]


def test_unknown_run_id_is_one_line_exit_4_naming_stack(rs: RSite) -> None:
    one_line_error(rec(rs, "runs", "show", "20200101T000000Z-000000"), 4, "no run 20200101T000000Z-000000",
                   "--stack")
    r = rec(rs, "runs", "show", "20200101T000000Z-000000", "--json")
    assert r.code == 4 and json.loads(r.out)["exit_code"] == 4
    one_line_error(rec(rs, "runs", "show", "../../etc/passwd"), 4, "is not a run id as the engine names them")
    one_line_error(rec(rs, "runs", "list", "--runbook", "../x"), 4, "--runbook")
    one_line_error(rec(rs, "runs", "list", "--limit", "0"), 4, "--limit")
    assert rec(rs, "runs", "list").out.strip() == f"no runs recorded for stack {rs.stack}"


# ------------------------------------------------------------------------------------------- backup describe


def test_backup_describe_by_latest_name_and_key(rs: RSite) -> None:
    m = backup(rs)
    j = rec(rs, "backup", "describe", "latest-db", "--json")
    assert j.code == 0, j.err
    d = j.json()
    assert d["key"] == m.key and d["sha256"] == m.sha256 and d["db_rows"] == 500 and d["verification"] is None
    assert d["version_id"] == m.version_id and d["kms_key_id"] == m.kms_key_id
    assert rec(rs, "backup", "describe", m.name, "--json").json()["key"] == m.key
    assert rec(rs, "backup", "describe", "latest", "--json").json()["key"] == m.key

    text = rec(rs, "backup", "describe", m.key)
    assert text.code == 0, text.err
    fields = dict(line.split(None, 1) for line in text.out.splitlines() if not line.startswith(("kms", "written")))
    assert fields["kind"] == "db" and fields["sha256"] == m.sha256 and fields["version"] == m.version_id
    assert fields["rows"].startswith("500, max height 500")
    assert " kB raw" in fields["size"] or " MB raw" in fields["size"], fields["size"]
    assert fields["verified"] == "- never"
    assert f"kms key     {m.kms_key_id}" in text.out

    v = rec(rs, "verify", "--kind", "db")
    assert v.code == 0, v.err
    assert rec(rs, "backup", "describe", m.name).out.count("verified    ✓ yes at ") == 1
    assert rec(rs, "backup", "describe", m.name, "--json").json()["verification"]["ok"] is True


def test_backup_describe_unknown_key_is_one_line_exit_4(rs: RSite) -> None:
    one_line_error(rec(rs, "backup", "describe", "database-20200101T000000Z.sql.gz"), 4, "no catalogued backup")
    # the hint's command names the stack in use (issue 18), so it runs as copied
    one_line_error(rec(rs, "backup", "describe", "nonsense"), 4, "'nonsense' is not a backup name",
                   f"use `recovery list --stack {rs.stack}` to see them")
    one_line_error(rec(rs, "backup", "describe", "runs/x/database-20200101T000000Z.sql.gz"), 4, "is not a backup key")
    one_line_error(rec(rs, "backup", "describe", "latest-db"), 4, "no db backup in")
    one_line_error(rec(rs, "backup", "describe", "latest-tape"), 4, "names no kind of backup")


# ------------------------------------------------------------------------------------------- quarantine


def _stamp(run_id: str) -> str:
    return run_id.split("-", 1)[0]


@pytest.fixture()
def kept(rs: RSite, tmp_path: Path) -> dict[str, Any]:
    """What restores keep, old and new, next to lookalikes nobody may touch."""
    backup(rs)
    r = rs.cli("db", "--yes", "--force", "--json")  # a real restore: quarantines the live database now
    assert r.code == 0, r.err
    fresh_db = {s["name"]: s for s in r.json()["steps"]}["swap"]["detail"]["quarantined_as"]
    old_db = quarantine_name(rs.db, OLD_RUN)
    lookalikes = [f"{rs.db}_quarantine_notastamp", f"{rs.db}_quarantine_20201399t000000z",
                  f"mydb_{rs.db}_quarantine_keep", f"{old_db}_copy"]
    for name in [old_db, *lookalikes]:
        rs.pg.create_database(name)

    data = tmp_path / "node" / "blockchain"
    data.mkdir(parents=True)
    old_dir = run_paths(data, OLD_RUN)[2]
    fresh_dir = run_paths(data, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-000001")[2]
    for d in (old_dir, fresh_dir):
        d.mkdir()
        (d / "chain.db").write_bytes(b"x" * 5000)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    (data.parent / "blockchain.quarantine-keep").mkdir()
    (data.parent / "blockchain.quarantine-20200102T000000Z").symlink_to(precious)  # parses, but is a symlink

    s3 = rs.s3()
    old_key = archive_key(OLD_RUN)
    for key in (old_key, "quarantine/notes.txt", "quarantine/chain/corrupted-blockchain-20200101T000000Z.tar"):
        s3.put_object(Bucket=rs.bucket, Key=key, Body=b"y" * 3000)
    return {"fresh_db": fresh_db, "old_db": old_db, "lookalikes": lookalikes, "data": data, "old_dir": old_dir,
            "fresh_dir": fresh_dir, "precious": precious, "old_key": old_key}


def _names(items: list[dict[str, Any]]) -> set[str]:
    return {i["name"] for i in items}


def test_quarantine_list_shows_what_restores_kept(rs: RSite, kept: dict[str, Any]) -> None:
    r = rec(rs, "quarantine", "list", "--data-dir", str(kept["data"]), "--json")
    assert r.code == 0, r.err
    items = r.json()["items"]
    assert _names(items) == {kept["fresh_db"], kept["old_db"], str(kept["old_dir"]), str(kept["fresh_dir"]),
                             kept["old_key"]}
    by = {i["name"]: i for i in items}
    assert by[kept["old_db"]]["kind"] == "db" and by[kept["old_db"]]["size_bytes"] > 0
    assert by[str(kept["old_dir"])]["size_bytes"] == 5000 and by[kept["old_key"]]["size_bytes"] == 3000
    assert by[kept["old_key"]]["kind"] == "s3" and by[kept["old_key"]]["where"] == f"s3://{rs.bucket}"
    assert by[kept["old_db"]]["age_s"] > 5 * 365 * 86400 and by[kept["fresh_db"]]["age_s"] < 600

    text = rec(rs, "quarantine", "list", "--data-dir", str(kept["data"]))
    assert text.code == 0 and text.out.splitlines()[0].split()[:3] == ["KIND", "AGE", "SIZE"]
    assert "5.0 kB" in text.out and kept["old_key"] in text.out
    # without a data dir (this stack has none) the directories are not looked at, and it says so
    r = rec(rs, "quarantine", "list", "--json")
    assert str(kept["old_dir"]) not in _names(r.json()["items"]) and "--data-dir" in r.json()["notes"][0]


def _state(rs: RSite, kept: dict[str, Any]) -> tuple[Any, ...]:
    parent = kept["data"].parent
    return (rs.databases(), sorted(p.name for p in parent.iterdir()), rs.keys("quarantine/"),
            sorted(p.name for p in kept["precious"].iterdir()))


def test_prune_refuses_without_yes_and_dry_run_deletes_nothing(rs: RSite, kept: dict[str, Any]) -> None:
    before = _state(rs, kept)
    one_line_error(rec(rs, "quarantine", "prune", "--data-dir", str(kept["data"])), 9, "no terminal", "--yes")
    assert _state(rs, kept) == before

    dry = rec(rs, "quarantine", "prune", "--data-dir", str(kept["data"]), "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert _names(dry.json()["would_delete"]) == {kept["old_db"], str(kept["old_dir"]), kept["old_key"]}
    assert dry.json()["kept"] == 2
    text = rec(rs, "quarantine", "prune", "--data-dir", str(kept["data"]), "--dry-run")
    assert text.code == 0 and text.out.startswith("would delete 3 item(s)")
    assert _state(rs, kept) == before
    one_line_error(rec(rs, "quarantine", "prune", "--older-than", "0"), 4, "--older-than")


def test_prune_deletes_only_old_exact_names(rs: RSite, kept: dict[str, Any]) -> None:
    r = rec(rs, "quarantine", "prune", "--data-dir", str(kept["data"]), "--yes")
    assert r.code == 0, r.err
    assert sum(line.startswith("✓ deleted ") for line in r.out.splitlines()) == 3
    dbs = rs.databases()
    assert kept["old_db"] not in dbs and kept["fresh_db"] in dbs and rs.db in dbs
    assert set(kept["lookalikes"]) <= set(dbs), "a name that merely resembles a quarantine was touched"
    assert not kept["old_dir"].exists() and kept["fresh_dir"].is_dir()
    parent = kept["data"].parent
    assert (parent / "blockchain.quarantine-keep").is_dir()
    assert (parent / "blockchain.quarantine-20200102T000000Z").is_symlink()
    assert (kept["precious"] / "keep.txt").read_text() == "mine"
    assert rs.keys("quarantine/") == ["quarantine/chain/corrupted-blockchain-20200101T000000Z.tar",
                                      "quarantine/notes.txt"]
    # what is left is younger than the default 7 days, or not ours
    again = rec(rs, "quarantine", "prune", "--data-dir", str(kept["data"]), "--yes", "--json")
    assert again.code == 0 and again.json()["deleted"] == [] and again.json()["kept"] == 2
    # --older-than reaches the fresh ones too, and still nothing else
    now = rec(rs, "quarantine", "prune", "--data-dir", str(kept["data"]), "--older-than", "1s", "--yes", "--json")
    assert now.code == 0, now.err
    assert _names(now.json()["deleted"]) == {kept["fresh_db"], str(kept["fresh_dir"])}
    assert set(kept["lookalikes"]) <= set(rs.databases())


def test_quarantine_names_parse_only_exactly() -> None:
    from recovery.quarantine import parse_db, parse_dir, parse_key

    assert parse_db(quarantine_name("xai_blockchain", OLD_RUN)) == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert parse_db(quarantine_name("a" * 63, OLD_RUN)) is not None  # the target cut to 30 bytes
    for name in ("xai_blockchain_quarantine_notastamp", "mydb_quarantine_keep", "a" * 31 + "_quarantine_20200101t000000z",
                 "xai_blockchain_quarantine_20200101T000000Z", "xai_blockchain_quarantine_20201301t000000z",
                 "_quarantine_20200101t000000z"):
        assert parse_db(name) is None, name
    data = Path("/srv/xai/blockchain")
    assert parse_dir(run_paths(data, OLD_RUN)[2], data) is not None
    assert parse_dir(Path("/srv/xai/other.quarantine-20200101T000000Z"), data) is None
    assert parse_dir(Path("/elsewhere/blockchain.quarantine-20200101T000000Z"), data) is None
    assert parse_key(archive_key(OLD_RUN)) is not None
    assert parse_key("quarantine/chain/corrupted-blockchain-20200101T000000Z.tar.gz.bak") is None
    assert parse_key("quarantine/chain/x/corrupted-blockchain-20200101T000000Z.tar.gz") is None
