"""Make moto 5.2.5 change state the way AWS does, where the local DR environment needs it.

The emulator's server (moto_server.py) serves requests from the *same* in-process backends that
``moto.backends.get_backend`` returns, so patching moto's backend and response classes in this
process changes what every client of the server observes through plain HTTP/boto3 calls.

One module per AWS service, each with a docstring saying what AWS does, what moto 5.2.5 does and
what the extension changes; ``records`` holds what they share (configuration, call records,
hooks, probes, the patch bookkeeping). ``EXTENSIONS`` below is the one list of them: ``install()``
applies it in order (idempotent), ``uninstall()`` restores moto's own code. docs/emulator.md has
the same as a table.

moto is a development dependency (the local mode's, not the CLI's), so the modules import it only
inside their ``install`` functions and the patched calls; importing this package is cheap.

Usage (the local environment's daemon, recovery/local/aws_daemon.py; tests)::

    from recovery.local import emulator
    emulator.install()
    emulator.set_promotion_hook(fn)        # fn(target_cluster_id), raising aborts the promotion
    emulator.set_master_password_hook(fn)  # fn(cluster_id, new_password)
    emulator.set_auth_token_hook(fn)       # fn(replication_group_id, token, strategy)
    emulator.set_health_probe(hc_id, url_or_callable)
    emulator.set_replication_probe(fn)     # fn() -> {cluster_id: {"lag_s", "restorable_at"}}
    emulator.start_lag_publisher(2.0)      # AuroraGlobalDBRPOLag from that probe, every 2 s

Inspectable records (cleared by ``reset_records()`` and by ``POST /moto-api/reset``; hooks and
probes survive a reset): ``promotion_calls()``, ``master_password_calls()``,
``auth_token_calls()``, ``cloudtrail_events()``; secrets only as ``fingerprint(value)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from recovery.local.emulator import (backup, cloudtrail, elasticache_auth, elasticache_failover, outage, rds_global,
                                     rds_snapshot, route53_health, s3_replication, secrets_replica)
from recovery.local.emulator import rds_replication_lag, rds_restore_backing
from recovery.local.emulator.rds_restore_backing import set_restore_backing_hook
from recovery.local.emulator.rds_replication_lag import (set_replication_probe, start_publisher as start_lag_publisher,
                                                         stop_publisher as stop_lag_publisher)
from recovery.local.emulator.records import (
    LOCK, auth_token_calls, cache_auth_tokens, cloudtrail_events, configure, fingerprint,
    install_reset_hook, master_password_calls, promotion_calls, read_record_file, reset_records,
    set_auth_token_hook, set_health_probe, set_master_password_hook, set_promotion_hook,
    unpatch_all,
)
from recovery.local.emulator.route53_health import health_check_healthy


@dataclass(frozen=True)
class Extension:
    name: str
    install: Callable[[], None]
    description: str


#: Every extension, in the order ``install()`` applies them. A new one is a module and a line here.
EXTENSIONS: tuple[Extension, ...] = (
    Extension("s3-replication", s3_replication.install,
              "S3 copies new versions (and delete markers) per the bucket's replication rules"),
    Extension("rds-global-failover", rds_global.install_global_failover,
              "RDS global cluster failover/switchover, cross-region detach, describe by id"),
    Extension("rds-restore-from-snapshot", rds_snapshot.install,
              "RestoreDBClusterFromSnapshot by identifier or ARN, into a standalone cluster"),
    Extension("rds-restore-backing", rds_restore_backing.install,
              "a restored cluster (point in time or snapshot) is backed by a real server with the data of its "
              "restore time (runs a hook); its endpoints and port are that server's"),
    Extension("route53-health-status", route53_health.install,
              "Route 53 health check status from a real probe, Inverted and Disabled; CALCULATED and "
              "CLOUDWATCH_METRIC (the alarm's state) checks, AlarmIdentifier kept"),
    Extension("rds-master-password", rds_global.install_master_password_hook,
              "modify_db_cluster(MasterUserPassword) runs a hook (the real database's ALTER ROLE)"),
    Extension("elasticache-auth-token", elasticache_auth.install,
              "modify_replication_group auth token ROTATE/SET/DELETE, validated, runs a hook"),
    Extension("elasticache-failover", elasticache_failover.install,
              "a group's NumCacheClusters members, TestFailover promotes a replica (runs a hook), a deleted "
              "group goes away, members' endpoints from the local backing"),
    Extension("cloudtrail-lookup-events", cloudtrail.install,
              "every API call recorded as a management event; LookupEvents answers from them"),
    Extension("secrets-stop-replication", secrets_replica.install,
              "StopReplicationToReplica promotes a replica secret in its region (writable there)"),
    Extension("rds-replication-lag", rds_replication_lag.install,
              "AuroraGlobalDBRPOLag published for each standby from its real replay lag; a lagging standby's "
              "LatestRestorableTime is its last replayed commit"),
    Extension("backup-selections-and-vault-policies", backup.install,
              "AWS Backup selections and vault access policies (moto has plans, vaults and Vault Lock); "
              "adds operations only, so it stays after uninstall()"),
    Extension("region-outage", outage.install,
              "requests signed for a region in outage get no answer (POST /xai-local/outage)"),
    Extension("reset-clears-records", install_reset_hook,
              "POST /moto-api/reset also clears the extensions' records"),
)

_installed = False


def installed() -> bool:
    return _installed


def install() -> None:
    """Apply every extension to moto's in-process backends. Safe to call more than once."""
    global _installed
    with LOCK:
        if _installed:
            return
        for extension in EXTENSIONS:
            extension.install()
        _installed = True


def uninstall() -> None:
    """Restore moto's original code (records, hooks and probes are left as they are)."""
    global _installed
    with LOCK:
        unpatch_all()
        _installed = False


__all__ = [
    "EXTENSIONS", "Extension", "install", "uninstall", "installed", "configure", "reset_records",
    "fingerprint", "read_record_file", "set_restore_backing_hook",
    "set_promotion_hook", "promotion_calls",
    "set_master_password_hook", "master_password_calls",
    "set_auth_token_hook", "auth_token_calls", "cache_auth_tokens",
    "set_health_probe", "health_check_healthy",
    "cloudtrail_events",
    "set_replication_probe", "start_lag_publisher", "stop_lag_publisher",
]
