"""`recovery local outage REGION` / `--heal`: a regional outage of one local site (issue 14).

Outage: the site's PostgreSQL (``pg_ctl stop -m immediate``), node (SIGKILL) and, for the primary,
redis-server (SIGKILL) stop hard, so they refuse connections as a lost region's services do; the
emulator's outage of the region begins (``POST /xai-local/outage``, recovery/local/emulator/outage.py),
and ``state.json["outage"] = {"regions", "since", "stopped"}`` records it. Replication to the other
site stops with it.

Heal: the emulator heals first (so the global cluster can be asked who the writer is), then the
stopped services start again in this order: PostgreSQL, redis, node. A site whose cluster is no
longer the global cluster's writer (a failover happened meanwhile) comes back FENCED
(``dr_site.start_fenced``): in recovery with no upstream, its data kept, until ``dr_site rejoin``
or a failback rebuilds it. Its node's writer gate (node_sim) then keeps it from mining.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from recovery.errors import LocalEnvError
from recovery.local import dr_site
from recovery.local.deploy import admin_client
from recovery.local.node_process import NodeProcess, start_node
from recovery.local.paths import local_dir, read_state, write_json
from recovery.local.redis_cache import kill_redis, restart_redis

PROJECT = "xai-dr"


class OutageError(LocalEnvError):
    """An outage already holds, none holds to heal, or REGION is not a local site's."""

    exit_code = 47


def _outputs(d: Path, stack: str) -> dict[str, Any]:
    path = d / "backend" / ".pulumi" / "stacks" / PROJECT / f"{stack}.json"
    try:
        return dict(json.loads(path.read_text())["checkpoint"]["latest"]["resources"][0]["outputs"])
    except (OSError, ValueError, KeyError, IndexError):
        raise LocalEnvError(f"the outputs of stack {stack} are missing in {d}",
                            "wait for `recovery local up` to finish, or restart it") from None


