"""`recovery restore db`: real moto over HTTP, real PostgreSQL and psql, the CLI as a real process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.backups.take import BackupOptions, backup_db

from _restore_fixtures import RSite, drop_test_databases, make_rsite

RB = "restore-db"


@pytest.fixture()
def rs(moto_server: Any, pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=3000)
    yield s
    drop_test_databases(pg, s.db)


def backup(s: RSite, fmt: str = "gzip") -> Any:
    return backup_db(s.act_as("backup"), BackupOptions(fmt=fmt, s3=s.s3()))


def sql(s: RSite, statement: str, db: str | None = None) -> None:
    with s.pg.connect(db or s.db) as c:
        c.execute(statement)


def quarantined(s: RSite) -> list[str]:
    return [d for d in s.databases() if d.startswith(s.db + "_quarantine_")]


def scratch(s: RSite) -> list[str]:
    return [d for d in s.databases() if d.startswith(s.db + "_restore_")]


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("fmt", ["gzip", "zstd"])
def test_round_trip_after_rows_are_deleted(rs: RSite, fmt: str) -> None:
    before = rs.summary()
    m = backup(rs, fmt)
    sql(rs, "DELETE FROM blockchain WHERE height > 1000")
    assert rs.summary()[0] == 1000

    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    assert rs.summary() == before
    j = r.json()
    assert j["status"] == "ok" and j["runbook"] == RB
    steps = {s["name"]: s for s in j["steps"]}
    assert list(steps) == ["preflight", "check-backup", "stop-services", "restore-roles", "restore-scratch",
                           "verify-scratch", "database-settings", "swap", "start-services"]
    d = steps["restore-scratch"]["detail"]
    assert {"download_s", "decompress_s", "sql_s"} <= set(d) and d["stored_bytes"] == m.stored_bytes
    assert steps["check-backup"]["detail"]["key"] == m.key and steps["check-backup"]["detail"]["format"] == fmt
    assert steps["verify-scratch"]["detail"] == {"rows": 3000, "max_height": 3000}
    # the corrupted database is kept, renamed, with its 1000 rows
    (q,) = quarantined(rs)
    assert rs.summary(q)[0] == 1000
    assert scratch(rs) == []
    assert rs.services.actions() == ["stop:xai-node", "stop:xai-explorer", "start:xai-node", "start:xai-explorer"]
    assert all(rs.services.running().values())
    assert "swap" in r.err and "ok" in r.err  # the summary went to stderr
    # the journal is in the bucket under runs/
    assert rs.keys(f"runs/{RB}/") == [f"runs/{RB}/{j['run_id']}.json"]


def test_jobs_on_a_single_stream_backup_is_said_to_not_apply_before_anything_stops(rs: RSite) -> None:
    backup(rs, "zstd")
    r = rs.cli("db", "--yes", "--force", "--jobs", "4", "--json")
    assert r.code == 0, r.err
    note = "--jobs 4 does not apply: a zstd backup loads on one connection"
    assert r.err.count(note) == 1
    assert r.err.index(note) < r.err.index("stop-services")
    steps = {s["name"]: s for s in r.json()["steps"]}
    assert steps["check-backup"]["detail"]["jobs"] == "ignored (zstd loads on one connection)"
    # without --jobs, nothing is said
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    assert "--jobs" not in r.err and "jobs" not in {s["name"]: s for s in r.json()["steps"]}["check-backup"]["detail"]


def test_reindex_is_an_opt_in_step_after_the_swap(rs: RSite) -> None:
    before = rs.summary()
    backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 2000")
    dry = rs.cli("db", "--dry-run", "--force", "--reindex", "--json")
    assert dry.code == 0, dry.err
    assert "reindex" in dry.out and rs.summary()[0] == 2000  # the preview names it and changes nothing

    r = rs.cli("db", "--yes", "--force", "--reindex", "--json")
    assert r.code == 0, r.err
    steps = {s["name"]: s for s in r.json()["steps"]}
    assert list(steps)[-3:] == ["swap", "reindex", "start-services"]
    assert steps["reindex"]["detail"]["indexes"] >= 1  # the blockchain table's primary key at least
    assert rs.summary() == before
    with rs.pg.connect(rs.db) as c:  # every index of the restored database is valid and ready
        assert c.execute("SELECT bool_and(indisvalid AND indisready) FROM pg_index").fetchone()[0] is True


def test_round_trip_after_the_table_is_dropped_without_force(rs: RSite) -> None:
    """An emptied database (table dropped) is not 'non-empty': no --force needed; --no-keep-old drops it."""
    before = rs.summary()
    backup(rs)
    sql(rs, "DROP TABLE blockchain")
    r = rs.cli("db", "--yes", "--no-keep-old")
    assert r.code == 0, r.err
    assert rs.summary() == before
    assert quarantined(rs) == [] and scratch(rs) == []


def test_missing_database_is_restored(rs: RSite) -> None:
    before = rs.summary()
    backup(rs)
    sql(rs, f'DROP DATABASE "{rs.db}" WITH (FORCE)', db="postgres")
    r = rs.cli("db", "--yes")
    assert r.code == 0, r.err
    assert rs.summary() == before and quarantined(rs) == []


def test_non_empty_target_needs_force_and_nothing_changes(rs: RSite) -> None:
    backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 10")
    dbs = rs.databases()
    r = rs.cli("db", "--yes")
    assert r.code == 9, r.err
    line = r.err.strip().splitlines()[-1]
    assert line.startswith("error: database") and "not empty" in line and "--force" in line
    assert rs.databases() == dbs and rs.summary()[0] == 10
    assert rs.services.actions() == [] and not rs.journal_dir.exists() and rs.keys("runs/") == []


def test_explicit_backup_key_and_target_db(rs: RSite) -> None:
    old = backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 2000")
    backup(rs)  # newer, smaller: 'latest' would pick this one
    other = rs.db + "_copy"
    r = rs.cli("db", "--yes", "--backup", old.name, "--target-db", other)
    assert r.code == 0, r.err
    assert rs.summary(other)[:2] == (3000, 3000)
    assert rs.summary()[:2] == (2000, 2000)  # the stack's database was not touched


# ------------------------------------------------------------------------------------ dry run, confirmation


def test_dry_run_changes_nothing(rs: RSite) -> None:
    backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 100")
    dbs, summary, keys = rs.databases(), rs.summary(), rs.keys()
    r = rs.cli("db", "--dry-run", "--force", "--json")
    assert r.code == 0, r.err
    plan = r.json()
    assert plan["dry_run"] is True and [s["name"] for s in plan["steps"]][0] == "preflight"
    assert "Plan for restore-db" in r.err
    assert rs.databases() == dbs and rs.summary() == summary and rs.keys() == keys
    assert rs.services.actions() == [] and not rs.journal_dir.exists()


def test_no_tty_and_no_yes_is_refused(rs: RSite) -> None:
    backup(rs)
    dbs, summary = rs.databases(), rs.summary()
    r = rs.cli("db", "--force")
    assert r.code == 9
    assert "no terminal" in r.err and "--yes" in r.err.strip().splitlines()[-1]
    assert rs.databases() == dbs and rs.summary() == summary and rs.services.actions() == []
    assert not rs.journal_dir.exists() and rs.keys("runs/") == []  # no journal, no lock file


# ------------------------------------------------------------------------------------ failure paths


def _unchanged(rs: RSite, dbs: list[str], summary: Any) -> None:
    assert rs.databases() == dbs, "a database was left behind or lost"
    assert rs.summary() == summary
    assert all(rs.services.running().values()), "services were left stopped"


def test_bad_checksum_stops_before_any_sql(rs: RSite) -> None:
    m = backup(rs)
    body = rs.s3().get_object(Bucket=rs.bucket, Key=m.key)["Body"].read()
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key, Body=body[:100] + bytes([body[100] ^ 1]) + body[101:])
    sql(rs, "DELETE FROM blockchain WHERE height > 100")
    dbs, summary = rs.databases(), rs.summary()
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 8, r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("error: step 'check-backup'") and "bad checksum" in last
    j = r.json()  # --json prints the journal on failure too
    assert j["status"] == "failed" and j["failed_step"] == "check-backup" and "bad checksum" in j["error"]
    _unchanged(rs, dbs, summary)
    assert rs.services.actions() == []


def test_truncated_backup(rs: RSite) -> None:
    m = backup(rs)
    body = rs.s3().get_object(Bucket=rs.bucket, Key=m.key)["Body"].read()
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key, Body=body[: len(body) // 2])
    dbs, summary = rs.databases(), rs.summary()
    r = rs.cli("db", "--yes", "--force")
    assert r.code == 8 and "step 'check-backup'" in r.err.strip().splitlines()[-1]
    _unchanged(rs, dbs, summary)


def test_database_unreachable(rs: RSite, tmp_path: Path) -> None:
    import json

    backup(rs)
    dead = dict(rs.outputs, db_port=1)  # nothing listens there
    f = tmp_path / "dead.json"
    f.write_text(json.dumps(dead))
    dbs, summary = rs.databases(), rs.summary()
    rs.outputs_file = f
    r = rs.cli("db", "--yes", "--force")
    assert r.code == 6, r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("error: step 'preflight'") and "cannot connect to PostgreSQL" in last
    _unchanged(rs, dbs, summary)
    assert rs.services.actions() == []


def test_services_that_fail_to_stop(rs: RSite, tmp_path: Path) -> None:
    from _restore_fixtures import make_services

    backup(rs)
    rs.services = make_services(tmp_path / "svc2", fail_stop="xai-explorer")
    rs.extra_env["RECOVERY_SERVICES_CONFIG"] = str(rs.services.config)
    dbs, summary = rs.databases(), rs.summary()
    r = rs.cli("db", "--yes", "--force")
    assert r.code == 15, r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("error: step 'stop-services'") and "xai-explorer" in last
    _unchanged(rs, dbs, summary)
    assert rs.services.actions() == ["stop:xai-node", "start:xai-node"]  # rolled back


def test_failed_load_drops_the_scratch_and_restarts_services(rs: RSite) -> None:
    """A dump psql rejects (the manifest matches it, so only SQL can fail): scratch dropped, live intact."""
    import gzip
    import hashlib
    import json as _json

    m = backup(rs)
    bad = gzip.compress(b"CREATE TABLE blockchain (height bigint);\nTHIS IS NOT SQL;\n"
                        b"-- PostgreSQL database dump complete\n")
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key, Body=bad)
    man = m.to_json() | {"sha256": hashlib.sha256(bad).hexdigest(), "stored_bytes": len(bad), "version_id": None}
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key + ".manifest.json", Body=_json.dumps(man).encode())
    dbs, summary = rs.databases(), rs.summary()
    r = rs.cli("db", "--yes", "--force")
    assert r.code == 6, r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("error: step 'restore-scratch'") and "psql failed" in last and "syntax error" in last
    _unchanged(rs, dbs, summary)
    assert rs.services.actions() == ["stop:xai-node", "stop:xai-explorer", "start:xai-node", "start:xai-explorer"]


# ------------------------------------------------------------------------------------ crash


STEPS = ["preflight", "check-backup", "stop-services", "restore-roles", "restore-scratch", "verify-scratch",
         "database-settings", "swap", "start-services"]


KILLS = [(step, "after") for step in STEPS]
KILLS.insert(STEPS.index("swap"), ("swap", "before"))


def test_sigkill_at_every_step_then_rerun_finishes(rs: RSite) -> None:
    """SIGKILL a real `recovery restore db` at every step in turn: each rerun resumes the killed run
    and is itself killed at the next point ("after": the step's work is done but the journal does
    not know it; "before": the step has started, nothing done). After every kill the live database
    is either the old one or the fully verified new one; the last rerun finishes the job."""
    good = rs.summary()
    backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 500")
    old = rs.summary()
    for step, when in KILLS:
        rs.crash("db", "--yes", "--force", at=f"{RB}:{step}:{when}")
        now = rs.summary()
        assert now in (old, good), f"after a kill at {step}:{when} the live database is neither old nor new"
        swapped = STEPS.index(step) > STEPS.index("swap") or (step == "swap" and when == "after")
        assert now == (good if swapped else old), f"kill at {step}:{when}"
        assert len(scratch(rs)) <= 1 and len(quarantined(rs)) == (1 if swapped else 0)
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and len(j["attempts"]) == len(KILLS) + 1, "the reruns did not resume the killed run"
    assert rs.summary() == good and scratch(rs) == [] and len(quarantined(rs)) == 1
    assert rs.summary(quarantined(rs)[0]) == old
    assert all(rs.services.running().values())


def test_sigkill_while_psql_is_loading_then_rerun(rs: RSite) -> None:
    """No hook: kill the real process while the scratch database is being loaded (psql, an orphan
    then, sees EOF mid-stream). The scratch has no completion COMMENT, so the rerun drops and reloads it."""
    import signal
    import subprocess
    import time

    rs.pg.seed_blockchain(57_000, dbname=rs.db)  # ~25 MB of SQL: the load takes a while
    good = rs.summary()
    backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 500")
    old = rs.summary()
    proc = subprocess.Popen(rs.argv("db", "--yes", "--force"), env=rs.full_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not scratch(rs) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert proc.poll() is None, "the restore finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert rs.summary() == old
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    st = {s["name"]: s for s in r.json()["steps"]}
    assert st["restore-scratch"]["status"] == "ok" and st["restore-scratch"]["attempts"] == 2
    assert rs.summary() == good and scratch(rs) == []


def test_a_rerun_resumes_only_the_same_run(rs: RSite) -> None:
    """An interrupted run used to be resumed by any later `restore db` with the same flags: `latest` kept
    the old key, a different --dsn was ignored and the preflight was skipped."""
    first = backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 2500")
    rs.crash("db", "--yes", "--force", at=f"{RB}:restore-scratch:after")
    newer = backup(rs)  # `latest` now means this one
    sql(rs, "DELETE FROM blockchain WHERE height > 1000")
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    j = r.json()
    assert len(j["attempts"]) == 1 and j["params"]["backup_key"] == newer.key != first.key
    assert "An unfinished run " in r.err and f"backup_key: '{first.key}', now '{newer.key}'" in r.err
    assert rs.summary()[:2] == (2500, 2500)

    rs.crash("db", "--yes", "--force", at=f"{RB}:restore-scratch:after")
    r = rs.cli("db", "--yes", "--force", "--json", "--dsn", "host=localhost")  # the same server, named otherwise
    assert r.code == 0, r.err
    assert len(r.json()["attempts"]) == 1 and "server: 'xaiadmin@127.0.0.1:" in r.err, r.err

    # the same inputs: resumed, and the preflight judges the server again
    rs.crash("db", "--yes", "--force", at=f"{RB}:stop-services:before")
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    steps = {s["name"]: s for s in r.json()["steps"]}
    assert len(r.json()["attempts"]) == 2 and steps["preflight"]["attempts"] == 2
    assert steps["check-backup"]["status"] == "skipped"


def test_a_service_whose_status_cannot_be_read_stops_the_restore_before_the_swap(rs: RSite, tmp_path: Path) -> None:
    """`systemctl` answering "Failed to connect to bus" used to count as stopped: stop-services was
    skipped and the database swapped under a node that may still have been running."""
    import json

    backup(rs)
    sql(rs, "DELETE FROM blockchain WHERE height > 100")
    old = rs.summary()
    cfg = tmp_path / "bus-down.json"
    bus_down = ["sh", "-c", "echo 'Failed to connect to bus: No such file or directory' >&2; exit 1"]
    cfg.write_text(json.dumps({"services": [{"name": "xai-node", "stop": bus_down, "start": bus_down,
                                             "status": bus_down}]}))
    r = rs.cli("db", "--yes", "--force", env={"RECOVERY_SERVICES_CONFIG": str(cfg)})
    assert r.code == 15, r.err
    line = [x for x in r.err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and "step 'stop-services'" in line[0] and "cannot tell whether xai-node is running" in line[0]
    assert "Failed to connect to bus" in line[0]
    assert rs.summary() == old and scratch(rs) == [] and quarantined(rs) == []
