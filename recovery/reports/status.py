"""`recovery status`: the DR plan's detection checks in one view, each line green, yellow or red.

Lines, in the plan's order (thresholds are the defaults of `StatusOptions`):

node      height      the node's block_height against a reference node (`--reference URL`, the plan's
                      mainnet-rpc) and is_synced. red: unreachable, no chain data (height -1; yellow
                      on a DR stack's standby), or more than `red_lag` blocks behind; yellow: not
                      synced, reference unreachable, or more than `max_lag` behind.
node      peers       peer_count. red: 0 (partitioned); yellow: <= 5 (the plan waits for "> 5").
node      mining      is_mining. yellow when false on the writing site (a stalled miner); on a standby
                      or fenced site not mining is right, and mining is red (a second writer).
database  reachable   connect with the stack's DB secret; size. red when it cannot connect.
database  rows        count(*), max(height) of `blockchain`. red: table missing or rows missing
                      (count < max - min + 1: a hole, scenario 1's corruption); yellow: the index is
                      more than `max_lag` blocks behind the node, or the node more than `max_lag`
                      blocks behind the index (red beyond `red_lag`: e.g. a DR node restored from an
                      old chain backup that never caught up).
database  replication the Aurora global replication lag (AuroraGlobalDBRPOLag of the secondary, in its
                      region) against the PostgreSQL RPO: yellow beyond half of it or unknown, red
                      beyond it (recovery/reports/replication_rpo.py holds the rule).
database  restorable  LatestRestorableTime of this site's cluster: yellow beyond 5 min + RPO/2 or
                      unknown, red beyond 5 min + RPO (the same rule).
site      role        this site's database: writer, standby (replicating) or fenced (refusing writes,
                      replicating from nothing: an old primary back after a failover; yellow, until
                      `recovery failback` rejoins it). red when it does not answer.
traffic   dns         what DNS answers for the failover record (its data plane, asked directly): green
                      when it serves the writing site, red when it serves a standby or fenced one.
cache     reachable   TCP connect to cache_endpoint:cache_port and the replication group's status.
                      On the local environment (no Redis runs) an unreachable cache is skipped with a
                      note; on a real stack it is red.
backup    db|chain    age of the newest backup not failed in verification against the limit
                      interval + half an interval (recovery/backups/age.py, the rule verify applies):
                      green within it, red beyond or none.
health    route53     GetHealthCheckStatus of the site's endpoint check: every checker Success green,
                      some yellow, none red (Route 53's API: "unknown" when it cannot be reached).
replication bucket    primary: an enabled replication rule and the newest backup's replication
                      status (COMPLETED green, PENDING yellow, FAILED/missing red); DR: the source
                      bucket replicates into this one and the newest backup arrived here.

Nothing here changes anything. No secret is ever put in a line: the DB password is read from
Secrets Manager through recovery.postgres, which registers it for redaction.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from recovery import postgres, redact
from recovery.aws import client, error_code
from recovery.backups.verify import _check_replication  # the same replication rule verify applies
from recovery.catalog import Catalog, utc_now
from recovery.errors import RecoveryError
from recovery.adapters import traffic
from recovery.node import NodeClient
from recovery.backups.age import age_limit_seconds, within_limit
from recovery.units import human_bytes
from recovery.reports.sites import database_role
from recovery.reports import replication_rpo, service_health
from recovery.stack import StackOutputs

GREEN, YELLOW, RED, SKIP = "green", "yellow", "red", "skip"
MARK = {GREEN: "✓", YELLOW: "!", RED: "✗", SKIP: "-"}


@dataclass
class Line:
    component: str
    check: str
    level: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        return MARK[self.level]

    def to_json(self) -> dict[str, Any]:
        return {"component": self.component, "check": self.check, "level": self.level,
                "detail": self.detail, "data": self.data}


@dataclass
class StatusReport:
    stack: str
    checked_at: str
    lines: list[Line] = field(default_factory=list)

    @property
    def level(self) -> str:
        levels = {ln.level for ln in self.lines}
        return RED if RED in levels else YELLOW if YELLOW in levels else GREEN

    @property
    def red(self) -> list[Line]:
        return [ln for ln in self.lines if ln.level == RED]

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "checked_at": self.checked_at, "level": self.level,
                "ok": self.level != RED, "lines": [ln.to_json() for ln in self.lines]}


@dataclass
class StatusOptions:
    node_url: str = "http://localhost:8080"
    reference_url: str | None = None
    dsn: str | None = None
    max_lag: int = 5
    red_lag: int = 50
    min_peers: int = 5
    local: bool = False  # the local environment: an unreachable cache is a note, not red
    role: str = "primary"  # dr: a standby node without chain data is yellow, not red
    timeout_s: float = 3.0


def _err(exc: BaseException) -> str:
    if isinstance(exc, RecoveryError):
        return exc.problem
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:160]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


# ---------------------------------------------------------------------------------- the node


def check_node(opts: StatusOptions, site_role: str = "writer") -> tuple[list[Line], int | None]:
    lines: list[Line] = []
    with NodeClient(opts.node_url, timeout_s=opts.timeout_s, retries=1, backoff_s=0.2) as node:
        try:
            info = node.blockchain_info()
        except RecoveryError as exc:
            return [Line("node", "height", RED, exc.problem, {"url": opts.node_url}),
                    Line("node", "peers", SKIP, "not checked: node unreachable"),
                    Line("node", "mining", SKIP, "not checked: node unreachable")], None
        data: dict[str, Any] = {"height": info.block_height, "is_synced": info.is_synced,
                                "consensus_state": info.consensus_state}
        ref_height = ref_error = None
        if opts.reference_url:
            with NodeClient(opts.reference_url, timeout_s=opts.timeout_s, retries=1, backoff_s=0.2,
                            name="reference") as ref:
                try:
                    ref_height = ref.block_height()
                except RecoveryError as exc:
                    ref_error = exc.problem
            data["reference_height"] = ref_height
        if info.block_height < 0:
            # A DR standby without chain data is a known state (restored from the DR bucket on failover).
            standby = opts.role == "dr"
            lines.append(Line("node", "height", YELLOW if standby else RED,
                              f"no chain data (height {info.block_height}, state {info.consensus_state})"
                              + (" on the DR standby - failover restores it from this bucket" if standby
                                 else " - scenario 2: restore the chain"), data))
        else:
            where = f"height {info.block_height}"
            lag = None
            if ref_height is not None:
                lag = max(0, ref_height - info.block_height)
                data["lag"] = lag
                where += f", reference {ref_height} ({lag} behind)"
            elif opts.reference_url:
                where += f", reference unreachable ({ref_error})"
            else:
                where += ", no reference given (--reference)"
            where += f", synced={'yes' if info.is_synced else 'no'}"
            if info.consensus_state:
                where += f" ({info.consensus_state})"
            level = GREEN
            if lag is not None and lag > opts.red_lag:
                level = RED
            elif not info.is_synced or (lag is not None and lag > opts.max_lag) or (opts.reference_url and ref_height is None):
                level = YELLOW
            lines.append(Line("node", "height", level, where, data))
        try:
            peers = node.peer_count()
            level = RED if peers == 0 else YELLOW if peers <= opts.min_peers else GREEN
            lines.append(Line("node", "peers", level, f"{peers} peers (plan: more than {opts.min_peers})",
                              {"peer_count": peers}))
        except RecoveryError as exc:
            lines.append(Line("node", "peers", RED, exc.problem))
        try:
            mining = node.is_mining()
            if site_role in ("standby", "fenced"):
                # one writer: a node mines only on the site whose database accepts writes
                level, what = (RED, f"mining, but this site's database is {site_role} (a second writer)") if mining \
                    else (GREEN, f"not mining (this site's database is {site_role})")
            else:
                level, what = (GREEN, "mining") if mining else (YELLOW, "not mining")
            lines.append(Line("node", "mining", level, what, {"is_mining": mining}))
        except RecoveryError as exc:
            lines.append(Line("node", "mining", RED, exc.problem))
    return lines, (info.block_height if info.block_height >= 0 else None)


# ------------------------------------------------------------------------------ the database


def check_database(outputs: StackOutputs, opts: StatusOptions, node_height: int | None) -> list[Line]:
    try:
        cp = postgres.resolve(outputs, opts.dsn)
        cp.params["connect_timeout"] = str(max(1, int(opts.timeout_s)))
        conn = postgres.connect(cp, autocommit=True)
    except RecoveryError as exc:
        return [Line("database", "reachable", RED, redact.scrub(exc.problem)),
                Line("database", "rows", SKIP, "not checked: database unreachable")]
    lines: list[Line] = []
    with conn:
        try:
            size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
            lines.append(Line("database", "reachable", GREEN, f"{cp.target} up, size {human_bytes(size)}",
                              {"target": cp.target, "size_bytes": size}))
            exists = conn.execute("SELECT to_regclass('public.blockchain') IS NOT NULL").fetchone()[0]  # type: ignore[index]
            if not exists:
                return lines + [Line("database", "rows", RED, "table blockchain is missing - scenario 1: restore the database")]
            r = conn.execute("SELECT count(*), min(height), max(height) FROM public.blockchain").fetchone()
        except psycopg.Error as exc:
            return lines + [Line("database", "rows", RED, redact.scrub(str(exc).strip().splitlines()[0]))]
    assert r is not None
    rows, lo, hi = int(r[0]), r[1], r[2]
    data: dict[str, Any] = {"rows": rows, "min_height": lo, "max_height": hi}
    if hi is None:
        return lines + [Line("database", "rows", RED, "table blockchain is empty", data)]
    missing = (int(hi) - int(lo) + 1) - rows
    data["missing_rows"] = missing
    detail = f"{rows} rows, max(height) {hi}"
    level = GREEN
    if node_height is not None:
        behind = node_height - int(hi)
        data["behind_node"] = behind
        detail += f", node at {node_height}"
        if behind > opts.max_lag:
            level, detail = YELLOW, detail + f" ({behind} blocks not indexed)"
        elif -behind > opts.max_lag:
            # the node lags its own database: it serves an old chain (e.g. restored from a backup)
            level = RED if -behind > opts.red_lag else YELLOW
            detail += f" (the node is {-behind} blocks behind its database)"
    if missing > 0:
        level, detail = RED, detail + f"; {missing} rows missing between {lo} and {hi} - scenario 1: restore the database"
    lines.append(Line("database", "rows", level, detail, data))
    return lines


# --------------------------------------------------------------------------------- the cache


def check_cache(outputs: StackOutputs, opts: StatusOptions) -> Line:
    if not outputs.cache_endpoint:
        return Line("cache", "reachable", SKIP, "no cache configured")
    where = f"{outputs.cache_endpoint}:{outputs.cache_port}"
    group_status, group = None, {}
    try:
        groups = client("elasticache", outputs.region).describe_replication_groups(
            ReplicationGroupId=outputs.cache_replication_group_id)["ReplicationGroups"]
        group_status = groups[0].get("Status") if groups else "missing"
        group = groups[0] if groups else {}
    except (ClientError, BotoCoreError) as exc:
        group_status = f"unknown ({_err(exc)})"
    data = {"endpoint": where, "replication_group_status": group_status}
    nodes = _cache_nodes(group, outputs, opts)  # issue 15: primary + replica health
    if nodes:
        return _cache_nodes_line(where, group_status, nodes, data, outputs.stack)
    try:
        with socket.create_connection((outputs.cache_endpoint, outputs.cache_port), timeout=opts.timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if opts.local:
            return Line("cache", "reachable", SKIP, f"{where} not reachable from here ({reason}), skipped on the local "
                        f"environment; group {outputs.cache_replication_group_id} is {group_status}", data)
        return Line("cache", "reachable", RED, f"{where} unreachable ({reason}); group is {group_status}", data)
    level = GREEN if group_status == "available" else YELLOW
    return Line("cache", "reachable", level, f"{where} accepts connections; group is {group_status}", data)


def _cache_nodes(group: dict[str, Any], outputs: StackOutputs, opts: StatusOptions) -> dict[str, dict[str, Any]]:
    """Each member's role and whether it answers PING at its own endpoint (none known: {})."""
    from recovery.cache import CacheTarget, answers

    out = {}
    for m in ((group.get("NodeGroups") or [{}])[0].get("NodeGroupMembers") or []):
        ep = m.get("ReadEndpoint") or {}
        if not ep.get("Address"):
            continue
        target = CacheTarget(str(ep["Address"]), int(ep.get("Port") or outputs.cache_port), tls=not opts.local)
        out[str(m["CacheClusterId"])] = {"role": m.get("CurrentRole"), "answers": answers(target, opts.timeout_s)}
    if not any(n["answers"] for n in out.values()) and opts.local and not _accepts(outputs, opts):
        return {}  # no redis-server backs the local group (or its region is out): the endpoint check says so
    return out