def _sites(d: Path, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Region -> the site's services: its stack, cluster id, PostgreSQL, node and redis entries."""
    out = {}
    for stack, pg, node, redis in (("local", state.get("postgres"), state.get("node"), state.get("redis")),
                                   ("local-dr", (state.get("dr") or {}).get("postgres"),
                                    (state.get("dr") or {}).get("node"), None)):
        o = _outputs(d, stack)
        out[str(o["region"])] = {"stack": stack, "cluster_id": o["db_cluster_id"], "postgres": pg or {},
                                 "node": node or {}, "redis": redis}
    return out


def emulator_outage(aws: dict[str, Any], regions: list[str]) -> bool:
    """Begin (regions) or heal ([]) the emulator's outage; False when the emulator has no outage
    control (an emulator without recovery/local/emulator/outage.py): it answers 404, or moto's
    S3 catch-all takes the path for a bucket and answers something that is not the control's JSON."""
    ctx = ssl.create_default_context(cafile=aws.get("ca_bundle") or None)
    req = urllib.request.Request(f"{aws['endpoint']}/xai-local/outage", data=json.dumps({"regions": regions}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            resp.read()
        return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404 or "json" not in (exc.headers.get("Content-Type") or ""):
            return False
        raise LocalEnvError(f"the AWS emulator refused the outage control: HTTP {exc.code}",
                            "see aws.log in the local environment's directory") from None
    except OSError as exc:
        raise LocalEnvError(f"the AWS emulator does not answer ({exc})", "check `recovery local status`") from None


def _check_region(region: str, sites: dict[str, Any]) -> None:
    if region not in sites:
        valid = ", ".join(f"{r} ({s['stack']})" for r, s in sorted(sites.items()))
        raise OutageError(f"{region!r} is not a local site's region", f"use one of: {valid}")


def begin(region: str, path: str | Path | None = None) -> dict[str, Any]:
    """Stop ``region``'s site hard and begin the emulator's outage of it."""
    d = local_dir(path)
    state = read_state(d)
    sites = _sites(d, state)
    _check_region(region, sites)
    held = state.get("outage")
    if held:
        raise OutageError(f"an outage of {', '.join(held['regions'])} already holds",
                          "heal it first with `recovery local outage --heal`")
    site = sites[region]
    # The emulator first: if it fails, nothing has been stopped.
    emulated = emulator_outage(state["aws"], [region])
    stopped = []
    if site["postgres"].get("datadir") and dr_site.pg_stop(site["postgres"], "immediate"):
        stopped.append("postgres")
    if site["redis"] and kill_redis(site["redis"]):
        stopped.append("redis")
    node = site["node"]
    try:
        n = NodeProcess.attach(node["run_dir"], node["name"])
        if n.is_running():
            n.kill()
            n.wait(10)
            stopped.append("node")
    except (KeyError, OSError, ValueError, IndexError):
        pass  # no pid file: the node was not running
    state["outage"] = {"regions": [region], "since": time.time(), "stopped": stopped, "stack": site["stack"],
                       "emulator": emulated}
    write_json(d / "state.json", state)
    return state["outage"]


def is_writer(aws: dict[str, Any], cluster_id: str, other_pg: dict[str, Any] | None) -> bool:
    """Is ``cluster_id`` the global cluster's writer? Asked of the emulator (describe_global_clusters,
    as the account's root); when that fails, the other site's PostgreSQL being a writer says no."""
    try:
        rds = admin_client("rds", "us-east-1", aws["endpoint"], aws.get("ca_bundle"))
        for gc in rds.describe_global_clusters()["GlobalClusters"]:
            for m in gc.get("GlobalClusterMembers", []):
                if str(m["DBClusterArn"]).split(":")[-1] == cluster_id:
                    return bool(m.get("IsWriter"))
    except (BotoCoreError, ClientError):
        pass  # fall back on the databases themselves
    return not (other_pg and dr_site.running(other_pg) and dr_site.in_recovery(other_pg) is False)


def heal(path: str | Path | None = None) -> dict[str, Any]:
    """Heal the emulator, then start the stopped services: PostgreSQL (fenced if the site lost the
    writer role meanwhile), redis, node."""
    d = local_dir(path)
    state = read_state(d)
    held = state.get("outage")
    if not held:
        raise OutageError("no outage holds", "begin one with `recovery local outage REGION`")
    emulator_outage(state["aws"], [])
    sites = _sites(d, state)
    region = held["regions"][0]
    site = sites[region]
    other = next((s for r, s in sites.items() if r != region), None)
    started, pg_role = [], None
    pg = site["postgres"]
    if "postgres" in held["stopped"]:
        maint = {**pg, "user": state["postgres"]["maint_user"], "password": state["postgres"]["maint_password"]}
        other_pg = None
        if other and other["postgres"]:
            other_pg = {**other["postgres"], "user": maint["user"], "password": maint["password"]}
        standby_before = Path(pg["datadir"], "standby.signal").exists()
        if not standby_before and not is_writer(state["aws"], site["cluster_id"], other_pg):
            dr_site.start_fenced(maint)
            pg_role = "fenced"
        else:
            dr_site._pg_start(pg)
            dr_site.wait_ready(maint)
            pg_role = dr_site.site_role(maint)
        started.append("postgres")
    if "redis" in held["stopped"] and site["redis"]:
        state["redis"] = restart_redis(d, state["redis"])
        started.append("redis")
    node = site["node"]
    if "node" in held["stopped"]:
        n = start_node(node["data_dir"], int(node["port"]), node["pg_dsn"], mine_interval=float(node["mine_interval"]),
                       name=node["name"], run_dir=node["run_dir"], pg_service_file=node.get("pg_service_file"),
                       log_path=d / ("node.log" if site["stack"] == "local" else "node-dr.log"))
        node["pid"] = n.pid
        started.append("node")
    state.pop("outage")
    write_json(d / "state.json", state)
    return {"healed": held["regions"], "started": started, "postgres_role": pg_role, "stack": site["stack"]}


def outage_status(state: dict[str, Any]) -> dict[str, Any] | None:
    """The outage that holds (state.json's entry), None when none does."""
    held = state.get("outage")
    return dict(held) if held else None


def refused_between(path: str | Path | None, since: float, until: float) -> list[dict[str, Any]]:
    """The requests the emulator refused for a region in outage between two times: what a runbook
    asked of a lost region (its API, or a global control plane hosted there)."""
    state = read_state(local_dir(path))
    aws = state["aws"]
    ctx = ssl.create_default_context(cafile=aws.get("ca_bundle") or None)
    with urllib.request.urlopen(f"{aws['endpoint']}/xai-local/outage", timeout=10, context=ctx) as resp:
        refused = json.loads(resp.read()).get("refused", [])
    return [r for r in refused if since <= float(r.get("time", 0)) <= until]


__all__ = ["OutageError", "begin", "emulator_outage", "heal", "is_writer", "outage_status", "refused_between"]
