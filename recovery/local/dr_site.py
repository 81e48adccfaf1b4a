"""The local environment's DR site: a real hot standby and a second simulated node.

`recovery local up` calls :func:`start` once the primary PostgreSQL and node run:

- **PostgreSQL hot standby** of the primary, made with ``pg_basebackup -R`` (streaming
  replication, its own port and directory). It is the ``local-dr`` stack's database
  (the ``xai-local-db-dr`` cluster in the emulator).
- **DR node** (``xai-node-dr``): its own data directory, which starts EMPTY. The node reports
  ``no-chain-data`` until a restore from the DR bucket (where replication put the primary's
  chain backups) gives it a chain, which is what ``recovery failover`` does. It indexes into the
  standby and runs with the environment's mine interval, but its writer gate (node_sim) lets it
  mine only while its database accepts writes: not before a promotion.

The emulator's global-cluster failover/switchover runs :func:`promote` (installed as the
promotion hook in ``aws_daemon.py``): it fences the old writer - ``pg_ctl stop -m immediate``
for an unplanned failover, ``default_transaction_read_only`` plus a wait until the standby has
replayed everything for a planned switchover - and then runs ``pg_promote()`` on the target.
After a switchover the old writer is rebuilt as a standby of the new one (Aurora makes the old
primary a secondary); after a failover it stays stopped, the way a lost region does, and is
rebuilt as a standby when a later failback targets it.

Sites are described by plain dicts (kept in ``state.json`` and ``hooks.json``):
``{"base", "datadir", "host", "port", "user", "password", "dbname", "run_as"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from recovery.local.node_process import NodeProcess, start_node
from recovery.local.paths import local_dir, read_hooks
from recovery.local.postgres_cluster import FAST_OPTS, free_port, pg_bin
from recovery.processes import pid_alive

PG_OPTS = f"-c listen_addresses=127.0.0.1 {FAST_OPTS} -c hot_standby=on -c wal_keep_size=256MB"


class PromotionError(Exception):
    """The local promotion could not be carried out (the emulator answers a fault)."""


def _bin(name: str) -> str:
    return pg_bin(name)


def _run(site: dict[str, Any], *argv: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, user=site.get("run_as"),
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _control(site: dict[str, Any]) -> tuple[str, str]:
    """The emulated control plane's own superuser (never rotated), as AWS's control plane has its own access;
    the master user's password belongs to the stack (the program generates it, `rotate` changes it)."""
    return site.get("maint_user") or site["user"], site.get("maint_password") or site["password"]


def connect(site: dict[str, Any], dbname: str = "postgres", timeout: int = 5) -> psycopg.Connection[Any]:
    user, password = _control(site)
    return psycopg.connect(host=site["host"], port=site["port"], user=user, password=password,
                           dbname=dbname, autocommit=True, connect_timeout=timeout)


def running(site: dict[str, Any]) -> bool:
    return Path(site["datadir"], "postmaster.pid").exists()


def in_recovery(site: dict[str, Any]) -> bool | None:
    """True for a standby, False for a writer, None when it does not answer."""
    try:
        with connect(site, timeout=3) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return None


FENCED_MARKER = "xai-fenced"  # in a data directory started fenced (start_fenced)


def fenced(site: dict[str, Any]) -> bool:
    """Started fenced by a heal (an old writer back after a failover): in recovery, no upstream."""
    return Path(site["datadir"], FENCED_MARKER).exists()


def start_fenced(site: dict[str, Any]) -> None:
    """Start an old writer FENCED, as Aurora brings an old primary back after an unplanned global
    failover: in recovery (``standby.signal``) with no upstream, so it accepts no write and keeps
    its data as it was (the runbooks count the blocks it wrote after the last replicated point).
    Only a rebuild (``rejoin``, or a promotion targeting it) makes it a standby again."""
    datadir = Path(site["datadir"])
    auto = datadir / "postgresql.auto.conf"
    if auto.exists():  # an upstream left by an earlier rebuild would start streaming and overwrite
        auto.write_text("".join(line for line in auto.read_text().splitlines(keepends=True)
                                if not line.lstrip().startswith("primary_conninfo")))
    for name in ("standby.signal", FENCED_MARKER):
        (datadir / name).write_text("")
        if site.get("run_as"):
            pw = pwd.getpwnam(site["run_as"])
            os.chown(datadir / name, pw.pw_uid, pw.pw_gid)
    _pg_start(site)
    wait_ready(site)


