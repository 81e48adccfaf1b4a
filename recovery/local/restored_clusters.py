"""Real PostgreSQL servers behind the clusters that `restore pitr` and `restore snapshot` create.

AWS: RestoreDBClusterToPointInTime makes a new cluster whose storage holds the source's data as of
RestoreToTime; RestoreDBClusterFromSnapshot, as of the snapshot's creation. The new cluster answers
at an endpoint of its own, on the port it was given (the source's, here: new_cluster.placement).

Locally the primary site's PostgreSQL is run the way a PostgreSQL point-in-time recovery is:

- it archives every WAL segment (``archive_command`` into ``<pg base>/wal-archive``), and
- ``local up`` takes a base backup (``<pg base>/pitr-base``) before the program is deployed, so
  the emulated cluster's whole life lies after it (its EarliestRestorableTime).

:func:`materialise` (the emulator's restore hook, recovery/local/emulator/rds_restore_backing.py)
then makes the new cluster real: it has the source write one commit and switch WAL segments (Aurora's
storage holds every change up to "now"; here the open segment must reach the archive), copies the base
into ``<pg base>/restored/<cluster>``, and starts it with ``recovery_target_time`` = the restore time,
``restore_command`` from the archive and ``recovery_target_action = promote``. A snapshot is restored
the same way, to its creation time: the server holds what the source held then, master password
included (a rotation since is not in it, as on AWS).

Each restored server listens on a loopback address of its own (127.0.0.2, .3, ...) on the source's
port, as a new cluster has its own host name and the source's port. Only the primary site's cluster
has an archive: a restore of the DR cluster, or of the primary's after a failback rebuilt it, stays
the emulator's record only (the hook answers None and the cutover's SQL check says it cannot connect).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from recovery.local import dr_site
from recovery.local.paths import HOOKS_FILE, read_hooks, write_json
from recovery.local.postgres_cluster import FAST_OPTS, pg_bin

ARCHIVE, BASE, RESTORED = "wal-archive", "pitr-base", "restored"
RESTORED_FILE = "restored-clusters.json"  # in the state directory: what `local down` stops


def _chown(path: Path, run_as: str | None) -> None:
    if run_as:
        pw = pwd.getpwnam(run_as)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def archive_opts(pg_base: Path, run_as: str | None) -> str:
    """The primary server's archiving options; makes the archive directory (owned by the server's user)."""
    archive = pg_base / ARCHIVE
    archive.mkdir(parents=True, exist_ok=True)
    _chown(pg_base, run_as)
    _chown(archive, run_as)
    return f"-c archive_mode=on -c archive_command='test ! -f {archive}/%f && cp %p {archive}/%f'"


def take_base(site: dict[str, Any]) -> dict[str, Any]:
    """A base backup of the running primary (as the control plane's superuser); the ``pitr`` entry
    that hooks.json carries for it."""
    base = Path(site["base"]) / BASE
    shutil.rmtree(base, ignore_errors=True)
    user, password = site["maint_user"], site["maint_password"]
    dr_site._run(site, pg_bin("pg_basebackup"), "-h", site["host"], "-p", str(site["port"]), "-U", user,
                 "-D", str(base), "-X", "stream", "--checkpoint=fast", "--no-sync", env={"PGPASSWORD": password})
    return {"base": str(base), "archive": str(Path(site["base"]) / ARCHIVE),
            "base_time": datetime.now(timezone.utc).isoformat()}


def renew_base(state_dir: Path, cluster_id: str) -> None:
    """After ``cluster_id``'s server was promoted (a failback): a new base backup on its new timeline,
    as Aurora's continuous backup goes on after a failover. The history before it cannot be replayed
    any more (the promoted DR site's WAL is not in this archive), so restores to earlier times stay
    records (``materialise`` checks the timeline)."""
    hooks = read_hooks(state_dir)
    site = dr_site.sites_from_hooks(hooks).get(cluster_id)
    if not site or not site.get("pitr"):
        return
    hooks["pg_sites"][cluster_id]["pitr"] = take_base(site)
    write_json(state_dir / HOOKS_FILE, hooks)


def _flush_archive(site: dict[str, Any], timeout: float = 30.0) -> None:
    """One commit after the target time (recovery stops at the first commit past it) and a segment
    switch, then wait until the switched segment is in the archive."""
    with dr_site.connect(site) as conn:
        conn.execute("SELECT txid_current()")
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        wanted = str(row[0])
        deadline = time.monotonic() + timeout
        while True:
            done = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            if done and done[0] and str(done[0]) >= wanted:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"WAL segment {wanted} was not archived within {timeout:g}s")
            time.sleep(0.1)


def _archive_continues(site: dict[str, Any], base: Path) -> bool:
    """Whether the source still archives the history that starts at the base: archiving on, and the
    same timeline. A failback rebuilds the primary from the promoted DR site (a new timeline whose
    WAL is not in this archive); a restore past that cannot be replayed, so it stays a record."""
    label = (base / "backup_label").read_text() if (base / "backup_label").exists() else ""
    started = next((ln.split(":", 1)[1].strip() for ln in label.splitlines() if ln.startswith("START TIMELINE:")), "1")
    with dr_site.connect(site) as conn:
        mode = conn.execute("SHOW archive_mode").fetchone()
        tli = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    return bool(mode and mode[0] == "on" and tli and str(tli[0]) == started)


def _address(port: int, taken: set[str]) -> str:
    """A loopback address of its own on which ``port`` is free."""
    for n in range(2, 255):
        host = f"127.0.0.{n}"
        if host in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return host
    raise RuntimeError(f"no loopback address has port {port} free")


def _recovery_config(datadir: Path, archive: str, target: datetime, run_as: str | None) -> None:
    with open(datadir / "postgresql.auto.conf", "a") as f:
        f.write(f"restore_command = 'cp {archive}/%f %p'\n"
                f"recovery_target_time = '{target.astimezone(timezone.utc).isoformat()}'\n"
                "recovery_target_action = 'promote'\n")
    (datadir / "recovery.signal").write_text("")
    _chown(datadir / "recovery.signal", run_as)


def _wait_promoted(site: dict[str, Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while dr_site.in_recovery(site) is not False:
        if time.monotonic() > deadline:
            raise RuntimeError(f"restored server {site['name']} did not finish recovery within {timeout:g}s")
        time.sleep(0.2)


def restored(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads((state_dir / RESTORED_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def materialise(state_dir: Path, source_id: str, new_id: str, target: datetime) -> tuple[str, int] | None:
    """Start the server that backs ``new_id``: ``source_id``'s data as of ``target``. Returns its
    (host, port), or None when the source has no archive (module docstring)."""
    hooks = read_hooks(state_dir)
    source = dr_site.sites_from_hooks(hooks).get(source_id)
    pitr = (source or {}).get("pitr")
    if source is None or not pitr or target < datetime.fromisoformat(pitr["base_time"]):
        return None
    if not _archive_continues(source, Path(pitr["base"])):
        return None
    known = restored(state_dir)
    if new_id in known:  # the same restore asked again (a retried request): the same server
        return known[new_id]["host"], int(known[new_id]["port"])
    _flush_archive(source)
    port = int(source["port"])
    host = _address(port, {s["host"] for s in known.values()})
    base = Path(source["base"]) / RESTORED / new_id
    datadir = base / "data"
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(pitr["base"], datadir, symlinks=True)
    base.mkdir(exist_ok=True)
    for p in (base.parent, base, *datadir.rglob("*"), datadir):
        _chown(p, source.get("run_as"))
    os.chmod(datadir, 0o700)
    with open(datadir / "pg_hba.conf", "a") as f:  # initdb allowed 127.0.0.1 only; this host is another
        f.write("host all all 127.0.0.0/8 scram-sha-256\n")
    _recovery_config(datadir, pitr["archive"], target, source.get("run_as"))
    site = {**source, "name": new_id, "base": str(base), "datadir": str(datadir), "host": host, "port": port}
    known[new_id] = {k: site[k] for k in ("name", "base", "datadir", "host", "port", "run_as")}
    write_json(state_dir / RESTORED_FILE, known)  # before the start: `local down` stops a half-started one
    sock = base / "sock"
    sock.mkdir(exist_ok=True)
    _chown(sock, source.get("run_as"))
    dr_site._run(site, pg_bin("pg_ctl"), "-D", str(datadir), "-l", str(base / "log"), "-w", "-t", "60", "-o",
                 f"-p {port} -k {sock} -c listen_addresses={host} {FAST_OPTS}", "start")
    _wait_promoted(site)
    return host, port


def stop_all(state_dir: Path) -> list[str]:
    """Stop every restored server (`local down`); their directories go with the primary's."""
    stopped = []
    for name, site in restored(state_dir).items():
        if Path(site["datadir"], "postmaster.pid").exists():
            dr_site._run(site, pg_bin("pg_ctl"), "-D", site["datadir"], "-m", "immediate", "-w", "stop")
            stopped.append(f"restored cluster {name}")
    return stopped


__all__ = ["archive_opts", "take_base", "materialise", "restored", "stop_all"]
