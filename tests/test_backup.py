"""`recovery backup db|chain|config`: real pg_dump, real moto over HTTP, real gunzip/psql/tar."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recovery.aws import client
from recovery.errors import BackupFailedError
from recovery.local.postgres_cluster import PostgresCluster
from recovery.backups.take import BackupOptions, backup_db

from cli_env import run_on_a_terminal
from conftest import DB_PASSWORD, Site, run_cli


def download(site: Site, key: str, dest: Path) -> Path:
    site.s3().download_file(site.bucket, key, str(dest))
    return dest


def make_chain_dir(root: Path, blocks: int = 2000) -> Path:
    d = root / "blockchain"
    (d / "peers").mkdir(parents=True)
    db = sqlite3.connect(d / "chain.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE blocks (height INTEGER PRIMARY KEY, hash TEXT, body BLOB)")
    db.executemany("INSERT INTO blocks VALUES (?, ?, ?)",
                   [(h, hashlib.sha256(str(h).encode()).hexdigest(), os.urandom(200)) for h in range(blocks)])
    db.commit()
    db.close()
    (d / "peers" / "peers.json").write_text(json.dumps(["10.0.1.11:8333", "10.0.2.11:8333"]))
    (d / "node.key").write_bytes(os.urandom(64))
    return d


# ------------------------------------------------------------------------------------ round trips


def test_db_backup_restores_with_the_plans_own_commands(cli: Any, site: Site, pg: PostgresCluster, tmp_path: Path) -> None:
    r = cli("backup", "db", "--json")
    assert r.code == 0, r.err
    m = r.json()
    assert m["key"].startswith("backups/db/database-") and m["key"].endswith(".sql.gz")
    assert m["format"] == "gzip" and m["db_rows"] == 60_000 and m["db_max_height"] == 60_000
    assert m["pg_server_version"].startswith("15") and m["kms_key_id"] == site.outputs["backup_kms_key_arn"]
    assert site.keys("backups/db/") == [m["key"], m["key"] + ".manifest.json"]
    head = site.s3().head_object(Bucket=site.bucket, Key=m["key"])
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == site.outputs["backup_kms_key_arn"]

    f = download(site, m["key"], tmp_path / m["key"].rsplit("/", 1)[-1])
    assert hashlib.sha256(f.read_bytes()).hexdigest() == m["sha256"] and f.stat().st_size == m["stored_bytes"]
    assert subprocess.run(["gunzip", "-t", str(f)]).returncode == 0
    pg.create_database("restored")
    env = {**os.environ, **pg.env(), "PGDATABASE": "restored"}
    subprocess.run(f"gunzip -c {f} | psql -q -v ON_ERROR_STOP=1 >/dev/null", shell=True, check=True, env=env)
    assert pg.table_summary("restored") == pg.table_summary()


def test_zstd_format_round_trip(cli: Any, site: Site, pg: PostgresCluster, tmp_path: Path) -> None:
    r = cli("backup", "db", "--format", "zstd", "--json")
    assert r.code == 0, r.err
    m = r.json()
    assert m["key"].endswith(".sql.zst") and m["format"] == "zstd"
    f = download(site, m["key"], tmp_path / "d.sql.zst")
    pg.create_database("restored_zst")
    env = {**os.environ, **pg.env(), "PGDATABASE": "restored_zst"}
    subprocess.run(f"zstd -dcq {f} | psql -q -v ON_ERROR_STOP=1 >/dev/null", shell=True, check=True, env=env)
    assert pg.table_summary("restored_zst") == pg.table_summary()


def test_human_output_without_tty_is_plain(cli: Any, site: Site) -> None:
    r = cli("backup", "db")
    assert r.code == 0, r.err
    assert r.out.startswith(f"✓ db backup s3://{site.bucket}/backups/db/database-")
    assert "60000 rows, max height 60000" in r.out
    assert "\x1b[" not in r.out + r.err and r.err == ""  # no progress bar, colours or logs when not a TTY


def test_chain_backup_extracts_where_the_plan_expects(cli: Any, site: Site, tmp_path: Path) -> None:
    d = make_chain_dir(tmp_path)
    r = cli("backup", "chain", "--data-dir", str(d), "--member-prefix", "var/lib/xai/blockchain", "--json")
    assert r.code == 0, r.err
    m = r.json()
    assert m["key"].startswith("backups/chain/blockchain-") and m["key"].endswith(".tar.gz")
    assert m["file_count"] == 3
    f = download(site, m["key"], tmp_path / "chain.tar.gz")
    out = tmp_path / "restore"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(f), "-C", str(out)], check=True)
    restored = out / "var/lib/xai/blockchain"
    assert (restored / "peers/peers.json").read_bytes() == (d / "peers/peers.json").read_bytes()
    assert (restored / "node.key").read_bytes() == (d / "node.key").read_bytes()
    a = sqlite3.connect(d / "chain.db").execute("SELECT count(*), max(height), sum(length(body)) FROM blocks").fetchone()
    b = sqlite3.connect(restored / "chain.db").execute("SELECT count(*), max(height), sum(length(body)) FROM blocks").fetchone()
    assert a == b == (2000, 1999, 400000)
    listing = subprocess.run(["tar", "-tzf", str(f)], capture_output=True, text=True, check=True).stdout
    assert "chain.db-wal" not in listing and "chain.db-shm" not in listing  # the snapshot holds their content


def test_chain_backup_of_a_live_database_is_consistent(site: Site, tmp_path: Path) -> None:
    """A writer commits all the time; every archived chain.db is a valid, committed state."""
    d = make_chain_dir(tmp_path, blocks=10)
    stop = threading.Event()

    def writer() -> None:
        db = sqlite3.connect(d / "chain.db", timeout=30)
        h = 10
        while not stop.is_set():
            with db:
                db.execute("INSERT INTO blocks VALUES (?, ?, ?)", (h, "x" * 64, os.urandom(4000)))
                db.execute("UPDATE blocks SET hash = ? WHERE height = 0", (str(h),))
            h += 1
        db.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.2)
        r = run_cli("backup", "chain", "--stack", "production", "--outputs", str(site.outputs_file), "--data-dir", str(d),
                    "--member-prefix", "var/lib/xai/blockchain", "--json", env=site.env)
    finally:
        stop.set()
        t.join()
    assert r.code == 0, r.err
    f = download(site, r.json()["key"], tmp_path / "live.tar.gz")
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(f), "-C", str(out)], check=True)
    db = sqlite3.connect(out / "var/lib/xai/blockchain/chain.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    top, marker = db.execute("SELECT max(height), (SELECT hash FROM blocks WHERE height = 0) FROM blocks").fetchone()
    assert top >= 10 and int(marker) in (top, 0) or marker == hashlib.sha256(b"0").hexdigest()


def test_config_backup_keeps_absolute_paths(cli: Any, site: Site, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "node.yaml").write_text("network: mainnet\n")
    (tmp_path / "Pulumi.production.yaml").write_text("config: {}\n")
    r = cli("backup", "config", str(tmp_path / "etc"), str(tmp_path / "Pulumi.production.yaml"), "--json")
    assert r.code == 0, r.err
    m = r.json()
    assert m["key"].startswith("backups/config/config-") and m["file_count"] == 2
    f = download(site, m["key"], tmp_path / "c.tar.gz")
    names = subprocess.run(["tar", "-tzf", str(f)], capture_output=True, text=True, check=True).stdout.split()
    assert str(tmp_path / "etc" / "node.yaml").lstrip("/") in names
    assert str(tmp_path / "Pulumi.production.yaml").lstrip("/") in names


# ---------------------------------------------------------------------------------------- failures


def _outputs(site: Site) -> Any:
    return site.act_as("backup")


def test_s3_error_mid_multipart_leaves_nothing(site: Site) -> None:
    outputs = _outputs(site)  # as the backup role, like the command
    s3 = client("s3", site.outputs["region"])
    calls = {"parts": 0}

    def fail_second_part(**kwargs: Any) -> Any:
        calls["parts"] += 1
        if calls["parts"] == 2:
            return SimpleNamespace(status_code=500, headers={}), {
                "Error": {"Code": "InternalError", "Message": "injected failure"}, "ResponseMetadata": {}}
        return None

    s3.meta.events.register("before-call.s3.UploadPart", fail_second_part)
    with pytest.raises(BackupFailedError, match="the multipart upload was aborted and nothing was catalogued"):
        backup_db(outputs, BackupOptions(s3=s3))
    assert calls["parts"] >= 2
    assert site.keys("backups/") == []
    assert site.s3().list_multipart_uploads(Bucket=site.bucket).get("Uploads", []) == []
    r = run_cli("list", "--stack", "production", "--outputs", str(site.outputs_file), "--json", env=site.env)
    assert r.code == 0 and r.json() == []


def test_pg_dump_dying_mid_stream_fails_the_backup(site: Site, pg: PostgresCluster) -> None:
    killed = {"done": False, "seen": 0}

    def kill_pg_dump(n: int) -> None:
        killed["seen"] += n
        if killed["seen"] > 3_000_000 and not killed["done"]:
            killed["done"] = True
            with pg.connect("postgres") as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'pg_dump' OR query ILIKE 'COPY %'")

    with pytest.raises(BackupFailedError, match=r"pg_dump exited with status 1 .*; the upload was aborted"):
        backup_db(_outputs(site), BackupOptions(on_bytes=kill_pg_dump))
    assert killed["done"]
    assert site.keys("backups/") == []
    assert site.s3().list_multipart_uploads(Bucket=site.bucket).get("Uploads", []) == []


def _put_lock(site: Site, kind: str, expires: str) -> None:
    site.s3().put_object(Bucket=site.bucket, Key=f"locks/backup-{kind}.lock", Body=json.dumps({
        "owner": "ops@db-host-2 pid 4242", "token": "t", "acquired_at": "2026-01-01T00:00:00Z",
        "expires_at": expires}).encode())


def test_a_held_lock_refuses_the_second_backup(cli: Any, site: Site) -> None:
    _put_lock(site, "db", "2999-01-01T00:00:00Z")
    before = site.versions()
    r = cli("backup", "db")
    assert r.code == 7
    assert r.err.strip() == ("error: the db backup lock of stack 'production' is held by ops@db-host-2 pid 4242 since "
                             "2026-01-01T00:00:00Z (expires 2999-01-01T00:00:00Z) - wait for that run to finish; "
                             "if it is gone, rerun with --take-over-stale")
    assert site.versions() == before
    # another kind is not blocked
    assert cli("backup", "config", str(Path(__file__))).code == 0


def test_a_stale_lock_is_taken_over_and_says_so(cli: Any, site: Site) -> None:
    _put_lock(site, "db", "2020-01-01T00:00:00Z")
    r = cli("backup", "db", "--json")
    assert r.code == 0, r.err
    assert ("recovery: WARNING: took over the stale db backup lock of stack 'production', held by ops@db-host-2 "
            "pid 4242 since 2026-01-01T00:00:00Z (expired 2020-01-01T00:00:00Z)") in r.err
    assert r.json()["took_over_stale_lock"]["owner"] == "ops@db-host-2 pid 4242"
    assert "locks/backup-db.lock" not in site.keys("locks/")  # released afterwards


def test_two_concurrent_backups_never_interleave(site: Site) -> None:
    args = ["backup", "db", "--stack", "production", "--outputs", str(site.outputs_file), "--json"]
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(run_cli(*args, env=site.env))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.code for r in results)
    assert codes in ([0, 0], [0, 7])  # the second either waited its turn (ran after) or was refused
    assert len([k for k in site.keys("backups/db/") if k.endswith(".manifest.json")]) == codes.count(0)


# ------------------------------------------------------------------------------------- bad input


def test_unreadable_data_dir(site: Site, tmp_path: Path) -> None:
    before = site.versions()
    r = run_cli("backup", "chain", "--stack", "production", "--outputs", str(site.outputs_file),
                "--data-dir", str(tmp_path / "nope"), env=site.env)
    assert r.code == 4 and r.err.strip().endswith("does not exist - check the path (e.g. --data-dir /var/lib/xai/blockchain)")
    assert r.out == ""
    shared = Path(tempfile.mkdtemp(prefix="xai-unreadable-"))  # reachable by an unprivileged user
    try:
        shared.chmod(0o755)
        d = make_chain_dir(shared, blocks=1)
        for p in (d, d / "peers"):
            p.chmod(0o755)
        (d / "node.key").chmod(0)
        outputs = shared / "outputs.json"
        outputs.write_text(site.outputs_file.read_text())
        outputs.chmod(0o644)
        code = _run_as_nobody(site, ["backup", "chain", "--stack", "production", "--outputs", str(outputs),
                                     "--data-dir", str(d)])
    finally:
        shutil.rmtree(shared)
    assert code == 4
    assert site.versions() == before


def _run_as_nobody(site: Site, args: list[str]) -> int:
    """Run the CLI in a forked child that dropped root (root reads everything), in-process."""
    if os.geteuid() != 0:
        return run_cli(*args, env=site.env).code
    import click.testing

    import encodings.utf_8_sig  # noqa: F401 - the outputs reader's codec; /root is unreadable after setuid
    import recovery.archive  # noqa: F401 - import before dropping privileges
    import recovery.cli
    import recovery.backups.take  # noqa: F401

    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.setgid(65534)
            os.setuid(65534)
            res = click.testing.CliRunner().invoke(recovery.cli.main, args, env=site.env)
            code = res.exit_code if "node.key: permission denied" in res.output else 98
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_unreachable_database(cli: Any, site: Site) -> None:
    before = site.versions()
    r = cli("backup", "db", "--dsn", "host=127.0.0.1 port=1 connect_timeout=2")
    assert r.code == 6
    assert r.err.startswith("error: cannot connect to PostgreSQL xaiadmin@127.0.0.1:1/xai_blockchain:")
    assert len(r.err.strip().splitlines()) == 1
    assert site.versions() == before


def test_nonexistent_bucket(site: Site, tmp_path: Path) -> None:
    f = tmp_path / "o.json"
    f.write_text(json.dumps({**site.outputs, "backup_bucket_name": "xai-backups-nope"}))
    r = run_cli("backup", "db", "--stack", "production", "--outputs", str(f), env=site.env)
    assert r.code == 5
    # As in AWS: S3 answers 403 for a bucket the role may not list, so existence is not disclosed.
    line = ("cannot use bucket 'xai-backups-nope' (checking bucket xai-backups-nope): it does not exist, or the "
            "backup role may not list it - check the stack's backup_bucket_name output and the role's policy "
            "(recovery_role_arns)")
    assert r.err.strip() == "error: " + line
    r = run_cli("backup", "db", "--stack", "production", "--outputs", str(f), "--json", env=site.env)
    assert r.code == 5 and r.json() == {"ok": False, "error": line, "exit_code": 5}


def test_no_permission(cli: Any, site: Site) -> None:
    site.s3().put_bucket_policy(Bucket=site.bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject", "s3:GetObject"],
        "Resource": f"arn:aws:s3:::{site.bucket}/*"}]}))
    before = site.versions()
    try:
        r = cli("backup", "db")
    finally:
        site.s3().delete_bucket_policy(Bucket=site.bucket)
    assert r.code == 5, r.err
    assert "AWS denied access while taking lock" in r.err and len(r.err.strip().splitlines()) == 1
    assert site.versions() == before


def test_the_password_never_appears_anywhere(cli: Any, site: Site) -> None:
    """--debug -vv logs, --json, a failure's message and traceback: none contains the secret."""
    outs = [cli("backup", "db", "--json", env={}), cli("list", "--json")]
    outs.append(run_cli("--debug", "-vv", "backup", "db", "--stack", "production", "--outputs", str(site.outputs_file),
                        env=site.env))
    outs.append(run_cli("--debug", "-vv", "backup", "db", "--stack", "production", "--outputs", str(site.outputs_file),
                        "--dsn", "host=127.0.0.1 port=1 connect_timeout=1", env=site.env))
    assert [o.code for o in outs] == [0, 0, 0, 6]
    assert "Traceback" in outs[3].err  # --debug really did print everything it could
    for o in outs:
        assert DB_PASSWORD not in o.out + o.err
    for key in site.keys():
        body = site.s3().get_object(Bucket=site.bucket, Key=key)["Body"].read()
        if key.endswith(".json"):
            assert DB_PASSWORD.encode() not in body


