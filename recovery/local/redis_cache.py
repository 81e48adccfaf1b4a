"""The local environment's cache: a real redis-server primary + replica behind the `local` stack's group.

`recovery local up` calls :func:`start_redis` after provisioning. It reads the group's auth token
from the cache secret (AWSCURRENT) and starts one redis-server per member of the group the program
declares (``xai-dr:cache`` nodeCount; member ``-001`` the primary, the others ``replicaof`` it),
each on a free port with ACL users:

- ``default``: the auth token(s), what clients AUTH with, as with ElastiCache;
- ``xai_control_plane``: its own password, the control plane's access (like the PostgreSQL
  maintenance superuser), used by the emulator's hooks and by the replicas to follow the primary
  (``masteruser``), so replication never depends on the token being rotated.

In front of them runs the group's *primary endpoint* (recovery/local/redis_endpoint.py): one port
that forwards each new connection to whichever node is primary now, as ElastiCache's primary
endpoint DNS name follows a failover. The `local` stack's ``cache_endpoint``/``cache_port`` outputs
name it. ``redis.json`` (0600) in the state directory says which node is primary and where each
runs; the emulator's hooks (recovery/local/redis_group.py, wired in aws_daemon.py) update it.

The auth-token hook (:func:`apply_auth_token`) turns modify_replication_group into ACL changes on
every node (ACLs are not replicated): ROTATE -> the default user accepts the previous and the new
token (two passwords), SET -> only the new one, DELETE -> no password.

When redis-server is not installed nothing starts; ``state["redis"]`` says so and the rotation
reports its cache steps as skipped with that note (the rotation finds no answering cache at the
stack's cache endpoint, recovery/runbooks/rotate.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from recovery.cache import _cmd
from recovery.local.deploy import admin_client
from recovery.local.emulator import cache_auth_tokens
from recovery.local.postgres_cluster import free_port
from recovery.processes import pid_alive, stop_pid

REDIS_FILE = "redis.json"
ADMIN_USER = "xai_control_plane"
HOST = "127.0.0.1"
NOT_INSTALLED = "redis-server is not installed (apt-get install redis-server): the cache group is not backed"


def _redis_bin() -> str | None:
    """redis-server's path; RECOVERY_REDIS_SERVER overrides it ('none': act as if not installed)."""
    given = os.environ.get("RECOVERY_REDIS_SERVER")
    if given:
        return None if given == "none" else given
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def _acl(tokens: list[str]) -> list[str]:
    """ACL SETUSER for the default user with exactly ``tokens`` (none: no password at all)."""
    rules = ["on", "resetpass"] + ([f">{t}" for t in tokens] if tokens else ["nopass"]) + ["~*", "&*", "+@all"]
    return ["ACL", "SETUSER", "default", *rules]


