"""`restore db` of a database that holds far more than `blockchain`: every object, database-level
setting, grant, comment and role survives, in place and onto a fresh server (issue 16).

Real PostgreSQL servers, real pg_dump/pgbench/psql, the CLI as a real process. The fingerprint reads
the catalogs, so a restore that drops or changes anything a user made shows up as a difference."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from recovery.backups.take import BackupOptions, backup_db
from recovery.local.postgres_cluster import PostgresCluster, pg_bin

from _restore_fixtures import RSite, drop_test_databases, make_rsite

P = f"rich{os.getpid()}_"  # roles are the whole server's: prefixed, so that tests never collide
FRESH_PASSWORD = "fresh-Server-pw-81"


def rich_sql(db: str, user: str) -> list[str]:
    o, r, a = f"{P}owner", f"{P}reader", f"{P}app"
    return [
        f"CREATE ROLE {o} LOGIN CONNECTION LIMIT 20", f"CREATE ROLE {r} NOLOGIN",
        f"CREATE ROLE {a} LOGIN", f"GRANT {r} TO {a}", f"ALTER ROLE {r} SET statement_timeout = '7s'",
        f"COMMENT ON ROLE {o} IS 'owns the rich schema'",
        f'ALTER DATABASE "{db}" OWNER TO {o}', f"ALTER DATABASE \"{db}\" SET work_mem = '8MB'",
        f"ALTER DATABASE \"{db}\" SET search_path = 'my schema', public",
        f'ALTER DATABASE "{db}" CONNECTION LIMIT 50',
        f"ALTER ROLE {r} IN DATABASE \"{db}\" SET search_path = s2, public",
        f'REVOKE CONNECT ON DATABASE "{db}" FROM PUBLIC', f'GRANT CONNECT ON DATABASE "{db}" TO {r}',
        f"COMMENT ON DATABASE \"{db}\" IS 'the chain index, and more'",
    ]


def rich_objects(owner: str, reader: str) -> str:
    return f"""
CREATE SCHEMA s2 AUTHORIZATION {owner};
CREATE TYPE s2.mood AS ENUM ('calm', 'busy', 'on fire');
CREATE TABLE s2.things (
    id serial PRIMARY KEY, mood s2.mood NOT NULL DEFAULT 'calm', doc jsonb, blob bytea,
    qty int NOT NULL, price numeric(10, 2) NOT NULL,
    total numeric GENERATED ALWAYS AS (qty * price) STORED, touched_at timestamptz);
CREATE INDEX things_doc ON s2.things USING gin (doc);
COMMENT ON TABLE s2.things IS 'things with a generated total';
CREATE FUNCTION s2.touch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.touched_at := '2026-01-01 00:00:00+00'; RETURN NEW; END $$;
CREATE TRIGGER things_touch BEFORE INSERT OR UPDATE ON s2.things FOR EACH ROW EXECUTE FUNCTION s2.touch();
INSERT INTO s2.things (mood, doc, blob, qty, price)
  SELECT (ARRAY['calm', 'busy', 'on fire']::s2.mood[])[1 + i % 3], jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i)),
         decode(md5(i::text), 'hex'), i, i / 7.0 FROM generate_series(1, 500) i;