def _accepts(outputs: StackOutputs, opts: StatusOptions) -> bool:
    try:
        socket.create_connection((outputs.cache_endpoint, outputs.cache_port), timeout=opts.timeout_s).close()
        return True
    except OSError:
        return False


def _cache_nodes_line(where: str, group_status: Any, nodes: dict[str, dict[str, Any]], data: dict[str, Any],
                      stack: str) -> Line:
    """A lost primary is red (writes fail until `cache failover`), a lost replica yellow (no failover left)."""
    data["nodes"] = nodes
    lost = [f"{cid} ({n['role']})" for cid, n in nodes.items() if not n["answers"]]
    primary_lost = any(n["role"] == "primary" and not n["answers"] for n in nodes.values())
    if primary_lost:
        return Line("cache", "reachable", RED, f"{where}: primary lost: {', '.join(lost)} not answering; group is "
                    f"{group_status} (`recovery cache failover --stack {stack}`, or "
                    f"`recovery cache recreate --stack {stack}` if every node is lost)", data)
    if lost:
        return Line("cache", "reachable", YELLOW, f"{where} answers; replica lost: {', '.join(lost)} not answering; "
                    f"group is {group_status}", data)
    level = GREEN if group_status == "available" else YELLOW
    return Line("cache", "reachable", level, f"{where} answers; primary and {len(nodes) - 1} replica(s) answer; "
                f"group is {group_status}", data)


