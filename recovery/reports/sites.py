"""`recovery sites --stack X`: both sites at a glance, like `patronictl list`. Read-only.

For each site (X and its peer): which one is the writer, each database's role (writer, standby,
fenced: refusing writes without replicating from the writer, unreachable) and replication lag, the
site's node (height, sync, how far behind its own database), the newest backups in its bucket, and
for the pair: the traffic flag, what DNS answers and who holds the failover lock.

The writer is decided the way clients and Aurora decide it: the global cluster's writer member
(asked in a reachable site's region), cross-checked with which database accepts writes. Everything
read here is a data plane or the reachable site's regional API; a site that does not answer is
shown as unreachable, never waited on twice. Route 53's API is asked for the endpoint health
checks with one attempt only: it lives in us-east-1, and its absence is shown, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recovery.adapters import aurora, sql_probe, traffic
from recovery.aws import client, error_code
from recovery.engine.locks import S3Lock
from recovery.errors import RecoveryError
from recovery.node import NodeClient
from recovery.reports.preflight import newest_backups
from recovery.stack import StackOutputs, load_outputs

LOCK_KEY = "locks/failover.lock"  # the failover runbook's (recovery/runbooks/failover.py imports it from here)
NODE_BEHIND_YELLOW, NODE_BEHIND_RED = 5, 50


@dataclass
class SiteView:
    stack: str
    role: str
    region: str
    database: str = "unknown"  # writer | standby | fenced | unreachable
    global_writer: bool | None = None
    lag: dict[str, Any] = field(default_factory=dict)
    db_height: int | None = None
    node: dict[str, Any] = field(default_factory=dict)
    health_check: str = "unknown"
    backups: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SitesView:
    stack: str
    writer: str | None
    sites: list[SiteView]
    traffic: dict[str, Any]
    lock: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "writer": self.writer, "sites": [s.to_json() for s in self.sites],
                "traffic": self.traffic, "lock": self.lock, "warnings": self.warnings}


def database_role(site: StackOutputs) -> tuple[str, int | None]:
    """The database's own view: writer (accepts writes), standby (replaying from a writer), fenced
    (refuses writes and replicates from nothing), or unreachable."""
    if not sql_probe.db_answers(site):
        return "unreachable", None  # without asking its region for the credential
    try:
        row = sql_probe.db_query(site, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only'),"
                                       " (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming')",
                                 timeout=3)[0]
    except RecoveryError:
        return "unreachable", None
    in_rec, read_only, streaming = bool(row[0]), row[1] == "on", int(row[2] or 0)
    height = sql_probe.max_height(site)
    if not in_rec and not read_only:
        return "writer", height
    return ("standby" if in_rec and streaming else "fenced"), height


def _global_writer(sites: list[StackOutputs]) -> tuple[str | None, str | None]:
    """The global cluster's writer cluster id, asked in the first region that answers; (id, error)."""
    problems = []
    for s in sites:
        try:
            _gc, members = aurora.global_members(s)
        except Exception as exc:  # noqa: BLE001 - that region does not answer: ask the next one
            problems.append(f"{s.region}: {error_code(exc) or type(exc).__name__}")
            continue
        writer = next((cid for cid, m in members.items() if m.get("IsWriter")), None)
        return writer, None
    return None, "; ".join(problems)


def _node(site: StackOutputs, db_height: int | None) -> dict[str, Any]:
    with NodeClient(site.node_api_url, timeout_s=3, retries=1, backoff_s=0.2) as n:
        try:
            info = n.blockchain_info()
            mining = n.is_mining()
        except RecoveryError as exc:
            return {"reachable": False, "error": exc.problem}
    out: dict[str, Any] = {"reachable": True, "height": info.block_height, "synced": info.is_synced,
                           "consensus_state": info.consensus_state, "mining": mining}
    if db_height is not None and info.block_height >= 0:
        out["behind_database"] = max(0, db_height - info.block_height)
    return out


def _health_check(site: StackOutputs) -> str:
    """The site's endpoint health check via Route 53's API, one attempt (it lives in us-east-1)."""
    try:
        obs = client("route53", site.region, attempts=1).get_health_check_status(
            HealthCheckId=site.health_check_id)["HealthCheckObservations"]
    except Exception as exc:  # noqa: BLE001 - the API is away: say so
        return f"unknown (Route 53 API: {error_code(exc) or type(exc).__name__})"
    ok = sum(1 for o in obs if str(o.get("StatusReport", {}).get("Status", "")).startswith("Success"))
    return f"{'healthy' if ok * 2 > len(obs) else 'failing'} ({ok}/{len(obs)} checkers)"


def _lock(dr: StackOutputs) -> dict[str, Any] | None:
    try:
        holder, _etag = S3Lock(client("s3", dr.region), dr.backup_bucket_name, LOCK_KEY, renew=False).read()
    except Exception as exc:  # noqa: BLE001
        return {"error": error_code(exc) or type(exc).__name__}
    if holder is None:
        return None
    return {"owner": holder.owner, "purpose": holder.purpose, "acquired_at": holder.acquired_at,
            "expires_at": holder.expires_at, "expired": holder.expired}