def admin_call(port: int, admin_password: str, *cmd: str, timeout: float = 5) -> bytes:
    """One command as the control plane's user; its reply line (RuntimeError on an error reply)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        f = s.makefile("rb")
        reply = b""
        for parts in (("AUTH", ADMIN_USER, admin_password), cmd):
            s.sendall(_cmd(*parts))
            reply = f.readline()
            if reply.startswith(b"$"):
                n = int(reply[1:].strip())
                reply = f.read(n + 2)[:n] if n >= 0 else b""
            elif not reply.startswith((b"+", b":")):
                raise RuntimeError(f"redis refused {parts[0]} {parts[1] if len(parts) > 1 else ''}".strip())
        return reply


def node_answers(port: int, admin_password: str) -> bool:
    try:
        admin_call(port, admin_password, "PING", timeout=2)
        return True
    except (OSError, RuntimeError, ValueError):
        return False


# ------------------------------------------------------------------------------- redis.json


def read_cfg(d: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((d / REDIS_FILE).read_text()))
    except (OSError, ValueError):
        return None


def write_cfg(d: Path, cfg: dict[str, Any]) -> None:
    tmp = d / (REDIS_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    tmp.replace(d / REDIS_FILE)


# ------------------------------------------------------------------------------- the nodes


def _node_conf(d: Path, cid: str, port: int, tokens: list[str], admin_password: str, primary_port: int | None) -> Path:
    ndir = d / "redis" / cid
    ndir.mkdir(parents=True, exist_ok=True)
    conf = ndir / "redis.conf"
    default = " ".join(f">{t}" for t in tokens) if tokens else "nopass"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"port {port}\nbind {HOST}\ndaemonize no\nsave \"\"\nappendonly no\ndir {ndir}\n"
                f"user default on {default} ~* &* +@all\n"
                f"user {ADMIN_USER} on >{admin_password} ~* &* +@all\n"
                f"masteruser {ADMIN_USER}\nmasterauth {admin_password}\n"
                # a replica (a replaced node) syncs at once, not after the default 5 s batching delay
                "repl-diskless-sync-delay 0\n"
                + (f"replicaof {HOST} {primary_port}\n" if primary_port else ""))
    return conf


def set_replicaof(conf: Path, primary_port: int | None) -> None:
    """Point a stopped node's config at a new primary (None: it is the primary) before it starts."""
    lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith(("replicaof ", "slaveof "))]
    if primary_port:
        lines.append(f"replicaof {HOST} {primary_port}")
    fd = os.open(conf, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


def spawn_node(d: Path, cfg: dict[str, Any], cid: str) -> int:
    """Start node ``cid`` from its redis.conf on its port; its pid once it answers."""
    exe = _redis_bin()
    if exe is None:
        raise RuntimeError(NOT_INSTALLED)
    node = cfg["nodes"][cid]
    conf, log = d / "redis" / cid / "redis.conf", d / "redis" / f"{cid}.log"
    with open(log, "ab") as lf:
        proc = subprocess.Popen([exe, str(conf)], stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                start_new_session=True)
    deadline = time.monotonic() + 15
    while not node_answers(int(node["port"]), cfg["admin_password"]):
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server {cid} exited with {proc.returncode} at start (see {log})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server {cid} did not start within 15s (see {log})")
        time.sleep(0.05)
    node["pid"] = proc.pid
    return proc.pid


def wait_replicas_linked(cfg: dict[str, Any], timeout: float = 15) -> None:
    """Every replica that runs reports ``master_link_status:up`` (it follows the primary)."""
    deadline = time.monotonic() + timeout
    for cid, node in cfg["nodes"].items():
        if cid == cfg["primary"] or not pid_alive(node.get("pid")):
            continue
        while b"master_link_status:up" not in _info(int(node["port"]), cfg["admin_password"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis replica {cid} did not link to the primary within {timeout:g}s")
            time.sleep(0.05)


def _info(port: int, admin_password: str) -> bytes:
    try:
        return admin_call(port, admin_password, "INFO", "replication", timeout=2)
    except (OSError, RuntimeError, ValueError):
        return b""


def start_group(d: Path, cfg: dict[str, Any], tokens: list[str], node_ids: list[str]) -> None:
    """Fresh nodes (empty, as a new group's are): the first is primary, the others its replicas."""
    cfg["primary"] = node_ids[0]
    for cid in node_ids:
        old = cfg["nodes"].get(cid) or {}
        port = int(old["port"]) if old.get("port") and _port_free(int(old["port"])) else free_port()
        cfg["nodes"][cid] = {"port": port, "pid": None}
    primary_port = int(cfg["nodes"][node_ids[0]]["port"])
    for cid in node_ids:
        _node_conf(d, cid, int(cfg["nodes"][cid]["port"]), tokens, cfg["admin_password"],
                   None if cid == node_ids[0] else primary_port)
        spawn_node(d, cfg, cid)
    wait_replicas_linked(cfg)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


# ------------------------------------------------------------------------------- the endpoint


def spawn_endpoint(d: Path, cfg: dict[str, Any]) -> int:
    """The group's primary endpoint (redis_endpoint.py) on cfg['port']; its pid once it listens."""
    log = d / "redis" / "endpoint.log"
    with open(log, "ab") as lf:
        proc = subprocess.Popen([sys.executable, "-m", "recovery.local.redis_endpoint", "--state-dir", str(d),
                                 "--port", str(cfg["port"])], stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((HOST, int(cfg["port"])), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the cache's primary endpoint did not start (see {log})") from None
            time.sleep(0.05)
    cfg["endpoint_pid"] = proc.pid
    return proc.pid


# ------------------------------------------------------------------------------- the environment


def start_redis(d: Path, aws: dict[str, Any], outputs: dict[str, dict[str, Any]],
                say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Start the `local` stack's cache group (a primary, its replicas, the primary endpoint); its state entry.

    `aws` is the emulator's entry in the environment's state (endpoint, ca_bundle)."""
    if _redis_bin() is None:
        say(f"cache: {NOT_INSTALLED}")
        return {"running": False, "note": NOT_INSTALLED}
    out = outputs["local"]
    gid = out["cache_replication_group_id"]
    count = int((out.get("cache_settings") or {}).get("NumCacheClusters") or 2)
    say(f"starting redis-server x{count} (the cache group's primary and replica) and its primary endpoint")
    sm = admin_client("secretsmanager", out["region"], aws["endpoint"], aws.get("ca_bundle"))
    token = sm.get_secret_value(SecretId=out["cache_secret_arn"], VersionStage="AWSCURRENT")["SecretString"]
    (d / "redis").mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {"group_id": gid, "stack": "local", "host": HOST, "port": free_port(),
                           "admin_password": secrets.token_urlsafe(24), "nodes": {}, "primary": None}
    start_group(d, cfg, [token], [f"{gid}-{n:03d}" for n in range(1, count + 1)])
    write_cfg(d, cfg)  # before the endpoint: it reads which node is primary from here
    spawn_endpoint(d, cfg)
    write_cfg(d, cfg)
    out["cache_endpoint"], out["cache_port"] = HOST, cfg["port"]
    return {"running": True, "host": HOST, "port": cfg["port"], "group_id": gid, "stack": "local", "dir": str(d)}


def apply_auth_token(state_dir: Path, group_id: str, token: str | None, strategy: str) -> None:
    """The emulator's auth-token hook, on every node that runs: ROTATE keeps the previous token and
    adds the new one (ACL with two passwords), SET keeps only the new one, DELETE removes AUTH."""
    cfg = read_cfg(state_dir)
    if not cfg or cfg.get("group_id") != group_id:
        return  # no redis-server behind this group: recording the call is all there is
    current = cache_auth_tokens(group_id)  # before the extension applies this call
    if strategy == "ROTATE" and token:
        tokens = [t for t in current if t != token][-1:] + [token]
    elif strategy == "SET" and token:
        tokens = [token]
    else:
        tokens = []
    for node in cfg["nodes"].values():
        if not pid_alive(node.get("pid")):
            continue  # a lost node: it is replaced from a live one's config (redis_group.failover)
        admin_call(int(node["port"]), cfg["admin_password"], *_acl(tokens))
        # into redis.conf too: a restart (an outage's heal, a replaced node) must keep the tokens
        admin_call(int(node["port"]), cfg["admin_password"], "CONFIG", "REWRITE")


def kill_redis(entry: dict[str, Any]) -> bool:
    """SIGKILL the cache's redis-servers and its endpoint (a regional outage); True when one ran."""
    cfg = read_cfg(Path(entry["dir"])) if entry.get("dir") else None
    if not entry.get("running") or not cfg:
        return False
    pids = [n.get("pid") for n in cfg["nodes"].values()] + [cfg.get("endpoint_pid")]
    killed = [p for p in pids if pid_alive(p)]
    for pid in killed:
        os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(killed)


def restart_redis(d: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Start the nodes again from their redis.conf (primary first), then the endpoint (an outage's heal)."""
    cfg = read_cfg(d)
    if _redis_bin() is None or not entry.get("running") or not cfg:
        return entry
    order = [cfg["primary"]] + [c for c in cfg["nodes"] if c != cfg["primary"]]
    for cid in order:
        if not pid_alive(cfg["nodes"][cid].get("pid")):
            spawn_node(d, cfg, cid)
    if not pid_alive(cfg.get("endpoint_pid")):
        spawn_endpoint(d, cfg)
    write_cfg(d, cfg)
    return entry


def stop_redis(state: dict[str, Any]) -> list[str]:
    entry = state.get("redis") or {}
    cfg = read_cfg(Path(entry["dir"])) if entry.get("dir") else None
    pids = ([n.get("pid") for n in cfg["nodes"].values()] + [cfg.get("endpoint_pid")]) if cfg else [entry.get("pid")]
    running = [p for p in pids if pid_alive(p)]
    for pid in running:
        stop_pid(pid)
    return ["redis"] if running else []


def redis_status(state: dict[str, Any]) -> dict[str, Any]:
    r = state.get("redis") or {}
    if not r.get("running"):
        return {"running": False, "note": r.get("note", NOT_INSTALLED)}
    cfg = read_cfg(Path(r["dir"])) if r.get("dir") else None
    nodes = {cid: {"port": n["port"], "running": pid_alive(n.get("pid")),
                   "role": "primary" if cid == cfg["primary"] else "replica"}
             for cid, n in (cfg or {}).get("nodes", {}).items()}
    primary = nodes.get((cfg or {}).get("primary") or "", {})
    return {"running": bool(primary.get("running")) and pid_alive((cfg or {}).get("endpoint_pid")),
            "address": f"{r.get('host')}:{r.get('port')}", "group": r.get("group_id"), "nodes": nodes}