# ------------------------------------------------------------------------------------ backups


def check_backups(outputs: StackOutputs, s3: Any, now: datetime) -> tuple[list[Line], dict[str, Any]]:
    cat = Catalog(s3, outputs.backup_bucket_name)
    lines: list[Line] = []
    latest: dict[str, Any] = {}
    # config only where it is scheduled (backup.intervalMinutes.config): it carries the explorer's state
    for kind in ("db", "chain") + (("config",) if outputs.interval_minutes("config") else ()):
        try:
            entries = cat.recent(kind, now - timedelta(days=1))
        except RecoveryError as exc:
            lines.append(Line("backup", kind, RED, exc.problem))
            continue
        limit = age_limit_seconds(outputs, kind)
        good = next((e for e in reversed(entries) if e.verified is not False), None)
        if entries:
            latest[kind] = entries[-1]
        target = (f"limit {_minutes(limit)} = interval {outputs.interval_minutes(kind)} min + half of it"
                  if limit else "no schedule")
        if good is None:
            lines.append(Line("backup", kind, RED, f"no good {kind} backup in the catalogue ({target}) - "
                              f"run `recovery backup {kind} --stack {outputs.stack}`", {"limit_seconds": limit}))
            continue
        age = (now - good.manifest.time).total_seconds()
        data = {"key": good.manifest.key, "age_seconds": age, "limit_seconds": limit}
        level = GREEN if within_limit(age, limit) else RED
        note = ""
        if entries[-1] is not good:
            note = f"; newer {entries[-1].manifest.name} FAILED verification"
            level = YELLOW if level == GREEN else level
        lines.append(Line("backup", kind, level, f"{good.manifest.name} {_minutes(age)} old, {target}{note}", data))
    return lines, latest