def streaming_from(site: dict[str, Any], writer: dict[str, Any]) -> bool:
    """True when ``site`` is a standby whose WAL receiver streams from ``writer``."""
    try:
        with connect(site, timeout=3) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), (SELECT sender_port FROM pg_stat_wal_receiver"
                               " WHERE status = 'streaming')").fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0] and row[1] == int(writer["port"]))


def keep_diverged(site: dict[str, Any]) -> Path | None:
    """Before a rebuild discards a data directory that held writes of its own (a fenced or stopped old
    writer: no ``standby.signal``, or the fenced marker), rename it ``<datadir>.diverged-<UTC stamp>``.
    This stands for Aurora's pre-rejoin snapshot: nothing the old writer kept is removed."""
    datadir = Path(site["datadir"])
    if not datadir.is_dir() or ((datadir / "standby.signal").exists() and not fenced(site)):
        return None
    kept = datadir.with_name(f"{datadir.name}.diverged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    n = 1
    while kept.exists():
        kept = kept.with_name(f"{kept.name.split('+')[0]}+{n}")
        n += 1
    datadir.rename(kept)
    return kept


def _basebackup(site: dict[str, Any], source: dict[str, Any], keep: bool = False) -> None:
    datadir = Path(site["datadir"])
    if keep:
        keep_diverged(site)
    if datadir.exists():
        shutil.rmtree(datadir)
    user, password = _control(source)
    _run(site, _bin("pg_basebackup"), "-h", source["host"], "-p", str(source["port"]), "-U", user,
         "-D", str(datadir), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
         env={"PGPASSWORD": password})
    # pg_basebackup -R left primary_conninfo (with the password) in postgresql.auto.conf, mode 0600.
    # Name this standby so pg_stat_replication on the writer shows which site it is.
    conf = datadir / "postgresql.auto.conf"
    text = conf.read_text()
    text = text.replace("primary_conninfo = '", f"primary_conninfo = 'application_name={site['name']} ", 1)
    conf.write_text(text)


def _pg_start(site: dict[str, Any]) -> None:
    Path(site["base"], "sock").mkdir(exist_ok=True)
    if site.get("run_as"):
        pw = pwd.getpwnam(site["run_as"])
        os.chown(Path(site["base"], "sock"), pw.pw_uid, pw.pw_gid)
    opts = f"-p {site['port']} -k {Path(site['base'], 'sock')} {PG_OPTS} {site.get('extra_opts', '')}"
    _run(site, _bin("pg_ctl"), "-D", site["datadir"], "-o", opts, "-l", str(Path(site["base"], "log")),
         "-w", "-t", "60", "start")


def pg_stop(site: dict[str, Any], mode: str = "fast") -> bool:
    if not running(site):
        return False
    subprocess.run([_bin("pg_ctl"), "-D", site["datadir"], "-m", mode, "-w", "stop"], capture_output=True,
                   user=site.get("run_as"), timeout=60)
    return True


def start_standby(state_dir: Path, primary: dict[str, Any]) -> dict[str, Any]:
    """A hot standby of ``primary`` on a free port; returns its site dict."""
    run_as = primary.get("run_as")
    # As root the server runs as `postgres`, which cannot enter a private directory such as
    # /root/...: give it a directory of its own under the system temp dir (as environment.py does).
    base = Path(tempfile.mkdtemp(prefix="xai-local-pg-dr-")) if run_as else state_dir / "pg-dr"
    base.mkdir(parents=True, exist_ok=True)
    if run_as:
        os.chmod(base, 0o755)
        pw = pwd.getpwnam(run_as)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    site = {"name": "xai-local-db-dr", "base": str(base), "datadir": str(base / "data"), "host": primary["host"],
            "port": free_port(), "user": primary["user"], "password": primary["password"],
            "maint_user": primary.get("maint_user"), "maint_password": primary.get("maint_password"),
            "dbname": primary["dbname"], "run_as": run_as}
    _basebackup(site, primary)
    _pg_start(site)
    wait_ready(site)
    return site


def wait_ready(site: dict[str, Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if in_recovery(site) is not None:
            return
        time.sleep(0.1)
    raise PromotionError(f"PostgreSQL on port {site['port']} did not answer within {timeout:g}s")


def rebuild_as_standby(site: dict[str, Any], source: dict[str, Any], keep: bool = True) -> None:
    """Make ``site`` a fresh standby of ``source`` (Aurora's re-seeding). Its old data directory is
    kept as ``.diverged-<stamp>`` when it may hold writes of its own (``keep_diverged``); ``keep=False``
    only where it provably holds none (a switchover's old writer, fully replayed before promotion)."""
    pg_stop(site, "immediate")
    _basebackup(site, source, keep=keep)
    _pg_start(site)
    wait_ready(site)


def _lsn_caught_up(standby: dict[str, Any], lsn: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect(standby) as conn:
            row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", (lsn,)).fetchone()
        if row and row[0] is not None and float(row[0]) <= 0:
            return
        time.sleep(0.05)
    raise PromotionError(f"the standby did not replay up to {lsn} within {timeout:g}s")


def promote(sites: dict[str, dict[str, Any]], target_id: str, switchover: bool) -> dict[str, Any]:
    """Fence the current writer and promote ``target_id``'s PostgreSQL. Raises PromotionError."""
    new = sites[target_id]
    writers = [(cid, s) for cid, s in sites.items() if cid != target_id and running(s) and in_recovery(s) is False]
    old_id, old = writers[0] if writers else (None, None)
    done: dict[str, Any] = {"target": target_id, "fenced": old_id, "rebuilt": []}
    if in_recovery(new) is not True or fenced(new):
        # Not a standby (a fenced or stopped old writer): re-seed it from the writer first.
        if old is None:
            raise PromotionError(f"{target_id} is not a standby and no writer is reachable to re-seed it from")
        rebuild_as_standby(new, old)
        done["rebuilt"].append(target_id)
    if switchover:
        if old is None:
            raise PromotionError("a switchover needs a reachable writer to fence; use an unplanned failover")
        with connect(old) as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
            time.sleep(0.2)  # backends pick the setting up at their next command
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        _lsn_caught_up(new, str(row[0]))
        done["fence"] = "read-only"
    elif old is not None:
        pg_stop(old, "immediate")
        done["fence"] = "stopped"
    with connect(new) as conn:
        row = conn.execute("SELECT pg_promote(true, 60)").fetchone()
    if not (row and row[0]):
        raise PromotionError(f"pg_promote() on {target_id} did not finish within 60s")
    if switchover and old is not None:
        # The old writer becomes a secondary of the new one, as Aurora's switchover leaves it.
        rebuild_as_standby(old, new, keep=False)
        done["rebuilt"].append(old_id)
    return done


def sites_from_hooks(hooks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``pg_sites`` from hooks.json, connecting as the maintenance superuser (the control plane's
    own access, which a rotation of the master password never changes)."""
    clusters = hooks.get("db_clusters", {})
    out = {}
    for cid, site in hooks.get("pg_sites", {}).items():
        db = clusters.get(cid) or {}
        if db.get("maint_user") and db.get("maint_password"):
            site = {**site, "user": db["maint_user"], "password": db["maint_password"]}
        out[cid] = site
    return out


# ------------------------------------------------------------------------------ the DR node


def start_dr_node(state_dir: Path, standby: dict[str, Any], mine_interval: float) -> dict[str, Any]:
    """The DR site's simulated node: own (empty) data dir, indexing into the standby.

    It runs with the environment's mine interval: its writer gate (node_sim) keeps it from mining
    while the standby is in recovery, so after a promotion it mines and the old writer's node stops."""
    pgpass = state_dir / "pgpass-dr"
    fd = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{standby['host']}:{standby['port']}:*:{standby['user']}:{standby['password']}\n")
    run_dir = state_dir / "node-dr"
    data_dir = run_dir / "var" / "lib" / "xai" / "blockchain"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    pg_dsn = f"host={standby['host']} port={standby['port']} user={standby['user']} dbname={standby['dbname']} passfile={pgpass}"
    node = start_node(data_dir, port, pg_dsn, init=False, mine_interval=mine_interval, name="xai-node-dr",
                      run_dir=run_dir, log_path=state_dir / "node-dr.log")
    return {"pid": node.pid, "url": node.url, "port": port, "data_dir": str(data_dir), "run_dir": str(run_dir),
            "name": "xai-node-dr", "pg_dsn": pg_dsn, "mine_interval": mine_interval, "pgpass": str(pgpass)}


def services_config(state_dir: Path, node: dict[str, Any]) -> Path:
    """Service control for the DR node (what systemctl is on a DR host)."""
    py = sys.executable
    base = [py, "-m", "recovery.local.node_process"]
    start = [*base, "start", "--data-dir", node["data_dir"], "--run-dir", node["run_dir"], "--name", node["name"],
             "--port", str(node["port"]), "--pg-dsn", node["pg_dsn"], "--mine-interval", str(node["mine_interval"])]
    stop = [*base, "stop", "--run-dir", node["run_dir"], "--name", node["name"]]
    status = [*base, "status", "--run-dir", node["run_dir"], "--name", node["name"]]
    path = state_dir / "services-dr.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"timeout_seconds": 60, "services": [
            {"name": "xai-node", "stop": stop, "start": start, "status": status}]}, f, indent=2)
    return path


def start(state_dir: Path, primary_pg: dict[str, Any], mine_interval: float,
          say: Any = lambda _m: None) -> dict[str, Any]:
    """Start the DR site; returns ``{"postgres": site, "node": node, "services_config": path}``."""
    say("starting the DR site: PostgreSQL hot standby (pg_basebackup -R)")
    primary = {**primary_pg, "name": "xai-local-db-primary"}
    standby = start_standby(state_dir, primary)
    try:
        say("starting the DR site: simulated XAI node (no chain data until restored from the DR bucket)")
        node = start_dr_node(state_dir, standby, mine_interval)
        return {"postgres": standby, "node": node, "services_config": str(services_config(state_dir, node))}
    except BaseException:
        stop({"postgres": standby, "node": {"run_dir": str(state_dir / "node-dr"), "name": "xai-node-dr"}})
        raise


def stop(state: dict[str, Any]) -> list[str]:
    """Stop the DR node and standby (safe to repeat); returns what was stopped."""
    stopped = []
    node = state.get("node") or {}
    if node.get("run_dir"):
        try:
            n = NodeProcess.attach(node["run_dir"], node.get("name", "xai-node-dr"))
            if n.is_running():
                n.stop()
                stopped.append("dr-node")
        except (OSError, ValueError, IndexError):
            pass
    pg = state.get("postgres") or {}
    if pg.get("datadir") and pg_stop(pg):
        stopped.append("dr-postgres")
    if pg.get("base") and pg.get("run_as"):
        shutil.rmtree(pg["base"], ignore_errors=True)
    return stopped


def status(state: dict[str, Any], primary: dict[str, Any] | None = None) -> dict[str, Any]:
    """The DR site's state; ``primary`` (the primary's state) lends the maintenance credential,
    which rotations of the master password do not change."""
    pg = dict(state.get("postgres") or {})
    if primary and primary.get("maint_user") and primary.get("maint_password"):
        pg.update(user=primary["maint_user"], password=primary["maint_password"])
    node = state.get("node") or {}
    node_pid = None
    try:
        node_pid = int((Path(node["run_dir"]) / f"{node['name']}.pid").read_text().split()[0])
    except (KeyError, OSError, ValueError, IndexError):
        pass
    role = site_role(pg) if pg else None
    return {
        "postgres": {"port": pg.get("port"), "running": bool(pg) and running(pg), "role": role},
        "node": {"url": node.get("url"), "data_dir": node.get("data_dir"), "pid": node_pid,
                 "running": pid_alive(node_pid)},
    }


def site_role(site: dict[str, Any]) -> str | None:
    """"writer", "standby" or "fenced" (in recovery, started fenced); None when stopped or silent."""
    if not running(site):
        return None
    rec = in_recovery(site)
    if rec is None:
        return None
    return ("fenced" if fenced(site) else "standby") if rec else "writer"


def rejoin(state_dir: Path) -> dict[str, Any]:
    """"The old region is back": re-seed every site that is neither the writer nor a standby streaming
    from it (stopped by an unplanned failover, or started fenced by `recovery local outage --heal`)
    as a standby of the current writer. A fenced or old writer's data directory is kept first as
    ``<datadir>.diverged-<stamp>`` (``keep_diverged``: Aurora's pre-rejoin snapshot).

    Aurora does this itself for a global database's old primary once its region recovers;
    `recovery failback` refuses, and prints this command, until it has happened.
    """
    sites = sites_from_hooks(read_hooks(state_dir))
    writers = [s for s in sites.values() if running(s) and in_recovery(s) is False]
    if len(writers) != 1:
        raise PromotionError(f"expected one writer to re-seed from, found {len(writers)}")
    writer = writers[0]
    done = []
    for cid, s in sites.items():
        if s is writer:
            continue
        if not (running(s) and streaming_from(s, writer)):
            rebuild_as_standby(s, writer)
            done.append(cid)
    return {"writer": writer["name"], "reseeded": done}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Local DR site maintenance")
    ap.add_argument("action", choices=["rejoin"])
    ap.add_argument("--dir", default=None, help="local environment directory [RECOVERY_LOCAL_DIR]")
    a = ap.parse_args()
    try:
        print(json.dumps(rejoin(local_dir(a.dir))))
    except PromotionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(16)
