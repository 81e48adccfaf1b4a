"""`recovery local up|down|status`: the embedded default DR environment on one machine.

It runs real processes and leaves them running for the other commands:

- the AWS emulator (moto server + our extensions), `aws_daemon.py`;
- a throwaway PostgreSQL 15 cluster, the chain index database;
- the simulated XAI node, mining and indexing into PostgreSQL.

Then it deploys the Pulumi program itself into the emulator for the stacks `local` and `local-dr`
(`deploy.py`, from `Pulumi.local*.yaml`) and writes their outputs into a file backend under the
directory, which `recovery/stack.py` reads for those stack names. Those outputs say, beside the
program's own, that the stack is local, where its AWS API is (the emulator's endpoint and TLS
certificate) and which credentials reach it (a credentials file holding the on-call identity the
stacks trust; each command then assumes its job's role), and how to control the local node's
services, so every runbook runs unchanged with `--stack local` and nothing rewrites the
environment.

Everything lives in one directory (default `.recovery/local`, or `RECOVERY_LOCAL_DIR`):
`state.json` (what runs, where, since when), `backend/` (stack outputs), `aws.json`,
`hooks.json`, `pg/`, `node/`, `services.toml`, and logs.

`recovery local outage REGION` / `--heal` (recovery/local/outage.py) takes one site's region down
and back; `status` reports the outage (``state.json["outage"]``) and each database's role
(writer / standby / fenced).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from psycopg import sql

from recovery.errors import InputError, LocalEnvError
from recovery.local import deploy, dr_site, restored_clusters, site_services
from recovery.local.aws_daemon import set_master_password
from recovery.local.node_process import NodeProcess, start_node
# local_dir and read_state live in paths.py (a leaf, so the daemon, the DR site and the cache need
# not import this module).
from recovery.local.paths import local_dir, read_state, write_json
from recovery.local.postgres_cluster import PostgresCluster, free_port, pg_bin
from recovery.local.redis_cache import redis_status, start_redis, stop_redis
from recovery.local.webhook_receiver import seed_pager_secrets, start_receiver, stop_receiver
from recovery.processes import pid_alive, stop_pid

PROJECT = "xai-dr"
MAINT_USER = "xai_control_plane"
PG_SERVICE = "xai-db"  # the section of the site's libpq service file the node and explorer connect through
# Written first into every directory `up` makes. `down` deletes a directory only when it carries
# this marker: `--dir` is user input, and a typo must never remove someone's files.
MARKER = ".xai-recovery-local"


def _refuse_foreign(d: Path, verb: str, *, empty_ok: bool) -> None:
    """Refuse a path that `up` did not make. `up` may use an empty directory; `down` uses none."""
    why = None
    if d.exists() and not d.is_dir():
        why = f"{d} is not a directory"
    elif d.is_dir() and not (d / MARKER).is_file() and not (empty_ok and not any(d.iterdir())):
        why = f"{d} is not a local environment's directory (it has no {MARKER} marker)"
    if why:
        raise LocalEnvError(f"{why}; nothing was {verb}",
                            "pass the directory `recovery local up` made (--dir or RECOVERY_LOCAL_DIR)")


CREDENTIALS_FILE = "aws-credentials"
ONCALL_PROFILE = "xai-local-oncall"


def _aws_outputs(d: Path, aws: dict[str, Any], oncall: Any) -> dict[str, Any]:
    """The outputs that make a stack local: the emulator's endpoint and certificate, and a shared
    credentials file (0600) with the on-call identity's key under its own profile."""
    path = d / CREDENTIALS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[{ONCALL_PROFILE}]\naws_access_key_id = {oncall.access_key_id}\n"
                f"aws_secret_access_key = {oncall.secret_access_key}\n")
    out = {"local": True, "aws_endpoint_url": aws["endpoint"], "aws_ca_bundle": aws["ca_bundle"],
           "aws_credentials_file": str(path), "aws_profile": ONCALL_PROFILE}
    if aws.get("dns"):  # the emulator's DNS server: Route 53's data plane
        out["dns_server"] = aws["dns"]
    return out