def _site(outputs: StackOutputs, writer_cluster: str | None, writer_site: StackOutputs | None,
          own: bool = True) -> SiteView:
    v = SiteView(outputs.stack, outputs.role, outputs.region)
    v.database, v.db_height = database_role(outputs)
    v.global_writer = None if writer_cluster is None else writer_cluster == outputs.db_cluster_id
    if v.database == "standby":
        v.lag = sql_probe.replay_lag(outputs, writer_site)
    v.node = _node(outputs, v.db_height)
    v.health_check = _health_check(outputs)
    if v.database == "unreachable" and not v.node.get("reachable"):
        v.backups = {"error": "site unreachable, not asked"}  # its region may be gone: no retries into it
        return v
    if not own:
        v.backups = {"error": "the peer's bucket, not this stack's role's"}  # least privilege: not asked
        return v
    try:
        v.backups = {k: (b or {}).get("key") and {"key": b["key"], "age_s": b["age_s"]}
                     for k, b in newest_backups(outputs).items()}
    except Exception as exc:  # noqa: BLE001 - another job's bucket, or its region is away
        v.backups = {"error": error_code(exc) or type(exc).__name__}
    return v


def sites_view(outputs: StackOutputs) -> SitesView:
    try:
        peer: StackOutputs | None = load_outputs(outputs.peer_stack)
    except RecoveryError:
        peer = None
    pair = [outputs] + ([peer] if peer is not None else [])
    writer_cluster, gerr = _global_writer(pair)
    writer_site = next((s for s in pair if s.db_cluster_id == writer_cluster), None)
    views = [_site(s, writer_cluster, writer_site, own=s is outputs) for s in pair]
    warnings = [] if gerr is None else [f"the global cluster could not be read ({gerr})"]
    accepting = [v.stack for v in views if v.database == "writer"]
    if len(accepting) > 1:
        warnings.append(f"more than one database accepts writes: {', '.join(accepting)} (split brain: fence the one "
                        "that is not the global writer)")
    if writer_site is not None and accepting and writer_site.stack not in accepting:
        warnings.append(f"the global writer {writer_site.stack} does not accept writes yet, {accepting[0]} does")
    writer = writer_site.stack if writer_site is not None else (accepting[0] if len(accepting) == 1 else None)
    for v in views:
        behind = v.node.get("behind_database")
        if behind is not None and behind > NODE_BEHIND_YELLOW:
            warnings.append(f"{v.stack}'s node is {behind} blocks behind its database")
        if v.database != "writer" and v.node.get("mining"):
            warnings.append(f"{v.stack}'s node mines, but its database is {v.database}")
    flow = _traffic(outputs, pair, writer)
    if flow.get("serving") and writer and flow["serving"] != writer:
        warnings.append(f"DNS sends traffic to {flow['serving']}, the writer is {writer}: a failover is under way "
                        "or was interrupted (rerun it)")
    dr = next((s for s in pair if s.role == "dr"), None)
    return SitesView(outputs.stack, writer, views, flow, _lock(dr) if dr else None, warnings)


def _traffic(outputs: StackOutputs, pair: list[StackOutputs], writer: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"record": outputs.dns_record_name}
    try:
        out["flag"] = traffic.flag(outputs)
    except RecoveryError as exc:
        out["flag_error"] = exc.problem
    try:
        out["dns_answer"] = traffic.dns_answer(outputs)
        out["serving"] = next((s.stack for s in pair if s.node_api_fqdn.rstrip(".") == out["dns_answer"]), None)
    except RecoveryError as exc:
        out["dns_error"] = exc.problem
    return out


def render(view: SitesView) -> list[str]:
    """Plain lines for a terminal, one per site, then the pair's."""
    lines = [f"writer: {view.writer or 'UNKNOWN'}"]
    for s in view.sites:
        node = s.node
        n = (f"node {node.get('height')}{' synced' if node.get('synced') else ' NOT synced'}"
             f"{' mining' if node.get('mining') else ''} ({node.get('consensus_state')})"
             + (f", {node['behind_database']} behind its db" if node.get("behind_database") else "")
             if node.get("reachable") else "node unreachable")
        lag = s.lag.get("lag_s")
        backups = (f"not readable here ({s.backups['error']}; run `recovery sites --stack {s.stack}`)"
                   if "error" in s.backups else
                   ", ".join(f"{k} {b['age_s']:.0f}s old" for k, b in s.backups.items() if isinstance(b, dict)) or "none")
        lines.append(f"{s.stack:<16} {s.role:<8} db {s.database}"
                     + (f" (height {s.db_height})" if s.db_height is not None else "")
                     + (f", lag {lag:g}s" if isinstance(lag, (int, float)) else "")
                     + f"; {n}; health check {s.health_check}; backups: {backups}")
    t = view.traffic
    lines.append(f"traffic: {t['record']} -> {t.get('dns_answer') or t.get('dns_error')} "
                 f"({t.get('serving') or 'unknown site'}); flag {t.get('flag') or t.get('flag_error')}")
    lk = view.lock
    lines.append("failover lock: " + ("free" if lk is None else lk.get("error") or
                                      f"held by {lk['owner']} ({lk['purpose']}) since {lk['acquired_at']}"
                                      + (" - EXPIRED" if lk.get("expired") else "")))
    lines += [f"warning: {w}" for w in view.warnings]
    return lines


__all__ = ["SiteView", "SitesView", "sites_view", "database_role", "render", "LOCK_KEY"]
