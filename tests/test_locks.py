"""The general S3 lease lock (reused by failover): exclusion, takeover races, renewal, release."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from recovery.aws import client
from recovery.errors import LockHeldError
from recovery.engine.locks import S3Lock
from recovery.processes import pid_namespace, start_ticks

from conftest import DB_PASSWORD, Site, run_cli


# The locks a job may take are its own (infra/recovery_access.py): these run as the backup role.
LOCK = "locks/backup-db.lock"


def test_only_one_of_many_contenders_takes_a_stale_lock(site: Site) -> None:
    site.act_as("backup")
    s3 = client("s3", "us-east-1")
    stale = S3Lock(s3, site.bucket, LOCK, ttl_seconds=1, renew=False, owner="dead run").acquire()
    time.sleep(2.1)  # expiry has second resolution
    winners: list[S3Lock] = []
    refused: list[str] = []

    def contend(i: int) -> None:
        lock = S3Lock(s3, site.bucket, LOCK, ttl_seconds=60, renew=False, owner=f"run {i}")
        try:
            winners.append(lock.acquire())
        except LockHeldError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(refused) == 3
    assert winners[0].took_over is not None and winners[0].took_over.owner == "dead run"
    assert all("is held by " + winners[0].owner in r for r in refused)
    stale.release()  # the old holder's late release must not delete the new holder's lock
    holder, _ = winners[0].read()
    assert holder is not None and holder.owner == winners[0].owner
    winners[0].release()
    assert winners[0].read() == (None, None)


def test_renewal_keeps_a_long_run_locked(site: Site) -> None:
    site.act_as("backup")
    s3 = client("s3", "us-east-1")
    with S3Lock(s3, site.bucket, LOCK, ttl_seconds=3, owner="long run") as lock:
        time.sleep(4.5)  # longer than the TTL: renewed every second
        with pytest.raises(LockHeldError, match="held by long run"):
            S3Lock(s3, site.bucket, LOCK, ttl_seconds=3, renew=False).acquire()
        lock.check()


# ------------------------------------------------------------------------------ locks that heal


def _holder(site: Site, key: str, **fields: object) -> None:
    """A lock body as another run would have written it (unexpired unless told otherwise)."""
    body = {"owner": "ops@db-host-2 pid 4242", "token": "theirs", "acquired_at": "2026-01-01T00:00:00Z",
            "expires_at": "2999-01-01T00:00:00Z", **fields}
    site.s3().put_object(Bucket=site.bucket, Key=key, Body=json.dumps(body).encode())


def _this_host(pid: int, start: int | None) -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": pid, "pid_start": start, "pid_ns": pid_namespace()}


def test_a_holder_dead_on_this_host_is_taken_over_at_once(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """Before: a SIGKILLed backup's lock refused every backup for its whole (15-minute) lease."""
    site.act_as("backup")
    s3 = client("s3", "us-east-1")
    proc = subprocess.Popen(["sleep", "0"])
    start = start_ticks(proc.pid)
    proc.wait()  # gone: its pid is free (or, later, another process's)
    _holder(site, LOCK, **_this_host(proc.pid, start))
    with caplog.at_level("WARNING"):
        lock = S3Lock(s3, site.bucket, LOCK, renew=False).acquire()
    assert lock.took_over is not None and lock.took_over.pid == proc.pid
    assert lock.took_over_because == f"its process {proc.pid} on {socket.gethostname()} is gone"
    assert "took over the stale lock, held by ops@db-host-2 pid 4242" in caplog.text
    lock.release()


def test_a_reused_pid_does_not_keep_a_dead_holder_alive(site: Site) -> None:
    site.act_as("backup")
    s3 = client("s3", "us-east-1")
    with subprocess.Popen(["sleep", "30"]) as live:
        try:
            # the pid runs, but it is not the process that wrote the lock (other start time)
            _holder(site, LOCK, **_this_host(live.pid, (start_ticks(live.pid) or 0) + 1))
            lock = S3Lock(s3, site.bucket, LOCK, renew=False).acquire()
            assert lock.took_over_because.startswith(f"its process {live.pid} ")
            lock.release()
            # the very process that wrote it still runs: respected
            _holder(site, LOCK, **_this_host(live.pid, start_ticks(live.pid)))
            with pytest.raises(LockHeldError, match="held by ops@db-host-2 pid 4242"):
                S3Lock(s3, site.bucket, LOCK, renew=False).acquire()
        finally:
            live.kill()


