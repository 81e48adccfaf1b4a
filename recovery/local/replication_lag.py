"""The local sites' real replication lag: what the emulator publishes as ``AuroraGlobalDBRPOLag``.

The DR site's PostgreSQL is a real streaming standby of the primary's (recovery/local/dr_site.py).
``measure(state_dir)`` asks every local PostgreSQL site (as the control plane's maintenance
superuser, like the other emulator hooks) and returns, per cluster id, what
recovery/local/emulator/rds_replication_lag.py publishes:

- a writer (not in recovery) and a FENCED old writer (in recovery with no upstream, not a member
  replicating from anyone): no lag (nothing is published for them, as RDS publishes the metric for
  secondaries only), restorable time "now" (None);
- a standby that has replayed everything it received while streaming: lag 0;
- otherwise (replay paused or slow, or the upstream gone, as in a primary-region outage): lag =
  now - ``pg_last_xact_replay_timestamp()``, the age of the newest commit it could be promoted
  with; its restorable time is that commit's time.

The one approximation: a standby that is behind by a record still in flight right after its writer
was idle for long reports the idle time for that instant. The local primary is never idle (its
node mines into it), so this does not arise here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from recovery.local import dr_site
from recovery.local.paths import read_hooks

_SQL = ("SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn() IS NOT NULL"
        " AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn(),"
        " (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'),"
        " extract(epoch FROM now() - pg_last_xact_replay_timestamp()), pg_last_xact_replay_timestamp()")


def site_lag(site: dict[str, Any]) -> dict[str, Any] | None:
    """One site's reading ({"lag_s", "restorable_at"}), or None when it does not answer."""
    try:
        with dr_site.connect(site, timeout=2) as conn:
            row = conn.execute(_SQL).fetchone()
    except psycopg.Error:
        return None
    assert row is not None
    in_recovery, replayed_all, streaming, age, last_commit = row
    if not in_recovery or dr_site.fenced(site):
        return {"lag_s": None, "restorable_at": None}
    if streaming and replayed_all:
        return {"lag_s": 0.0, "restorable_at": None}
    if age is None:  # never replayed a commit: nothing to measure yet
        return {"lag_s": None, "restorable_at": None}
    return {"lag_s": max(0.0, float(age)), "restorable_at": last_commit}


def measure(state_dir: Path) -> dict[str, dict[str, Any]]:
    """cluster id -> reading, for every local site that answers."""
    out = {}
    for cid, site in dr_site.sites_from_hooks(read_hooks(state_dir)).items():
        reading = site_lag(site)
        if reading is not None:
            out[cid] = reading
    return out


__all__ = ["measure", "site_lag"]