def _checkpoint(stack: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """A self-managed backend's state file holding only the stack resource and its outputs."""
    return {"version": 3, "checkpoint": {"stack": stack, "latest": {"resources": [{
        "urn": f"urn:pulumi:{stack}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{stack}",
        "type": "pulumi:pulumi:Stack", "custom": False, "outputs": outputs}]}}}


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True,
                                env={**os.environ, **(env or {})})


def _wait_file(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalEnvError(f"{what} exited with {proc.returncode} at start", f"see {log}")
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            time.sleep(0.05)
    raise LocalEnvError(f"{what} did not start within {timeout:g}s", f"see {log}")


def _node_services_config(d: Path, node: dict[str, Any], others: list[dict[str, Any]] | None = None) -> Path:
    """systemctl's role for the local node (through its launcher) and, once they run, the explorer
    and monitoring (recovery/local/site_services.py); the plan's order: node first, then explorer."""
    py = sys.executable
    start = [py, "-m", "recovery.local.node_process", "start", "--data-dir", node["data_dir"], "--run-dir",
             node["run_dir"], "--name", node["name"], "--port", str(node["port"]), "--pg-dsn", node["pg_dsn"],
             "--pg-service-file", node["pg_service_file"], "--mine-interval", str(node["mine_interval"])]
    stop = [py, "-m", "recovery.local.node_process", "stop", "--run-dir", node["run_dir"], "--name", node["name"]]
    status = [py, "-m", "recovery.local.node_process", "status", "--run-dir", node["run_dir"], "--name", node["name"]]
    path = d / "services.json"
    entries = [{"name": "xai-node", "stop": stop, "start": start, "status": status}, *(others or [])]
    write_json(path, {"timeout_seconds": 60, "services": entries, "start_order": [e["name"] for e in entries],
                      "database_service_file": node["pg_service_file"], "database_service": PG_SERVICE})
    return path


def up(path: str | os.PathLike[str] | None = None, *, mine_interval: float = 1.0,
       progress: Any = None) -> dict[str, Any]:
    """Start everything and deploy both stacks into the emulator. Refuses when an environment already runs there."""
    say = progress or (lambda _msg: None)
    d = local_dir(path)
    if (d / "state.json").exists():
        previous = read_state(d)
        if any(pid_alive(previous.get(k, {}).get("pid")) for k in ("aws", "node")):
            raise LocalEnvError(f"a local environment already runs in {d}", "use it, or `recovery local down` first")
        down(d)
    _check_prerequisites()
    _refuse_foreign(d, "started", empty_ok=True)
    d.mkdir(parents=True, exist_ok=True)
    (d / MARKER).write_text("made by `recovery local up`; `recovery local down` removes this directory\n")
    state: dict[str, Any] = {"dir": str(d), "started_at": time.time(), "stacks": {}}
    try:
        say("starting the AWS emulator")
        aws_log = d / "aws.log"
        proc = _spawn([sys.executable, "-m", "recovery.local.aws_daemon", "--state-dir", str(d)], aws_log)
        state["aws"] = _wait_file(d / "aws.json", proc, "AWS emulator", aws_log)
        write_json(d / "state.json", state)
        pg = _start_postgres(d, state, say)
        services = _start_node(d, state, pg, mine_interval, say)
        # issue 15: the explorer (after the node) and the monitoring
        state["site_services"] = site_services.start(d, state["node"]["pg_dsn"], free_port, say,
                                                     state["node"]["pg_service_file"])
        services = _node_services_config(d, state["node"], site_services.service_entries(d, state["site_services"]["ports"]))
        write_json(d / "state.json", state)
        # DR site (issue 6, recovery/local/dr_site.py): hot standby + DR node
        state["dr"] = dr_site.start(d, state["postgres"], mine_interval, say)
        state["receiver"] = start_receiver(d, say)  # issue 15: the on-call receiver (webhook_receiver.py)
        write_json(d / "state.json", state)
        outputs = _deploy(d, state, pg, services, say)
        seed_pager_secrets(state["receiver"], outputs, lambda svc, region: deploy.admin_client(
            svc, region, state["aws"]["endpoint"], state["aws"]["ca_bundle"]))
        # issue 7: a real redis-server behind the cache group (recovery/local/redis_cache.py)
        state["redis"] = start_redis(d, state["aws"], outputs, say)
        write_json(d / "state.json", state)
        stacks_dir = d / "backend" / ".pulumi" / "stacks" / PROJECT
        stacks_dir.mkdir(parents=True, exist_ok=True)
        for stack, out in outputs.items():
            write_json(stacks_dir / f"{stack}.json", _checkpoint(stack, out))
        state["stacks"] = {s: {"services_config": out["services_config"]} for s, out in outputs.items()}
        write_json(d / "hooks.json", _hooks(d, state, pg, outputs))
        # The program generated the master password, as it does for Aurora: the local cluster takes it.
        master = json.loads(deploy.generated_secret(outputs["local"]["db_secret_arn"], state["aws"]["endpoint"],
                                                    state["aws"]["ca_bundle"]))
        set_master_password(d, outputs["local"]["db_cluster_id"], master["password"])
        state["ready_at"] = time.time()
        write_json(d / "state.json", state)
        return status(d)
    except BaseException:
        down(d)
        raise


def _check_prerequisites() -> None:
    """Before anything starts: the emulator's authoriser and the PostgreSQL 15 binaries."""
    # The authoriser imports werkzeug (moto[server], a development dependency); down and status
    # must work without it, so it is imported only where `up` needs it.
    from recovery.local import iam

    try:
        iam.check_prerequisites()
    except RuntimeError as exc:
        problem, _, fix = str(exc).partition("; ")
        raise LocalEnvError(problem, fix or "run `make venv`") from None
    if shutil.which("initdb") is None and not Path("/usr/lib/postgresql/15/bin/initdb").exists():
        raise InputError("PostgreSQL 15 server binaries (initdb, pg_ctl) are not installed",
                         "install postgresql-15 (Debian: apt-get install postgresql-15)")


def _start_postgres(d: Path, state: dict[str, Any], say: Any) -> PostgresCluster:
    """The primary site's PostgreSQL 15, its maintenance superuser, and the pgpass file."""
    say("starting PostgreSQL 15")
    # As root the server runs as `postgres`, which cannot enter a private directory such as
    # /root/...: give it a directory of its own under the system temp dir instead.
    pg_base = Path(tempfile.mkdtemp(prefix="xai-local-pg-")) if os.geteuid() == 0 else d / "pg"
    if os.geteuid() == 0:
        os.chmod(pg_base, 0o755)
    state["postgres"] = {"base": str(pg_base), "datadir": str(pg_base / "data"), "run_as": "postgres" if os.geteuid() == 0 else None}
    write_json(d / "state.json", state)
    try:
        run_as = "postgres" if os.geteuid() == 0 else None
        archiving = restored_clusters.archive_opts(pg_base, run_as)
        pg = PostgresCluster(pg_base, password=secrets.token_urlsafe(24), extra_opts=archiving).start()
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise LocalEnvError(f"PostgreSQL failed to start: {detail[-1] if detail else exc}",
                            f"see {pg_base}/log; is postgresql-15 installed?") from None
    maint_password = secrets.token_urlsafe(24)
    with pg.connect("postgres") as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(MAINT_USER), sql.Literal(maint_password)))
    state["postgres"] = {"base": str(pg_base), "host": pg.host, "port": pg.port, "datadir": str(pg.datadir), "user": pg.user,
                         "password": pg.password, "dbname": pg.dbname, "maint_user": MAINT_USER,
                         "maint_password": maint_password, "run_as": pg._run_as,
                         "extra_opts": archiving}  # dr_site restarts it with them (a failback's rebuild)
    # issue 16: what `restore pitr` and `restore snapshot` restore from (restored_clusters.py)
    state["postgres"]["pitr"] = restored_clusters.take_base(state["postgres"])
    write_json(d / "state.json", state)
    fd = os.open(d / "pgpass", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        # any host: after a `restore pitr --cutover` the clients reach a restored cluster on another address
        f.write(f"*:{pg.port}:*:{pg.user}:{pg.password}\n")
    return pg


def _start_node(d: Path, state: dict[str, Any], pg: PostgresCluster, mine_interval: float, say: Any) -> Path:
    """The primary site's simulated node, indexing into ``pg``; returns its services config."""
    say("starting the simulated XAI node")
    data_dir = d / "node" / "var" / "lib" / "xai" / "blockchain"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    node_port = free_port()
    # The host and port live in this site's libpq service file, as on a real node host, so that a
    # cutover to a restored cluster (runbooks/cutover.py) repoints the node and the explorer there.
    service_file = d / "pg_service.conf"
    service_file.write_text(f"[{PG_SERVICE}]\nhost={pg.host}\nport={pg.port}\ndbname={pg.dbname}\nuser={pg.user}\n")
    pg_dsn = f"service={PG_SERVICE} passfile={d / 'pgpass'}"
    node = start_node(data_dir, node_port, pg_dsn, init=True, mine_interval=mine_interval, name="xai-node",
                      run_dir=d / "node", log_path=d / "node.log", pg_service_file=service_file)
    state["node"] = {"pid": node.pid, "url": node.url, "port": node_port, "data_dir": str(data_dir),
                     "run_dir": str(d / "node"), "name": "xai-node", "pg_dsn": pg_dsn, "pg_service_file": str(service_file),
                     "mine_interval": mine_interval}
    services = _node_services_config(d, state["node"])
    write_json(d / "state.json", state)
    return services


def _deploy(d: Path, state: dict[str, Any], pg: PostgresCluster, services: Path, say: Any) -> dict[str, dict[str, Any]]:
    """Deploy the Pulumi program into the emulator for both stacks; returns their outputs."""
    say("deploying the Pulumi program into the emulator (both stacks)")
    node, dr_pg, dr_node = state["node"], state["dr"]["postgres"], state["dr"]["node"]
    deployed = deploy.deploy(state["aws"]["endpoint"], ca_bundle=state["aws"]["ca_bundle"], databases={
        "local": {"port": pg.port}, "local-dr": {"port": dr_pg["port"]}}, bindings={
        "local": {"db_endpoint": pg.host, "node_api_url": node["url"], "node_data_dir": node["data_dir"],
                  "services_config": str(services), "webhook_receiver_url": state["receiver"]["url"]},
        "local-dr": {"db_endpoint": pg.host, "node_api_url": dr_node["url"], "node_data_dir": dr_node["data_dir"],
                     "services_config": state["dr"]["services_config"], "webhook_receiver_url": state["receiver"]["url"]}})
    # Commands start from the on-call identity the stacks trust, never from the emulator's root.
    state["oncall"] = {"arn": deployed.oncall.arn, "access_key_id": deployed.oncall.access_key_id,
                       "secret_access_key": deployed.oncall.secret_access_key}
    write_json(d / "state.json", state)
    for out in deployed.outputs.values():
        out.update(_aws_outputs(d, state["aws"], deployed.oncall))
    return deployed.outputs


def _hooks(d: Path, state: dict[str, Any], pg: PostgresCluster, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """hooks.json: what the emulator's hooks act on (aws_daemon.py reads it at call time)."""
    maint_password = state["postgres"]["maint_password"]
    dr_pg, dr_node = state["dr"]["postgres"], state["dr"]["node"]
    return {
        "db_clusters": {out["db_cluster_id"]: {"host": pg.host, "port": out["db_port"], "master_user": pg.user,
                                                "maint_user": MAINT_USER, "maint_password": maint_password,
                                                "pgpass": str(d / "pgpass") if out["role"] == "primary" else dr_node["pgpass"]}
                        for out in outputs.values()},
        # the global-cluster promotion hook (aws_daemon.py -> dr_site.promote)
        "pg_sites": {outputs["local"]["db_cluster_id"]: {**state["postgres"], "name": "xai-local-db-primary"},
                     outputs["local-dr"]["db_cluster_id"]: dr_pg},
        "health_checks": {out["health_check_id"]: f"{out['node_api_url']}/api/v1/blockchain/info"
                          for out in outputs.values()},
    }


def down(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Stop every process of the environment and remove its directory. Safe to repeat.

    Refuses a directory that `up` did not make (no marker), before stopping anything."""
    d = local_dir(path)
    _refuse_foreign(d, "stopped or removed", empty_ok=False)
    stopped: list[str] = []
    try:
        state = json.loads((d / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    node = state.get("node") or {}
    if node.get("run_dir"):
        try:
            n = NodeProcess.attach(node["run_dir"], node.get("name", "xai-node"))
            if n.is_running():
                n.stop()
                stopped.append("node")
        except (OSError, ValueError, IndexError):
            pass
    stop_pid(node.get("pid"))
    stopped += site_services.stop(state.get("site_services"))
    if state.get("dr"):  # DR site (issue 6)
        stopped += dr_site.stop(state["dr"])
    stopped += restored_clusters.stop_all(d)  # issue 16
    pg = state.get("postgres") or {}
    datadir = pg.get("datadir") or str(d / "pg" / "data")
    if Path(datadir, "postmaster.pid").exists():
        subprocess.run([pg_bin("pg_ctl"), "-D", datadir, "-m", "fast", "-w", "stop"], capture_output=True,
                       user=pg.get("run_as"))
        stopped.append("postgres")
    if pg.get("base") and not Path(pg["base"]).is_relative_to(d):
        shutil.rmtree(pg["base"], ignore_errors=True)
    stopped += stop_redis(state)  # issue 7
    stopped += stop_receiver(state)  # issue 15
    aws = state.get("aws") or {}
    if pid_alive(aws.get("pid")):
        stop_pid(aws.get("pid"))
        stopped.append("aws")
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
    return {"dir": str(d), "stopped": stopped}


def _current_password(state: dict[str, Any]) -> str:
    """The master password now: the pgpass file follows rotations (aws_daemon's hook)."""
    try:
        line = (Path(state["dir"]) / "pgpass").read_text().strip().splitlines()[0]
        return line.split(":", 4)[4]
    except (KeyError, OSError, IndexError):
        return str(state.get("postgres", {}).get("password", ""))


def status(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What runs, where and since when. The sandbox's throwaway PostgreSQL password is shown here."""
    state = read_state(path)
    pg = state.get("postgres", {})
    node = state.get("node", {})
    pg_running = Path(pg.get("datadir", "/nonexistent"), "postmaster.pid").exists()
    node_pid = None
    try:
        node_pid = int((Path(node["run_dir"]) / f"{node['name']}.pid").read_text().split()[0])
    except (KeyError, OSError, ValueError, IndexError):
        pass
    return {
        "dir": state["dir"],
        "started_at": state.get("started_at"),
        "ready": "ready_at" in state,
        "stacks": sorted(state.get("stacks", {})),
        "aws": {"endpoint": state.get("aws", {}).get("endpoint"), "ca_bundle": state.get("aws", {}).get("ca_bundle"),
                "pid": state.get("aws", {}).get("pid"),
                "running": pid_alive(state.get("aws", {}).get("pid"))},
        "postgres": {"dsn": f"postgresql://{pg.get('user')}:{quote(_current_password(state), safe='')}@{pg.get('host')}:{pg.get('port')}/{pg.get('dbname')}",
                     "running": pg_running, "role": _pg_role(pg)},
        "node": {"url": node.get("url"), "data_dir": node.get("data_dir"), "pid": node_pid, "running": pid_alive(node_pid)},
        "redis": redis_status(state),  # issue 7
        "site_services": site_services.status(state.get("site_services")),  # issue 15
        "dr": _dr_status(state),  # DR site (issue 6)
        "outage": state.get("outage"),  # issue 14: `recovery local outage`
        "receiver": state.get("receiver"),  # issue 15: the on-call webhook receiver
    }


def _pg_role(pg: dict[str, Any]) -> str | None:
    """writer / standby / fenced (dr_site.site_role), as the maintenance superuser; None when down."""
    if not pg.get("datadir"):
        return None
    return dr_site.site_role({**pg, "user": pg.get("maint_user") or pg.get("user"),
                              "password": pg.get("maint_password") or pg.get("password")})


def _dr_status(state: dict[str, Any]) -> dict[str, Any] | None:
    """The DR site's standby and node (recovery/local/dr_site.py), None before it started."""
    if not state.get("dr"):
        return None
    return dr_site.status(state["dr"], state.get("postgres"))
