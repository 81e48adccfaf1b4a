"""The local environment's AWS: moto in server mode, with our emulator extensions, as a daemon.

`recovery local up` starts this module as a detached process so the emulator outlives the
command, like the other local services. It writes `aws.json` (pid, endpoint) into the state
directory and serves until SIGTERM.

The extensions' hooks run here, in the emulator's process, because that is where moto's
backends live. They make control-plane calls act on the real local services:

- modify_db_cluster(MasterUserPassword=...) changes the real PostgreSQL role's password,
  using a separate maintenance superuser the way AWS's control plane has its own access.

The hooks read `hooks.json` from the state directory at call time, so `local up` can start
this daemon first and describe the services once they run.
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

HOOKS_FILE = "hooks.json"
AWS_FILE = "aws.json"


def _hooks(state_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / HOOKS_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def _set_master_password(state_dir: Path, cluster_id: str, password: str) -> None:
    """Apply a new master password to the PostgreSQL cluster that backs `cluster_id`."""
    import psycopg
    from psycopg import sql

    db = _hooks(state_dir).get("db_clusters", {}).get(cluster_id)
    if not db:
        return  # a cluster with no local backing: recording the call is all AWS would show
    with psycopg.connect(host=db["host"], port=db["port"], user=db["maint_user"], password=db["maint_password"],
                         dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(db["master_user"]), sql.Literal(password)))
    # The local node and explorer read their credential from this file, as real services would
    # from their config after a rotation's secret update: keep it current so they keep working.
    pgpass = db.get("pgpass")
    if pgpass:
        tmp = Path(pgpass + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{db['host']}:{db['port']}:*:{db['master_user']}:{password}\n")
        tmp.replace(pgpass)


def _register_health_probes(state_dir: Path) -> None:
    from recovery.local import moto_extensions as ext

    for hc_id, url in _hooks(state_dir).get("health_checks", {}).items():
        ext.set_health_probe(hc_id, url)


def serve(state_dir: Path) -> None:
    from recovery.local import moto_extensions as ext
    from recovery.local.moto_server import MotoServer

    ext.install()
    ext.configure(record_file=str(state_dir / "emulator-calls.jsonl"))
    ext.set_master_password_hook(lambda cluster, pw: _set_master_password(state_dir, cluster, pw))
    server = MotoServer().start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tmp = state_dir / (AWS_FILE + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "endpoint": server.endpoint, "started_at": time.time()}))
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
