"""One-pass `restore db` and `restore chain`: the backup is read once, checked while it loads into
the scratch database / staging dir, and nothing is swapped in when its sha256 or its structure is
wrong. Also the cheap pre-check (`check-backup`): free space against the manifest's raw size.

The corruptions below are ones `check-backup` cannot see (it reads no body): the object's bytes no
longer match the manifest's sha256 although HEAD agrees with it (version, size), as when storage
rots a version in place; or a dump whose manifest matches it but that lacks its end.
Real moto, real PostgreSQL and psql, the CLI as a real process."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from recovery.backups.read import BackupStream
from recovery.backups.take import BackupOptions, backup_chain, backup_db
from recovery.catalog import Catalog
from recovery.errors import IntegrityError
from recovery.postgres import ConnParams
from recovery.runbooks.restore_db import Server, psql_into
from recovery.local.node_api_stub import NodeApiStub

from _restore_fixtures import RSite, drop_test_databases, listing, make_chain_dir, make_rsite, node  # noqa: F401 - node: a fixture
from conftest import DB_PASSWORD

OWNER = "nobody:nogroup"


@pytest.fixture()
def rs(moto_server: Any, pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=3000)
    yield s
    drop_test_databases(pg, s.db)


def _last(r: Any) -> str:
    return r.err.strip().splitlines()[-1]


def rewrite(rs: RSite, m: Any, body: bytes, *, manifest_sha_of: bytes | None = None, **fields: Any) -> None:
    """Put `body` as a new version of the backup's object and point its manifest at that version.
    The manifest's sha256 is `manifest_sha_of`'s (the original bytes: the body then no longer matches
    it) or the body's own; its size is the body's, so HEAD agrees with the manifest."""
    v = rs.s3().put_object(Bucket=rs.bucket, Key=m.key, Body=body)["VersionId"]
    man = m.to_json() | {"sha256": hashlib.sha256(manifest_sha_of or body).hexdigest(), "stored_bytes": len(body),
                         "version_id": v} | fields
    rs.s3().put_object(Bucket=rs.bucket, Key=m.key + ".manifest.json", Body=json.dumps(man).encode())


def flip_gzip_mtime(body: bytes) -> bytes:
    """The first gzip member's MTIME byte changed: every byte still decompresses to the same data
    (gunzip ignores MTIME), so only the sha256 can tell."""
    assert body[:2] == b"\x1f\x8b"
    return body[:4] + bytes([body[4] ^ 0x5A]) + body[5:]


def original(rs: RSite, m: Any) -> bytes:
    return rs.s3().get_object(Bucket=rs.bucket, Key=m.key)["Body"].read()


# ------------------------------------------------------------------------------------ restore db


def _db_backup(rs: RSite) -> Any:
    return backup_db(rs.act_as("backup"), BackupOptions(fmt="gzip", s3=rs.s3()))


def _db_state(rs: RSite) -> tuple[list[str], Any]:
    return rs.databases(), rs.summary()


def _db_unchanged(rs: RSite, before: tuple[list[str], Any]) -> None:
    assert rs.databases() == before[0], "a scratch database was left behind (or a database lost)"
    assert rs.summary() == before[1], "the live database changed"
    assert all(rs.services.running().values()), "services were left stopped"


def test_db_body_corrupted_after_the_manifest_is_caught_by_the_one_pass(rs: RSite) -> None:
    m = _db_backup(rs)
    body = original(rs, m)
    rewrite(rs, m, flip_gzip_mtime(body), manifest_sha_of=body)
    with rs.pg.connect(rs.db) as c:
        c.execute("DELETE FROM blockchain WHERE height > 100")
    before = _db_state(rs)
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 8, r.err
    assert _last(r).startswith("error: step 'restore-scratch'") and "bad checksum" in _last(r), r.err
    steps = {s["name"]: s["status"] for s in r.json()["steps"]}
    assert steps["check-backup"] == "ok" and steps["swap"] != "ok"
    _db_unchanged(rs, before)
    assert rs.services.actions() == ["stop:xai-node", "stop:xai-explorer", "start:xai-node", "start:xai-explorer"]


def test_db_dump_without_its_end_is_not_committed(rs: RSite) -> None:
    """Every row is there and the manifest matches the bytes, but the dump lacks pg_dump's completion
    marker: psql is killed before its transaction commits, and nothing is swapped in."""
    m = _db_backup(rs)
    sql = gzip.decompress(original(rs, m))
    end = sql.rindex(b"-- PostgreSQL database dump complete")
    rewrite(rs, m, gzip.compress(sql[:end]))
    with rs.pg.connect(rs.db) as c:
        c.execute("DELETE FROM blockchain WHERE height > 100")
    before = _db_state(rs)
    r = rs.cli("db", "--yes", "--force")
    assert r.code == 8, r.err
    assert _last(r).startswith("error: step 'restore-scratch'") and "completion marker" in _last(r), r.err
    _db_unchanged(rs, before)


@pytest.mark.parametrize("damage", ["sha256", "no-end-marker"])
def test_psql_is_killed_before_its_transaction_commits(rs: RSite, damage: str) -> None:
    """The loader itself, on a fresh database: a stream that fails its sha256 or lacks pg_dump's end
    leaves not one table behind (psql's single transaction never committed), while the same dump,
    intact, loads its tables."""
    m = _db_backup(rs)
    server = Server(ConnParams({"host": "127.0.0.1", "port": str(rs.pg.port), "user": rs.pg.user,
                                "dbname": "postgres"}, DB_PASSWORD))
    probe = rs.db + "_probe"
    server.create(probe)
    psql_into(server, probe, BackupStream(rs.s3(), Catalog(rs.s3(), rs.bucket).get(m.key).manifest))
    assert server.table_count(probe) >= 1  # the intact dump commits
    server.drop(probe)

    body = original(rs, m)
    if damage == "sha256":
        rewrite(rs, m, flip_gzip_mtime(body), manifest_sha_of=body)
    else:
        sql = gzip.decompress(body)
        rewrite(rs, m, gzip.compress(sql[:sql.rindex(b"-- PostgreSQL database dump complete")]))
    server.create(probe)
    with pytest.raises(IntegrityError) as err:
        psql_into(server, probe, BackupStream(rs.s3(), Catalog(rs.s3(), rs.bucket).get(m.key).manifest))
    assert ("bad checksum" if damage == "sha256" else "completion marker") in err.value.problem
    assert server.table_count(probe) == 0, "psql committed a load whose stream failed its checks"


def test_db_not_enough_free_space_is_refused_before_anything_is_created(rs: RSite) -> None:
    m = _db_backup(rs)
    rewrite(rs, m, original(rs, m), raw_bytes=10**18)  # a dump far larger than any disk here
    before = _db_state(rs)
    r = rs.cli("db", "--yes", "--force")
    assert r.code == 4, r.err
    line = _last(r)
    assert line.startswith("error: step 'check-backup'") and "not enough free space" in line, r.err
    assert f"on the filesystem of {rs.pg.datadir}/base" in line and " is free" in line and "quarantine prune" in line
    _db_unchanged(rs, before)
    assert rs.services.actions() == []


def test_db_free_space_is_checked_on_the_local_server(rs: RSite) -> None:
    _db_backup(rs)
    r = rs.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    d = {s["name"]: s for s in r.json()["steps"]}["check-backup"]["detail"]
    assert d["space_checked"] == "yes" and d["space_checked_on"] == f"{rs.pg.datadir}/base"
    assert d["space_free"] >= d["space_needed"] > d["expected_db_bytes"] >= d["live_db_bytes"] > 0


# ------------------------------------------------------------------------------------ restore chain


def _chain(rs: RSite, tmp_path: Path) -> tuple[Path, Any]:
    data = make_chain_dir(tmp_path / "var-lib-xai")
    return data, backup_chain(rs.act_as("backup"), data, BackupOptions(fmt="gzip", s3=rs.s3()))


def _restore(rs: RSite, data: Path, node: NodeApiStub) -> Any:
    return rs.cli("chain", "--data-dir", str(data), "--owner", OWNER, "--node-url", node.url, "--yes")


def _chain_unchanged(rs: RSite, data: Path, before: Any) -> None:
    assert listing(data.parent)[1:] == before[1:], "the data dir or its parent changed"
    assert sorted(data.parent.glob(f".{data.name}.restore-*")) == [], "a staging dir was left behind"
    assert all(rs.services.running().values()) and rs.services.actions() == []


def test_chain_body_corrupted_after_the_manifest_is_caught_by_the_one_pass(rs: RSite, tmp_path: Path,
                                                                           node: NodeApiStub) -> None:
    data, m = _chain(rs, tmp_path)
    body = original(rs, m)
    rewrite(rs, m, flip_gzip_mtime(body), manifest_sha_of=body)
    before = listing(data.parent)
    r = _restore(rs, data, node)
    assert r.code == 8, r.err
    assert _last(r).startswith("error: step 'extract-staging'") and "bad checksum" in _last(r), r.err
    _chain_unchanged(rs, data, before)


def test_chain_truncated_archive_is_caught_by_the_one_pass(rs: RSite, tmp_path: Path, node: NodeApiStub) -> None:
    """A tar cut inside chain.db's content, recompressed whole, with a manifest that matches it."""
    data, m = _chain(rs, tmp_path)
    raw = gzip.decompress(original(rs, m))
    rewrite(rs, m, gzip.compress(raw[: len(raw) // 2]))
    before = listing(data.parent)
    r = _restore(rs, data, node)
    assert r.code == 8, r.err
    assert _last(r).startswith("error: step 'extract-staging'") and "unreadable" in _last(r), r.err
    _chain_unchanged(rs, data, before)


def test_chain_not_enough_free_space_is_refused_before_anything_is_created(rs: RSite, tmp_path: Path,
                                                                          node: NodeApiStub) -> None:
    data, m = _chain(rs, tmp_path)
    rewrite(rs, m, original(rs, m), raw_bytes=10**18)
    before = listing(data.parent)
    r = _restore(rs, data, node)
    assert r.code == 4, r.err
    line = _last(r)
    assert line.startswith("error: step 'check-backup'") and "not enough free space" in line, r.err
    assert f"on the filesystem of {data.parent}" in line and " is free" in line and "quarantine prune" in line
    _chain_unchanged(rs, data, before)