CREATE VIEW s2.busy AS SELECT id, total FROM s2.things WHERE mood = 'busy';
CREATE MATERIALIZED VIEW s2.by_mood AS SELECT mood, count(*) AS n, sum(total) AS total FROM s2.things GROUP BY mood;
CREATE TABLE s2.events (at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE s2.events_2025 PARTITION OF s2.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE s2.events_2026 PARTITION OF s2.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE s2.events_other PARTITION OF s2.events DEFAULT;
INSERT INTO s2.events SELECT date '2025-06-01' + i, 'e' || i FROM generate_series(0, 600, 7) i;
ALTER TABLE s2.things OWNER TO {owner}; ALTER TABLE s2.events OWNER TO {owner};
ALTER MATERIALIZED VIEW s2.by_mood OWNER TO {owner}; ALTER FUNCTION s2.touch() OWNER TO {owner};
ALTER TYPE s2.mood OWNER TO {owner};
GRANT USAGE ON SCHEMA s2 TO {reader};
GRANT SELECT ON s2.things, s2.busy, s2.by_mood TO {reader};
SELECT lo_from_bytea(424242, convert_to('a large object', 'UTF8'));
ALTER LARGE OBJECT 424242 OWNER TO {owner};
GRANT SELECT ON LARGE OBJECT 424242 TO {reader};
"""


# ACLs are compared as sets: the order of aclitems depends on the order the grants were made in
FINGERPRINT_SQL = {
    "relations": """SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a)::text,
        obj_description(c.oid, 'pg_class'), c.relispartition, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2""",
    "columns": """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated,
        pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname IN ('public', 's2') ORDER BY 1, 2""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace::regnamespace::text IN ('public', 's2') ORDER BY 1, 2""",
    "indexes": "SELECT schemaname, indexname, indexdef FROM pg_indexes WHERE schemaname IN ('public', 's2') ORDER BY 1, 2",
    "views": """SELECT c.relname, pg_get_viewdef(c.oid), c.relispopulated FROM pg_class c
        WHERE c.relkind IN ('v', 'm') AND c.relnamespace::regnamespace::text = 's2' ORDER BY 1""",
    "functions": """SELECT p.proname, pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner), (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.proacl) a)::text FROM pg_proc p
        WHERE p.pronamespace::regnamespace::text = 's2' ORDER BY 1""",
    "triggers": "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    "enums": """SELECT t.typname, pg_get_userbyid(t.typowner), array_agg(e.enumlabel ORDER BY e.enumsortorder)::text
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY 1, 2 ORDER BY 1""",
    "schemas": """SELECT nspname, pg_get_userbyid(nspowner), (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(nspacl) a)::text FROM pg_namespace
        WHERE nspname IN ('public', 's2') ORDER BY 1""",
    "extensions": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
    "large_objects": """SELECT m.oid::bigint, pg_get_userbyid(m.lomowner), (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(m.lomacl) a)::text, md5(lo_get(m.oid))
        FROM pg_largeobject_metadata m ORDER BY 1""",
    "database": """SELECT pg_get_userbyid(d.datdba), (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(d.datacl) a)::text, shobj_description(d.oid, 'pg_database'),
        d.datconnlimit, d.datcollate FROM pg_database d WHERE d.datname = current_database()""",
    "database_settings": """SELECT coalesce(r.rolname, '*'), s.setconfig::text FROM pg_db_role_setting s
        JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE d.datname = current_database() ORDER BY 1""",
    "roles": f"""SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
        r.rolconnlimit, r.rolconfig::text, shobj_description(r.oid, 'pg_authid'),
        (SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
         WHERE m.member = r.oid)::text FROM pg_roles r WHERE r.rolname LIKE '{P}%' ORDER BY 1""",
}


def fingerprint(conninfo: str, password: str) -> dict[str, Any]:
    """Every object, setting, grant and role a user made, and a digest of every table's rows."""
    with psycopg.connect(conninfo, password=password, autocommit=True) as c:
        fp: dict[str, Any] = {k: c.execute(q).fetchall() for k, q in FINGERPRINT_SQL.items()}
        tables = c.execute("""SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm')
            AND n.nspname IN ('public', 's2') ORDER BY 1""").fetchall()
        fp["rows"] = {t: c.execute(f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                                   f"FROM {t} x").fetchone() for (t,) in tables}
    return fp


def build_rich(pg: PostgresCluster, db: str) -> None:
    with pg.connect("postgres") as c:
        for stmt in rich_sql(db, pg.user):
            c.execute(stmt)
    env = {**os.environ, **pg.env()}
    subprocess.run([pg_bin("pgbench"), "-i", "-q", "-s", "1", "-d", db], env=env, check=True, capture_output=True)
    with pg.connect(db) as c:
        c.execute(rich_objects(f"{P}owner", f"{P}reader"))
        c.execute(f"ALTER TABLE pgbench_accounts OWNER TO {P}owner")