# ---------------------------------------------------------------------- health and replication


def check_health(outputs: StackOutputs) -> Line:
    try:
        obs = client("route53", outputs.region, attempts=1).get_health_check_status(
            HealthCheckId=outputs.health_check_id)["HealthCheckObservations"]
    except (ClientError, BotoCoreError) as exc:
        return Line("health", "route53", RED, f"cannot read health check {outputs.health_check_id}: {_err(exc)}")
    statuses = [str(o.get("StatusReport", {}).get("Status", "")) for o in obs]
    ok = sum(1 for s in statuses if s.startswith("Success"))
    data = {"health_check_id": outputs.health_check_id, "healthy_checkers": ok, "checkers": len(statuses)}
    if not statuses:
        return Line("health", "route53", YELLOW, f"health check {outputs.health_check_id}: no observations yet", data)
    level = GREEN if ok == len(statuses) else RED if ok == 0 else YELLOW
    first_bad = next((s for s in statuses if not s.startswith("Success")), "")
    detail = f"health check {outputs.health_check_id}: {ok}/{len(statuses)} checkers healthy"
    if first_bad:
        detail += f" ({first_bad[:100]})"
    return Line("health", "route53", level, detail, data)


def check_replication(outputs: StackOutputs, s3: Any, latest: dict[str, Any]) -> Line:
    bucket = outputs.backup_bucket_name
    if outputs.role == "dr":
        src = outputs.replication_source_bucket_name
        if not src:
            return Line("replication", "bucket", YELLOW, "DR stack without replication_source_bucket_name output")
        try:
            cfg = client("s3", outputs.region).get_bucket_replication(Bucket=src)["ReplicationConfiguration"]
        except ClientError as exc:
            return Line("replication", "bucket", RED, f"cannot read replication of {src} ({error_code(exc)})")
        into = any(r.get("Status") == "Enabled" and r.get("Destination", {}).get("Bucket") == outputs.backup_bucket_arn
                   for r in cfg.get("Rules", []))
        if not into:
            return Line("replication", "bucket", RED, f"source bucket {src} has no enabled rule into {bucket}")
        newest = max(latest.values(), key=lambda e: e.manifest.ended_at, default=None)
        if newest is None:
            return Line("replication", "bucket", YELLOW, f"{src} replicates into {bucket}, but no backup has arrived yet")
        return Line("replication", "bucket", GREEN, f"{src} replicates into {bucket}; newest replica {newest.manifest.name}",
                    {"source": src, "newest": newest.manifest.key})
    try:
        cfg = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    except ClientError as exc:
        if error_code(exc) == "ReplicationConfigurationNotFoundError":
            return Line("replication", "bucket", RED, f"bucket {bucket} has no replication configuration"
                        f" (peer stack {outputs.peer_stack} gets no backups)")
        return Line("replication", "bucket", RED, f"cannot read replication of {bucket} ({error_code(exc)})")
    dests = [r["Destination"]["Bucket"].split(":::")[-1] for r in cfg.get("Rules", [])
             if r.get("Status") == "Enabled" and "Destination" in r]
    if not dests:
        return Line("replication", "bucket", RED, f"bucket {bucket}: replication configured but no rule enabled")
    if not latest:
        return Line("replication", "bucket", YELLOW, f"{bucket} -> {', '.join(dests)}; no backup to check yet")
    worst = GREEN
    parts = []
    for kind, e in sorted(latest.items()):
        try:
            head = s3.head_object(Bucket=bucket, Key=e.manifest.key)
        except ClientError as exc:
            parts.append(f"{kind}: cannot read {e.manifest.name} ({error_code(exc)})")
            worst = RED
            continue
        for c in _check_replication(s3, outputs, kind, e.manifest, head):
            status = head.get("ReplicationStatus")
            level = GREEN if c.ok else YELLOW if status == "PENDING" else RED
            worst = RED if RED in (worst, level) else YELLOW if YELLOW in (worst, level) else GREEN
            parts.append(f"{kind}: {c.detail.split(': ', 1)[-1]}")
    return Line("replication", "bucket", worst, f"{bucket} -> {', '.join(dests)}; " + "; ".join(parts),
                {"destinations": dests})