def test_another_hosts_live_lock_needs_the_flag(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    site.act_as("backup")
    s3 = client("s3", "us-east-1")
    _holder(site, LOCK, host="db-host-2", pid=4242, pid_start=1, pid_ns=pid_namespace())
    with pytest.raises(LockHeldError, match="if it is gone, rerun with --take-over-stale"):
        S3Lock(s3, site.bucket, LOCK, renew=False).acquire()
    with caplog.at_level("WARNING"):
        lock = S3Lock(s3, site.bucket, LOCK, renew=False, take_over_stale=True).acquire()
    assert lock.took_over is not None and lock.took_over_because == "--take-over-stale"
    assert "took over the stale lock, held by ops@db-host-2 pid 4242 since 2026-01-01T00:00:00Z (--take-over-stale)" in caplog.text
    holder, _ = lock.read()
    assert holder is not None and holder.token == lock.token and holder.pid == os.getpid()
    lock.release()


def test_a_lock_whose_put_reply_was_lost_is_ours(site: Site) -> None:
    """botocore's retry of our conditional put meets our own lock: that is not 'held by another run'."""
    site.act_as("backup")
    s3 = client("s3", "us-east-1")
    first = S3Lock(s3, site.bucket, LOCK, renew=False).acquire()
    retry = S3Lock(s3, site.bucket, LOCK, renew=False)
    retry.token = first.token  # the same run asking again
    retry.acquire()
    assert retry.took_over is None and retry.etag == first.etag
    retry.release()


def test_a_short_lease_is_renewed_and_a_lost_one_is_reported(site: Site) -> None:
    site.act_as("backup")
    s3 = client("s3", "us-east-1")
    with S3Lock(s3, site.bucket, LOCK, ttl_seconds=3) as lock:
        time.sleep(4.5)  # past the first lease: renewed every second
        lock.check()
        thief = S3Lock(s3, site.bucket, LOCK, renew=False, take_over_stale=True).acquire()
        time.sleep(1.5)  # the next renewal finds someone else's lock
        with pytest.raises(LockHeldError, match="taken over by another run"):
            lock.check()
    holder, _ = thief.read()
    assert holder is not None and holder.token == thief.token  # our release left the thief's lock alone
    thief.release()


def test_the_backup_lease_is_short() -> None:
    from recovery.backups.take import LOCK_TTL_SECONDS

    assert LOCK_TTL_SECONDS <= 120


# ---------------------------------------------------------------------------- SIGKILL battery


def test_a_backup_killed_at_random_points_never_blocks_the_next(site: Site) -> None:
    """SIGKILL `backup db` at seeded random moments; the very next run succeeds every time, and no
    lock is deleted by hand. Kills land before the lock, while it is held, and mid-upload."""
    rng = random.Random(7)
    args = [sys.executable, "-m", "recovery.cli", "backup", "db", "--stack", "production",
            "--outputs", str(site.outputs_file), "--json"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, **site.env}
    s3 = site.s3()
    held_at_kill = 0
    for i in range(5):
        # gzip -9 on one thread: the victim holds its lock for seconds, so kills land inside it
        proc = subprocess.Popen([*args, "--level", "9", "--workers", "1"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if i == 0:
            time.sleep(rng.uniform(0.0, 0.5))  # early: usually before the lock
        else:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and LOCK not in site.keys("locks/"):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        held = LOCK in site.keys("locks/")
        held_at_kill += held
        r = run_cli(*args[3:], env=site.env)
        assert r.code == 0, f"run after kill {i}: {r.err}"
        if held:
            assert r.json()["took_over_stale_lock"]["because"].endswith(" is gone"), r.err
        assert site.keys("locks/") == []
        assert s3.list_multipart_uploads(Bucket=site.bucket).get("Uploads", []) == []  # swept
    assert held_at_kill >= 3


# ------------------------------------------------------------------------- ghost lock after failover


def test_the_primarys_backup_lock_does_not_follow_it_to_the_dr_site(moto_server: Any, pg: Any, tmp_path: Path,
                                                                     request: pytest.FixtureRequest) -> None:
    """The primary dies holding its backup lock. Replication (filtered to backups/ by the program,
    honoured by the emulator) must not have copied the lock: the DR site's first backup runs."""
    from recovery.local import emulator as ext
    from recovery.local.deploy import DR, PRIMARY
    from recovery.local.deploy_bound import deploy_for_tests

    if not ext.installed():  # S3 replication, as the local environment's emulator has it
        ext.install()
        request.addfinalizer(ext.uninstall)
    deployed = deploy_for_tests(moto_server, db_port=pg.port, db_password=DB_PASSWORD)
    env = {**moto_server.env(), **deployed.oncall.env(), "RECOVERY_AWS_MAX_ATTEMPTS": "2"}
    files = {}
    for stack in (PRIMARY, DR):
        files[stack] = tmp_path / f"{stack}.json"
        files[stack].write_text(json.dumps(deployed.outputs[stack]))
    primary, dr = (deployed.outputs[s]["backup_bucket_name"] for s in (PRIMARY, DR))
    s3 = moto_server.client("s3")
    r = run_cli("backup", "db", "--stack", PRIMARY, "--outputs", str(files[PRIMARY]), "--json", env=env)
    assert r.code == 0, r.err
    key = r.json()["key"]
    # The disaster strikes mid-backup on another host: its lock stays in the primary bucket.
    body = {"owner": "ops@primary-db-host pid 4242", "token": "theirs", "acquired_at": "2026-01-01T00:00:00Z",
            "expires_at": "2999-01-01T00:00:00Z", "host": "primary-db-host", "pid": 4242}
    s3.put_object(Bucket=primary, Key=LOCK, Body=json.dumps(body).encode(), ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=deployed.outputs[PRIMARY]["backup_kms_key_arn"])
    dr_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=dr).get("Contents", [])]
    assert key in dr_keys and key + ".manifest.json" in dr_keys  # what the DR site needs did replicate
    assert not [k for k in dr_keys if k.startswith("locks/")]
    r = run_cli("backup", "db", "--stack", DR, "--outputs", str(files[DR]), "--json", env=env)
    assert r.code == 0, r.err
    assert "took_over_stale_lock" not in r.json()


def test_the_failover_lock_takes_over_an_expired_lock_only_when_told(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """The failover's lock is S3Lock with take_over_expired from --take-over-stale: a dead holder here
    is taken over always, an expired one only with the flag."""

    site.act_as("backup")  # any role that may write this bucket's backup locks will do for the class
    s3 = client("s3", "us-east-1")
    _holder(site, LOCK, expires_at="2026-01-01T00:15:00Z", host="other-host", pid=4242)
    with pytest.raises(LockHeldError, match="is stale .* rerun with --take-over-stale"):
        S3Lock(s3, site.bucket, LOCK, renew=False, purpose="failback lock", take_over_expired=False).acquire()
    with caplog.at_level("WARNING"):
        lock = S3Lock(s3, site.bucket, LOCK, renew=False, purpose="failback lock", take_over_expired=True).acquire()
    assert "took over the stale failback lock, held by ops@db-host-2 pid 4242" in caplog.text
    lock.release()
    proc = subprocess.Popen(["sleep", "0"])
    start = start_ticks(proc.pid)
    proc.wait()
    _holder(site, LOCK, **_this_host(proc.pid, start))  # unexpired, but its process is gone
    S3Lock(s3, site.bucket, LOCK, renew=False, purpose="failback lock", take_over_expired=False).acquire().release()
