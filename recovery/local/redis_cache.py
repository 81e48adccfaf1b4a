"""The local environment's cache: a real `redis-server` behind the primary stack's cache group.

`recovery local up` calls :func:`start_redis` after provisioning. It reads the group's auth token
from the cache secret (AWSCURRENT), starts redis-server on a free port with ACL users:

- ``default``: the auth token(s), what clients AUTH with, as with ElastiCache;
- ``xai_control_plane``: its own password, the control plane's access (like the PostgreSQL
  maintenance superuser), used by the emulator's auth-token hook.

It then points the `local` stack's ``cache_endpoint``/``cache_port`` outputs at it and writes
``redis.json`` (0600) in the state directory. The AWS emulator's hook
(:func:`apply_auth_token`, wired in aws_daemon.py) turns modify_replication_group into ACL
changes: ROTATE -> the default user accepts the previous and the new token (two passwords),
SET -> only the new one, DELETE -> no password.

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
NOT_INSTALLED = "redis-server is not installed (apt-get install redis-server): the cache group is not backed"


def _redis_bin() -> str | None:
    """redis-server's path; RECOVERY_REDIS_SERVER overrides it ('none': act as if not installed)."""
    given = os.environ.get("RECOVERY_REDIS_SERVER")
    if given:
        return None if given == "none" else given
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def _acl(admin_password: str, tokens: list[str]) -> list[str]:
    """ACL SETUSER for the default user with exactly ``tokens`` (none: no password at all)."""
    rules = ["on", "resetpass"] + ([f">{t}" for t in tokens] if tokens else ["nopass"]) + ["~*", "&*", "+@all"]
    return ["ACL", "SETUSER", "default", *rules]


def _admin_call(host: str, port: int, admin_password: str, *cmd: str) -> None:
    with socket.create_connection((host, port), timeout=5) as s:
        f = s.makefile("rb")
        for parts in (("AUTH", ADMIN_USER, admin_password), cmd):
            s.sendall(_cmd(*parts))
            line = f.readline()
            if not line.startswith(b"+"):
                raise RuntimeError(f"redis refused {parts[0]} {parts[1] if len(parts) > 1 else ''}".strip())


def start_redis(d: Path, aws: dict[str, Any], outputs: dict[str, dict[str, Any]],
                say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Start redis-server for the `local` stack's cache group; return its state entry.

    `aws` is the emulator's entry in the environment's state (endpoint, ca_bundle)."""
    exe = _redis_bin()
    if exe is None:
        say(f"cache: {NOT_INSTALLED}")
        return {"running": False, "note": NOT_INSTALLED}
    say("starting redis-server (the cache group's backing)")
    out = outputs["local"]
    sm = admin_client("secretsmanager", out["region"], aws["endpoint"], aws.get("ca_bundle"))
    token = sm.get_secret_value(SecretId=out["cache_secret_arn"], VersionStage="AWSCURRENT")["SecretString"]
    admin_password = secrets.token_urlsafe(24)
    port = free_port()
    rdir = d / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    conf = rdir / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"port {port}\nbind 127.0.0.1\ndaemonize no\nsave \"\"\nappendonly no\ndir {rdir}\n"
                f"user default on >{token} ~* &* +@all\n"
                f"user {ADMIN_USER} on >{admin_password} ~* &* +@all\n")
    proc = _spawn_and_wait(exe, conf, d / "redis.log", port, admin_password)
    entry = {"running": True, "pid": proc.pid, "host": "127.0.0.1", "port": port,
             "group_id": out["cache_replication_group_id"], "stack": "local"}
    fd = os.open(d / REDIS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({**entry, "admin_password": admin_password}, f)
    out["cache_endpoint"], out["cache_port"] = "127.0.0.1", port
    return entry


def apply_auth_token(state_dir: Path, group_id: str, token: str | None, strategy: str) -> None:
    """The emulator's auth-token hook: ROTATE keeps the previous token and adds the new one
    (ACL with two passwords), SET keeps only the new one, DELETE removes AUTH."""
    try:
        cfg = json.loads((state_dir / REDIS_FILE).read_text())
    except (OSError, ValueError):
        return  # no redis-server behind this environment: recording the call is all there is
    if cfg.get("group_id") != group_id:
        return
    current = cache_auth_tokens(group_id)  # before the extension applies this call
    if strategy == "ROTATE" and token:
        tokens = [t for t in current if t != token][-1:] + [token]
    elif strategy == "SET" and token:
        tokens = [token]
    else:
        tokens = []
    _admin_call(cfg["host"], int(cfg["port"]), cfg["admin_password"], *_acl(cfg["admin_password"], tokens))
    # into redis.conf too: a restart after a regional outage (restart_redis) must keep the tokens
    _admin_call(cfg["host"], int(cfg["port"]), cfg["admin_password"], "CONFIG", "REWRITE")


def _spawn_and_wait(exe: str, conf: Path, log: Path, port: int, admin_password: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as lf:
        proc = subprocess.Popen([exe, str(conf)], stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode} at start (see {log})")
        try:
            _admin_call("127.0.0.1", port, admin_password, "PING")
            return proc
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start within 15s (see {log})") from None
            time.sleep(0.05)


def kill_redis(entry: dict[str, Any]) -> bool:
    """SIGKILL the cache's redis-server (a regional outage); True when it was running."""
    pid = entry.get("pid")
    if not entry.get("running") or not pid_alive(pid):
        return False
    os.kill(int(str(pid)), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def restart_redis(d: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Start redis-server again from its redis.conf, on its port (the outage's heal); the new entry."""
    exe = _redis_bin()
    if exe is None or not entry.get("running"):
        return entry
    cfg = json.loads((d / REDIS_FILE).read_text())
    proc = _spawn_and_wait(exe, d / "redis" / "redis.conf", d / "redis.log", int(cfg["port"]), cfg["admin_password"])
    cfg["pid"] = proc.pid
    fd = os.open(d / REDIS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    return {**entry, "pid": proc.pid}


def stop_redis(state: dict[str, Any]) -> list[str]:
    pid = (state.get("redis") or {}).get("pid")
    if pid_alive(pid):
        stop_pid(pid)
        return ["redis"]
    return []


def redis_status(state: dict[str, Any]) -> dict[str, Any]:
    r = state.get("redis") or {}
    if not r.get("running"):
        return {"running": False, "note": r.get("note", NOT_INSTALLED)}
    return {"running": pid_alive(r.get("pid")), "address": f"{r.get('host')}:{r.get('port')}", "group": r.get("group_id")}
