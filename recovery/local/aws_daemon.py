"""The local environment's AWS: moto in server mode, with our emulator extensions, as a daemon.

`recovery local up` starts this module as a detached process so the emulator outlives the
command, like the other local services. It writes `aws.json` (pid, endpoint) into the state
directory and serves until SIGTERM.

The extensions' hooks run here, in the emulator's process, because that is where moto's
backends live. They make control-plane calls act on the real local services:

- modify_db_cluster(MasterUserPassword=...) changes the real PostgreSQL role's password,
  using a separate maintenance superuser the way AWS's control plane has its own access.
- modify_replication_group(AuthToken, AuthTokenUpdateStrategy) changes which passwords the
  local redis-server's default user accepts (recovery/local/redis_cache.py).
- test_failover / delete_replication_group / create_replication_group promote the cache's real
  replica, stop its nodes, start a fresh pair (recovery/local/redis_group.py).
- failover_global_cluster / switchover_global_cluster fence the old writer and promote the
  target cluster's real PostgreSQL (the DR site's hot standby), see recovery/local/dr_site.py.
- issue 16: restore_db_cluster_to_point_in_time / restore_db_cluster_from_snapshot start a real
  server with the source's data as of the restore time (recovery/local/restored_clusters.py).
- issue 16: every few seconds each standby's real replication lag (recovery/local/replication_lag.py)
  is published as CloudWatch ``AuroraGlobalDBRPOLag`` in its region, as RDS does, and a lagging
  standby's LatestRestorableTime follows its last replayed commit (emulator/rds_replication_lag.py).

The hooks read `hooks.json` from the state directory at call time, so `local up` can start
this daemon first and describe the services once they run.

Every request is authorised by `recovery/local/iam/` with the deployed policies and their
conditions; each decision is appended to `authorization.jsonl` in the state directory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from recovery.local import dr_site, emulator, redis_group, replication_lag, restored_clusters
from recovery.local.moto_server import MotoServer
from recovery.local.paths import HOOKS_FILE, read_hooks
from recovery.local.redis_cache import apply_auth_token

AWS_FILE = "aws.json"
AUTHORIZATION_FILE = "authorization.jsonl"
# The services the program's resources and the runbooks call. moto parses each one's botocore model
# (a large JSON) at its first request; parsed here at start, on the other core, while `local up`
# starts PostgreSQL and the nodes, the deployment does not wait for them (~3 s of a `local up`).
WARM_SERVICES = ("sts", "iam", "s3", "kms", "secretsmanager", "ssm", "rds", "elasticache", "route53", "sns",
                 "cloudwatch", "cloudtrail", "backup", "ec2", "logs", "events")
LAG_PUBLISH_SECONDS = 2.0  # RDS publishes each minute; more often here, so the newest minute is current


def set_master_password(state_dir: Path, cluster_id: str, password: str) -> None:
    """Apply a new master password to the PostgreSQL cluster that backs `cluster_id`."""
    db = read_hooks(state_dir).get("db_clusters", {}).get(cluster_id)
    if not db:
        return  # a cluster with no local backing: recording the call is all AWS would show
    with psycopg.connect(host=db["host"], port=db["port"], user=db["maint_user"], password=db["maint_password"],
                         dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(db["master_user"]), sql.Literal(password)))
    # The local node and explorer read their credential from this file, as real services would
    # from their config after a rotation's secret update: keep it current so they keep working.
    # issue 6: the global cluster's sites share the role by physical replication, so the other
    # site's services (the DR node) need the new password too.
    for other in read_hooks(state_dir).get("db_clusters", {}).values():
        if other.get("pgpass") == db.get("pgpass") or other.get("master_user") != db["master_user"]:
            continue
        _write_pgpass(other, password)
    _write_pgpass(db, password)


def _write_pgpass(db: dict[str, Any], password: str) -> None:
    pgpass = db.get("pgpass")
    if pgpass:
        tmp = Path(pgpass + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:{db['port']}:*:{db['master_user']}:{password}\n")  # any host: see environment.py
        tmp.replace(pgpass)


def _promotion_mode(target_cluster_id: str) -> str:
    """'switchover' or 'failover': what the global cluster holding the target is doing now."""
    from moto.rds.models import rds_backends

    for account in list(rds_backends.keys()):
        for gc in list(rds_backends[account]["us-east-1"].global_clusters.values()):
            if any(m.db_cluster_identifier == target_cluster_id for m in gc.members):
                return "switchover" if gc.status == "switching-over" else "failover"
    return "failover"


def _promote(state_dir: Path, target_cluster_id: str) -> None:
    """Fence the old writer and promote the target's PostgreSQL (a fault makes the call fail)."""
    sites = dr_site.sites_from_hooks(read_hooks(state_dir))
    if target_cluster_id not in sites:
        return  # a cluster with no local backing: moving the writer flag is all there is
    dr_site.promote(sites, target_cluster_id, switchover=_promotion_mode(target_cluster_id) == "switchover")
    restored_clusters.renew_base(state_dir, target_cluster_id)