# ----------------------------------------------------------------------------- site and traffic


def check_site(outputs: StackOutputs) -> tuple[Line, str]:
    role, height = database_role(outputs)
    data = {"database": role, "max_height": height}
    if role == "writer":
        return Line("site", "role", GREEN, "writer: this site's database accepts writes", data), role
    if role == "standby":
        return Line("site", "role", GREEN, f"standby: replicating from the writer ({outputs.peer_stack})", data), role
    if role == "fenced":
        return Line("site", "role", YELLOW, f"fenced: refuses writes and replicates from nothing (an old writer after a "
                    f"failover); `recovery failback --stack {outputs.stack}` rejoins it", data), role
    return Line("site", "role", RED, "this site's database does not answer", data), role


def check_traffic(outputs: StackOutputs, role: str) -> Line:
    try:
        answer = traffic.dns_answer(outputs)
    except RecoveryError as exc:
        return Line("traffic", "dns", RED, exc.problem)
    ours = answer == outputs.node_api_fqdn.rstrip(".")
    where = "this site" if ours else f"{answer or 'nothing'} (not this site)"
    data = {"record": outputs.dns_record_name, "answer": answer, "serves_this_site": ours}
    detail = f"{outputs.dns_record_name} -> {where}"
    if role == "writer":
        return Line("traffic", "dns", GREEN if ours else RED,
                    detail + ("" if ours else "; this site is the writer: run `recovery failover|failback "
                              f"--stack {outputs.stack}` to move traffic"), data)
    if role in ("standby", "fenced"):
        return Line("traffic", "dns", RED if ours else GREEN,
                    detail + (f"; traffic reaches a {role} site" if ours else "; the writer serves"), data)
    return Line("traffic", "dns", YELLOW, detail, data)


