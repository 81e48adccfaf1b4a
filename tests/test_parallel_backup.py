"""The parallel database backup format (issue 17): `backup db --format parallel`, `restore db --jobs N`,
`verify`, `describe`, `list` and `offsite sync` of it. Real PostgreSQL, moto over HTTP with the job
roles' policies enforced, the CLI as a real process (backup as the backup role, restore as the restore
role), so the IAM of the new objects is exercised too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.backups.take import BackupOptions, backup_db
from recovery.local.postgres_cluster import PostgresCluster

from _restore_fixtures import RECOVERY, RSite, drop_test_databases, make_rsite
from conftest import ROOT, Result
from test_restore_rich_db import build_rich, damage, drop_roles, fingerprint

ROWS = 40_000  # a blockchain table past parallel_dump.SPLIT_FROM_BYTES: it is cut into height ranges


@pytest.fixture()
def prich(moto_server: Any, pg: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=ROWS)
    build_rich(pg, s.db)
    with pg.connect(s.db) as c:  # a foreign key, so that the post-data phases have one to order
        c.execute("CREATE TABLE s2.notes (id int PRIMARY KEY, thing int NOT NULL REFERENCES s2.things (id), "
                  "at_height bigint REFERENCES public.blockchain (height));"
                  "INSERT INTO s2.notes SELECT i, i, i * 10 FROM generate_series(1, 300) i;"
                  "CREATE INDEX notes_thing ON s2.notes (thing);"
                  # a partitioned table's key: built on the parent ONLY, then each partition's attached
                  "CREATE TABLE s2.logs (id int, at date, msg text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
                  "CREATE TABLE s2.logs_a PARTITION OF s2.logs FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');"
                  "CREATE TABLE s2.logs_b PARTITION OF s2.logs FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
                  "CREATE INDEX logs_msg ON s2.logs (msg);"
                  "INSERT INTO s2.logs SELECT i, date '2025-03-01' + i, 'm' || i FROM generate_series(1, 400) i")
    yield s
    drop_test_databases(pg, s.db)
    drop_roles(pg)


def run(s: RSite, *args: str, env: dict[str, str] | None = None) -> Result:
    """`recovery ARGS --stack S --outputs F` as a real process."""
    words = list(args)
    at = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    words[at:at] = ["--stack", s.stack, "--outputs", str(s.outputs_file)]
    proc = subprocess.run([RECOVERY, *words], capture_output=True, text=True, env=s.full_env(**(env or {})),
                          timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def scratch_and_quarantine(s: RSite) -> list[str]:
    return [d for d in s.databases() if d.startswith((s.db + "_restore_", s.db + "_quarantine_"))]


def test_parallel_round_trip_equals_the_source(prich: RSite) -> None:
    before = fingerprint(prich.pg.conninfo(prich.db), prich.pg.password)
    b = run(prich, "backup", "db", "--format", "parallel", "--jobs", "3", "--json")
    assert b.code == 0, b.err
    m = b.json()
    assert m["format"] == "parallel" and m["key"].endswith(".parallel") and m["db_rows"] == ROWS
    parts = m["parts"]
    sections = [p["section"] for p in parts]
    assert sections[0] == "pre-data" and sections[-1] == "post-data"
    chain = [p for p in parts if p.get("table") == "public.blockchain"]
    assert len(chain) >= 4 and sum(p["rows"] for p in chain) == ROWS  # height ranges, all rows once
    assert {p["table"] for p in parts if p.get("table")} >= {"s2.things", "s2.notes", "public.pgbench_accounts",
                                                              "s2.events_2025", "s2.events_other"}
    assert all(p["key"].startswith(m["key"] + "/") and p["version_id"] for p in parts)
    assert sum(p["stored_bytes"] for p in parts) == m["stored_bytes"]

    listed = run(prich, "list", "--kind", "db", "--json")
    assert listed.code == 0, listed.err
    assert [r["name"] for r in listed.json()] == [m["key"].rsplit("/", 1)[-1]]
    described = run(prich, "backup", "describe", "latest-db")
    assert described.code == 0 and "parallel" in described.out and f"{len(parts)} parts" in described.out, described.out
    verified = run(prich, "verify", "--kind", "db")
    assert verified.code == 0, verified.out + verified.err
    assert f"{len(parts)} parts" in verified.out

    damage(prich)
    with prich.pg.connect(prich.db) as c:
        c.execute("DELETE FROM blockchain WHERE height > 100")
    assert fingerprint(prich.pg.conninfo(prich.db), prich.pg.password) != before

    r = prich.cli("db", "--yes", "--force", "--jobs", "2", "--json", timeout=300)
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and j["not_restored"] == []
    steps = {s["name"]: s["detail"] for s in j["steps"]}
    d = steps["restore-scratch"]
    assert d["format"] == "parallel" and d["jobs"] == 2 and d["parts"] == len(parts)
    assert d["rows_loaded"] == sum(p.get("rows", 0) for p in parts) and d["stored_bytes"] == m["stored_bytes"]
    assert steps["verify-scratch"] == {"rows": ROWS, "max_height": ROWS}
    # every object, index, constraint, trigger, grant, setting and row is as it was
    assert fingerprint(prich.pg.conninfo(prich.db), prich.pg.password) == before
    with prich.pg.connect(prich.db) as c:
        assert c.execute("SELECT bool_and(indisvalid AND indisready) FROM pg_index").fetchone()[0] is True
        # the sequence goes on where it was, and the trigger fires again (it was not there while loading)
        c.execute("INSERT INTO s2.things (qty, price) VALUES (1, 1)")
        assert c.execute("SELECT max(id), bool_and(touched_at IS NOT NULL) FROM s2.things").fetchone() == (501, True)


def take_parallel(s: RSite) -> Any:
    return backup_db(s.act_as("backup"), BackupOptions(fmt="parallel", s3=s.s3()))


def corrupt_part(s: RSite, m: Any, name: str) -> None:
    """Bit rot in one part. S3 cannot alter a stored version in place: a corrupted copy is written as a
    new version and the manifest pointed at it (the parts' digest covers names, sha256 and sizes)."""
    part = next(p for p in m.parts if p["name"] == name)
    s3 = s.s3()
    body = bytearray(s3.get_object(Bucket=s.bucket, Key=part["key"])["Body"].read())
    body[len(body) // 2] ^= 0x55
    put = s3.put_object(Bucket=s.bucket, Key=part["key"], Body=bytes(body))
    doc = m.to_json()
    next(p for p in doc["parts"] if p["name"] == name)["version_id"] = put["VersionId"]
    s3.put_object(Bucket=s.bucket, Key=f"{m.key}.manifest.json", Body=json.dumps(doc).encode())


def test_a_corrupted_part_fails_with_the_integrity_code_and_leaves_the_live_database(prich: RSite) -> None:
    m = take_parallel(prich)
    big = max((p for p in m.parts if p.get("table")), key=lambda p: p["stored_bytes"])
    corrupt_part(prich, m, big["name"])
    with prich.pg.connect(prich.db) as c:
        c.execute("DELETE FROM s2.notes; DELETE FROM blockchain WHERE height > 100")
    dbs, summary = prich.databases(), prich.summary()
    r = prich.cli("db", "--yes", "--force", "--jobs", "2", "--json", timeout=300)
    assert r.code == 8, r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("error: step 'restore-scratch'") and big["name"] in last, last
    assert r.json()["failed_step"] == "restore-scratch"
    assert prich.databases() == dbs and scratch_and_quarantine(prich) == []  # the scratch was dropped
    assert prich.summary() == summary  # the live database is as it was
    assert all(prich.services.running().values())

    v = run(prich, "verify", "--kind", "db", "--no-record")
    assert v.code == 13, v.out + v.err
    assert big["name"] in v.out


def test_offsite_sync_copies_every_part(prich: RSite, tmp_path: Path) -> None:
    m = take_parallel(prich)
    dest = tmp_path / "off-site"
    r = run(prich, "offsite", "sync", "--dest", str(dest), "--json")
    assert r.code == 0, r.out + r.err
    d = dest / m.name
    assert sorted(x.name for x in d.iterdir()) == sorted(p["name"] for p in m.parts)
    assert (dest / f"{m.name}.manifest.json").exists()
    again = run(prich, "offsite", "sync", "--dest", str(dest), "--json")
    assert again.code == 0 and again.json()["present"] >= 1 and again.json()["copied"] == 0, again.out


def test_a_parallel_backup_needs_its_parts_to_be_listed(prich: RSite) -> None:
    """A backup whose parts expired (the lifecycle rule) is no backup any more, as a single object's."""
    m = take_parallel(prich)
    s3 = prich.s3()
    for p in m.parts:
        s3.delete_object(Bucket=prich.bucket, Key=p["key"])
    r = run(prich, "list", "--kind", "db", "--json")
    assert r.code == 0 and r.json() == [], r.out

