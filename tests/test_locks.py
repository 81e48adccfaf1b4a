"""The general S3 lease lock (reused by failover): exclusion, takeover races, renewal, release."""

from __future__ import annotations

import threading
import time

import pytest

from recovery.aws import client
from recovery.errors import LockHeldError
from recovery.locks import S3Lock

from conftest import Site


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