# ------------------------------------------------------------------------------------ run all


def run_status(outputs: StackOutputs, opts: StatusOptions, *, s3: Any = None, now: datetime | None = None,
               on_line: Callable[[Line], None] | None = None) -> StatusReport:
    now = now or utc_now()
    report = StatusReport(outputs.stack, now.isoformat())

    def add(lines: list[Line] | Line) -> None:
        for ln in lines if isinstance(lines, list) else [lines]:
            ln.detail = redact.scrub(ln.detail)
            report.lines.append(ln)
            if on_line:
                on_line(ln)

    site_line, role = check_site(outputs)
    node_lines, height = check_node(opts, role)
    add(node_lines)
    add(check_database(outputs, opts, height))
    add(check_cache(outputs, opts))
    # issue 15: the explorer and the monitoring, by the health URLs of the services config
    add([Line(c, "health", level, detail, data) for c, level, detail, data in service_health.check(outputs, opts.timeout_s)])
    s3 = s3 or client("s3", outputs.region)
    try:
        backup_lines, latest = check_backups(outputs, s3, now)
    except (ClientError, BotoCoreError) as exc:
        backup_lines, latest = [Line("backup", "catalogue", RED, f"cannot read the catalogue: {_err(exc)}")], {}
    add(backup_lines)
    add(site_line)
    rpo = replication_rpo.read(outputs, role, now)  # issue 16: the continuous RPO
    add([Line("database", "replication", rpo.lag.level, rpo.lag.detail, rpo.lag.data),
         Line("database", "restorable", rpo.restorable.level, rpo.restorable.detail, rpo.restorable.data)])
    add(check_traffic(outputs, role))
    add(check_health(outputs))
    try:
        add(check_replication(outputs, s3, latest))
    except (ClientError, BotoCoreError) as exc:
        add(Line("replication", "bucket", RED, f"cannot read replication state: {_err(exc)}"))
    return report
