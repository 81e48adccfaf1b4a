"""The primary site's explorer and monitoring in the local environment (recovery/local/explorer.py,
recovery/local/monitoring.py): where their state lives, how systemctl's part is played for them,
and starting and stopping them with the environment.

- explorer:   state in ``<dir>/explorer/`` (configuration + cache), a service ``xai-explorer``
              started after ``xai-node`` (the plan's order), stopped and started with it by restores;
- monitoring: configuration in ``<dir>/monitoring/etc/``, scraping ``<dir>/monitoring/textfile/xai_dr.prom``
              (what `recovery metrics --textfile` writes there); a service ``xai-monitoring`` that
              restores of data leave running (``stop_for_restores: false``).

Both state directories are what `recovery backup config` keeps for the site and `restore config`
brings back; each service entry names them (``config``) and its health URL (``health``), so
`status`, `restore config` and the drills read them from the services config like the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from recovery.local import explorer, monitoring, service_process

EXPLORER, MONITORING = "xai-explorer", "xai-monitoring"


def paths(d: Path) -> dict[str, Path]:
    return {"explorer": d / "explorer", "monitoring": d / "monitoring" / "etc",
            "textfile": d / "monitoring" / "textfile" / "xai_dr.prom", "run": d / "run"}


def _control(module: str, name: str, run: Path, verb: str, *serve: str) -> list[str]:
    return [sys.executable, "-m", f"recovery.local.{module}", verb, "--run-dir", str(run), "--name", name,
            *(serve if verb == "start" else ())]


def service_entries(d: Path, ports: dict[str, int]) -> list[dict[str, Any]]:
    """The services-config entries for both (ports fixed at `up`, so a restart keeps its URL)."""
    p = paths(d)
    ex = ("--data-dir", str(p["explorer"]), "--port", str(ports["explorer"]))
    mon = ("--config-dir", str(p["monitoring"]), "--port", str(ports["monitoring"]))
    return [
        {"name": EXPLORER, **{v: _control("explorer", EXPLORER, p["run"], v, *ex) for v in ("start", "stop", "status")},
         "health": f"http://127.0.0.1:{ports['explorer']}{explorer.HEALTH}", "config": [str(p["explorer"])]},
        {"name": MONITORING,
         **{v: _control("monitoring", MONITORING, p["run"], v, *mon) for v in ("start", "stop", "status")},
         "health": f"http://127.0.0.1:{ports['monitoring']}/-/ready", "config": [str(p["monitoring"])],
         "stop_for_restores": False},
    ]


def start(d: Path, pg_dsn: str, free_port: Any, say: Any, pg_service_file: str | None = None) -> dict[str, Any]:
    """Write both configurations, start both (the explorer after the node, which already runs)."""
    p = paths(d)
    explorer.write_config(p["explorer"], pg_dsn, pg_service_file=pg_service_file)
    p["textfile"].parent.mkdir(parents=True, exist_ok=True)
    monitoring.write_config(p["monitoring"], p["textfile"])
    ports = {"explorer": free_port(), "monitoring": free_port()}
    say("starting the block explorer and the monitoring")
    for entry in service_entries(d, ports):
        module = "explorer" if entry["name"] == EXPLORER else "monitoring"
        serve = entry["start"][entry["start"].index("--name") + 2:]
        service_process.start(module, entry["name"], p["run"], serve, "/-/healthy" if module == "monitoring"
                              else explorer.HEALTH, p["run"] / f"{entry['name']}.log")
    return {"ports": ports, "run_dir": str(p["run"]), "textfile": str(p["textfile"]),
            "explorer_dir": str(p["explorer"]), "monitoring_dir": str(p["monitoring"])}


def stop(entry: dict[str, Any] | None) -> list[str]:
    if not entry:
        return []
    stopped = []
    for name in (EXPLORER, MONITORING):
        if service_process.state(Path(entry["run_dir"]), name)["running"]:
            service_process.stop(Path(entry["run_dir"]), name)
            stopped.append(name.removeprefix("xai-"))
    return stopped


def status(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if not entry:
        return None
    run = Path(entry["run_dir"])
    return {name.removeprefix("xai-"): service_process.state(run, name) for name in (EXPLORER, MONITORING)}


def kill(entry: dict[str, Any], name: str) -> int | None:
    """SIGKILL one of them (the drills' damage); returns the pid killed, None when it was not running."""
    import os
    import signal

    st = service_process.state(Path(entry["run_dir"]), name)
    if not st["running"]:
        return None
    os.kill(st["pid"], signal.SIGKILL)
    return int(st["pid"])