def drop_roles(pg: PostgresCluster) -> None:
    with pg.connect("postgres") as c:
        roles = [r[0] for r in c.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (P + "%",)).fetchall()]
        for db in [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datallowconn").fetchall()]:
            with pg.connect(db) as d:
                for role in roles:
                    d.execute(f'DROP OWNED BY "{role}" CASCADE')
        for role in roles:
            c.execute(f'DROP ROLE IF EXISTS "{role}"')


def can_connect(pg: PostgresCluster, db: str, role: str) -> bool:
    with pg.connect("postgres") as c:
        c.execute(f"DROP ROLE IF EXISTS {role}")
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'probe-pw-1'")
    try:
        psycopg.connect(f"host={pg.host} port={pg.port} user={role} dbname={db}", password="probe-pw-1").close()
        return True
    except psycopg.OperationalError as exc:
        assert "permission denied" in str(exc), exc
        return False
    finally:
        with pg.connect("postgres") as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture()
def rich(moto_server: Any, pg: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RSite]:
    s = make_rsite(moto_server, pg, tmp_path, monkeypatch, rows=500)
    build_rich(pg, s.db)
    yield s
    drop_test_databases(pg, s.db)
    drop_roles(pg)


@pytest.fixture()
def fresh() -> Iterator[PostgresCluster]:
    """A second server that has never seen the database or its roles."""
    with PostgresCluster(password=FRESH_PASSWORD) as cluster:
        yield cluster


def take_backup(s: RSite) -> Any:
    return backup_db(s.act_as("backup"), BackupOptions(fmt="zstd", s3=s.s3()))


def damage(s: RSite) -> None:
    with s.pg.connect("postgres") as c:
        for stmt in (f'ALTER DATABASE "{s.db}" RESET ALL', f'GRANT CONNECT ON DATABASE "{s.db}" TO PUBLIC',
                     f'COMMENT ON DATABASE "{s.db}" IS NULL', f'ALTER DATABASE "{s.db}" OWNER TO {s.pg.user}'):
            c.execute(stmt)
    with s.pg.connect(s.db) as c:
        c.execute("DROP SCHEMA s2 CASCADE; DELETE FROM pgbench_accounts WHERE aid % 2 = 0; SELECT lo_unlink(424242)")


def test_in_place_every_object_setting_grant_comment_and_role_survives(rich: RSite) -> None:
    before = fingerprint(rich.pg.conninfo(rich.db), rich.pg.password)
    assert not can_connect(rich.pg, rich.db, f"{P}nogrant")  # REVOKE CONNECT ... FROM PUBLIC holds
    m = take_backup(rich)
    assert len(m.db_globals["roles"]) >= 8 and len(m.db_globals["properties"]) >= 8
    assert "PASSWORD" not in json.dumps(m.db_globals).upper()  # --no-role-passwords
    damage(rich)
    assert fingerprint(rich.pg.conninfo(rich.db), rich.pg.password) != before
    assert can_connect(rich.pg, rich.db, f"{P}nogrant")

    r = rich.cli("db", "--yes", "--force", "--json")
    assert r.code == 0, r.err
    j = r.json()
    assert j["status"] == "ok" and j["not_restored"] == []
    steps = {s["name"]: s["detail"] for s in j["steps"]}
    assert set(steps["restore-roles"]["kept"]) >= {f"{P}owner", f"{P}reader", f"{P}app"}
    assert steps["restore-roles"]["created"] == []
    assert steps["database-settings"]["applied"] >= 8
    assert fingerprint(rich.pg.conninfo(rich.db), rich.pg.password) == before
    assert not can_connect(rich.pg, rich.db, f"{P}nogrant")


def test_onto_a_fresh_server_roles_owners_and_grants_come_back(rich: RSite, fresh: PostgresCluster) -> None:
    before = fingerprint(rich.pg.conninfo(rich.db), rich.pg.password)
    take_backup(rich)
    dsn = f"host={fresh.host} port={fresh.port} user={fresh.user} dbname={rich.db} password={FRESH_PASSWORD}"
    r = rich.cli("db", "--yes", "--json", "--dsn", dsn)
    assert r.code == 0, r.err
    assert FRESH_PASSWORD not in r.out + r.err
    j = r.json()
    created = j["steps"][[s["name"] for s in j["steps"]].index("restore-roles")]["detail"]["created"]
    assert set(created) == {f"{P}owner", f"{P}reader", f"{P}app"}
    after = fingerprint(fresh.conninfo(rich.db), FRESH_PASSWORD)
    assert after == before
    assert not can_connect(fresh, rich.db, f"{P}nogrant")
    with fresh.connect("postgres") as c:  # no password came with the roles
        assert c.execute("SELECT count(*) FROM pg_authid WHERE rolname LIKE %s AND rolpassword IS NOT NULL",
                         (P + "%",)).fetchone()[0] == 0


def test_a_backup_without_roles_or_settings_ends_partial_and_names_them(rich: RSite) -> None:
    m = take_backup(rich)
    doc = m.to_json()
    doc.pop("db_globals")  # as a backup taken before roles and settings were recorded
    rich.s3().put_object(Bucket=rich.bucket, Key=f"{m.key}.manifest.json", Body=json.dumps(doc).encode())
    r = rich.cli("db", "--yes", "--force", "--json", "--backup", m.key)
    assert r.code == 18, r.err
    j = r.json()
    assert j["status"] == "partial"
    assert any(x.startswith("roles:") for x in j["not_restored"])
    assert any(x.startswith("database settings") for x in j["not_restored"])
    last = r.err.strip().splitlines()[-1]  # the progress lines come first
    assert last.startswith("error: restore-db finished, but 2 item(s) were not restored: roles:"), last
    assert rich.summary()[0] == 500  # the data itself was restored


def test_the_rto_budget_is_said_before_a_restore_that_would_exceed_it(rich: RSite) -> None:
    take_backup(rich)
    r = rich.cli("db", "--dry-run", "--force", "--json", env={"RECOVERY_RESTORE_MB_PER_S": "0.001"})
    assert r.code == 0, r.err
    b = r.json()["rto_budget"]
    assert b["exceeds_rto"] is True, b
    assert b["rto_s"] == 900 and b["rate_source"] == "RECOVERY_RESTORE_MB_PER_S"
    assert "restore pitr --stack production" in r.err + r.out
    ok = rich.cli("db", "--dry-run", "--force", "--json").json()["rto_budget"]
    assert ok["exceeds_rto"] is False and ok["estimate_s"] < 60


def test_same_named_databases_on_two_servers_restore_side_by_side(rich: RSite, fresh: PostgresCluster,
                                                                  tmp_path: Path) -> None:
    take_backup(rich)
    barrier, held, running = tmp_path / "go", tmp_path / "held", tmp_path / "running"
    running.touch()
    slow = tmp_path / "slow-services.json"  # the first restore waits in stop-services until the barrier exists
    slow.write_text(json.dumps({"services": [{
        "name": "xai-node", "stop": ["sh", "-c", f"touch {held}; while [ ! -e {barrier} ]; do sleep 0.1; done; rm {running}"],
        "start": ["touch", str(running)], "status": ["sh", "-c", f"test -e {running} || exit 3"], "timeout_seconds": 60}],
        "start_order": ["xai-node"]}))
    first = subprocess.Popen(rich.argv("db", "--yes", "--force", "--json"), env=rich.full_env(RECOVERY_SERVICES_CONFIG=str(slow)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not held.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        # the same database on the same server is locked out...
        again = rich.cli("db", "--yes", "--force")
        assert again.code == 7 and "another restore of the same target is running" in again.err
        # ...the same name on another server is not
        dsn = f"host={fresh.host} port={fresh.port} user={fresh.user} dbname={rich.db} password={FRESH_PASSWORD}"
        other = rich.cli("db", "--yes", "--json", "--dsn", dsn)
        assert other.code == 0, other.err
        assert first.poll() is None  # still running: the two overlapped
    finally:
        barrier.touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