def _register_health_probes(state_dir: Path) -> None:
    for hc_id, url in read_hooks(state_dir).get("health_checks", {}).items():
        emulator.set_health_probe(hc_id, url)


def _cache_group_hooks(state_dir: Path) -> None:
    """issue 15: TestFailover, delete and create of the cache group act on the local redis-servers."""
    from recovery.local.emulator import elasticache_failover as ef

    ef.set_cache_failover_hook(lambda group, old, new: redis_group.failover(state_dir, group, old, new))
    ef.set_cache_delete_hook(lambda group: redis_group.delete(state_dir, group))
    ef.set_cache_create_hook(lambda group, token, count: redis_group.create(state_dir, group, token, count))
    ef.set_cache_nodes_hook(lambda group: redis_group.node_endpoints(state_dir, group))


def _warm_models() -> None:
    from moto.core.routing import get_service_router
    from moto.core.utils import get_service_model

    for service in WARM_SERVICES:
        try:  # both are functools caches: a request that needs one first computes the same value
            get_service_model(service)
            get_service_router(service)
        except Exception:  # noqa: BLE001 - warming is an optimisation; the request would fail the same way
            pass


def serve(state_dir: Path) -> None:
    # The authoriser imports werkzeug (moto[server], a development dependency): imported here, in
    # the daemon, so `local down|status` and the commands never need it.
    from recovery.local import iam

    emulator.install()
    emulator.configure(record_file=str(state_dir / "emulator-calls.jsonl"))  # outage refusals too
    # Every request is authorised as AWS would (the program's policies, with conditions), and each
    # decision recorded: tests/test_job_permissions.py reads them; an operator can too.
    iam.install(record_file=str(state_dir / AUTHORIZATION_FILE))
    emulator.set_master_password_hook(lambda cluster, pw: set_master_password(state_dir, cluster, pw))
    # issue 7: ROTATE/SET -> Redis ACL passwords
    emulator.set_auth_token_hook(lambda group, token, strategy: apply_auth_token(state_dir, group, token, strategy))
    emulator.set_promotion_hook(lambda cluster: _promote(state_dir, cluster))
    _cache_group_hooks(state_dir)
    emulator.set_replication_probe(lambda: replication_lag.measure(state_dir))
    # issue 16: a restored cluster answers SQL with its restore time's data (restored_clusters.py)
    emulator.set_restore_backing_hook(lambda src, new, when: restored_clusters.materialise(state_dir, src, new, when))
    emulator.start_lag_publisher(LAG_PUBLISH_SECONDS)
    server = MotoServer().start()
    threading.Thread(target=_warm_models, name="warm-models", daemon=True).start()
    # Route 53's data plane: DNS answers from the zones above, through any outage of the HTTP API
    from recovery.local.emulator.route53_dns import DnsServer

    dns = DnsServer().start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tmp = state_dir / (AWS_FILE + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "endpoint": server.endpoint, "ca_bundle": server.ca_bundle,
                               "dns": dns.address, "started_at": time.time()}))
    tmp.replace(state_dir / AWS_FILE)
    seen = 0.0
    while not stop.wait(0.5):
        # Health probes are registered as `local up` learns the nodes' URLs.
        try:
            mtime = (state_dir / HOOKS_FILE).stat().st_mtime
        except OSError:
            continue
        if mtime != seen:
            seen = mtime
            _register_health_probes(state_dir)
    emulator.stop_lag_publisher()
    dns.stop()
    server.stop()
    (state_dir / AWS_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", required=True, type=Path)
    args = ap.parse_args(argv)
    serve(args.state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