def _on_a_terminal(site: Site, *args: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdio (what the operator's terminal shows)."""
    return run_on_a_terminal([sys.executable, "-m", "recovery.cli", *args, "--stack", "production",
                              "--outputs", str(site.outputs_file)], "",
                             {**os.environ, **site.env, "COLUMNS": "120", "TERM": "xterm"})


def test_progress_bar_on_a_terminal(site: Site) -> None:
    """On a TTY the operator sees bytes, rate and elapsed time on stderr while pg_dump streams."""
    code, text = _on_a_terminal(site, "backup", "db")
    assert code == 0, text
    assert "pg_dump" in text and "MB/s" in text and re.search(r"\d+:\d\d:\d\d", text)
    assert "✓ db backup s3://" in text and DB_PASSWORD not in text


def test_chain_backup_bar_has_a_total_on_a_terminal(site: Site, tmp_path: Path) -> None:
    """The tar bar knows how much is coming (the planned files' sizes), so it shows done/total and an ETA."""
    d = make_chain_dir(tmp_path, blocks=20_000)
    total = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    code, text = _on_a_terminal(site, "backup", "chain", "--data-dir", str(d))
    assert code == 0, text
    # rich's DownloadColumn: "<done>/<total> MB" once the total is known
    shown = re.findall(r"([0-9.]+)/([0-9.]+) MB", text)
    assert shown, text
    assert abs(float(shown[-1][1]) - total / 1e6) < 0.15, (shown[-1], total)
    assert "✓ chain backup s3://" in text

def test_sigterm_mid_upload_aborts_cleanly(site: Site) -> None:
    """systemd stopping the unit mid-stream: exit 14, upload aborted, lock released, nothing catalogued."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = subprocess.Popen([sys.executable, "-m", "recovery.cli", "backup", "db", "--stack", "production",
                             "--outputs", str(site.outputs_file), "--level", "9", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, **site.env})
    s3 = site.s3()
    deadline = time.monotonic() + 30
    while not s3.list_multipart_uploads(Bucket=site.bucket).get("Uploads") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s3.list_multipart_uploads(Bucket=site.bucket).get("Uploads"), "the upload never started"
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 14, err
    assert "db backup interrupted (Ctrl-C or SIGTERM); the upload of backups/db/database-" in err
    assert s3.list_multipart_uploads(Bucket=site.bucket).get("Uploads", []) == []
    assert site.keys("backups/") == [] and site.keys("locks/") == []


def _damaged_chain_db(path: Path) -> None:
    """A SQLite file whose header is intact but whose b-tree pages are overwritten with noise."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE blocks (height INTEGER PRIMARY KEY, body BLOB)")
    db.executemany("INSERT INTO blocks VALUES (?, ?)", [(h, bytes(200)) for h in range(2000)])
    db.commit()
    db.close()
    with open(path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096 * 4)


@pytest.mark.parametrize("defect", ["no chain.db", "not SQLite", "damaged"])
def test_a_chain_backup_that_could_not_restore_is_never_catalogued(site: Site, tmp_path: Path, defect: str) -> None:
    """`backup chain` of a data dir without a sound chain.db used to exit 0 and pass verify."""
    d = tmp_path / "blockchain"
    d.mkdir()
    (d / "peers.json").write_text("[]")
    if defect == "not SQLite":
        (d / "chain.db").write_text("not a database")
    elif defect == "damaged":
        _damaged_chain_db(d / "chain.db")
    r = run_cli("backup", "chain", "--stack", "production", "--outputs", str(site.outputs_file), "--data-dir", str(d),
                env=site.env)
    assert r.code == 17, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "chain.db" in errors[0] and " - " in errors[0], r.err
    assert site.keys("backups/chain/") == []
    assert site.s3().list_multipart_uploads(Bucket=site.bucket).get("Uploads", []) == []
