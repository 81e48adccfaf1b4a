"""The local monitoring: a stand-in with Prometheus's shape, as a real process.

    python -m recovery.local.monitoring start --run-dir R --name xai-monitoring --config-dir C [--port P]
    python -m recovery.local.monitoring stop|status --run-dir R --name xai-monitoring

Its configuration is a Prometheus configuration directory, which is what `backup config` keeps
and `restore config` brings back:

- ``prometheus.yml``    ``scrape_configs`` (each job's ``static_configs`` targets are textfiles, the
                        ``*.prom`` that `recovery metrics --textfile` writes, as node_exporter's
                        textfile collector would expose them) and ``rule_files`` (globs);
- ``rules/*.yml``       alert rule groups (``groups: [{name, rules: [{alert, expr, for?}]}]``);
- ``dashboards/*.json`` dashboards (each needs a ``title``).

The HTTP API is Prometheus's where it overlaps: ``/-/healthy`` (the process runs), ``/-/ready``
(503 until a configuration is loaded), ``POST /-/reload`` and SIGHUP (read the directory again; a
broken configuration keeps the last good one loaded and is reported), ``/api/v1/rules``,
``/api/v1/targets`` (each textfile scraped every ``scrape_interval``: up when it parses).
Deleting the directory and restarting leaves it running but not ready: the damage a check sees.

Not Prometheus: no PromQL, rules are loaded and counted, not evaluated. Prometheus itself is in
Debian's packages; this stand-in keeps `make test` free of a second daemon to install.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from recovery.local.service_process import control, serve_json

HEALTH = "/-/healthy"


def write_config(config_dir: Path, textfile: Path, *, scrape_interval_s: float = 2.0) -> None:
    """The local environment's monitoring configuration: one scrape job, the DR alert rules, one dashboard."""
    (config_dir / "rules").mkdir(parents=True, exist_ok=True)
    (config_dir / "dashboards").mkdir(parents=True, exist_ok=True)
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{scrape_interval_s:g}s"},
        "rule_files": ["rules/*.yml"],
        "scrape_configs": [{"job_name": "xai-dr", "static_configs": [{"targets": [str(textfile)]}]}]}))
    (config_dir / "rules" / "dr.yml").write_text(yaml.safe_dump({"groups": [{"name": "xai-dr", "rules": [
        {"alert": "BackupOutsideRpo", "expr": "xai_dr_backup_rpo_compliant == 0", "for": "10m"},
        {"alert": "BackupFailedVerification", "expr": "xai_dr_backup_failed_verification > 0"},
        {"alert": "DrillFailing", "expr": "xai_dr_drill_success_ratio < 1", "for": "1h"},
        {"alert": "RtoObjectiveMissed", "expr": "xai_dr_rto_compliance_ratio < 1"}]}]}))
    (config_dir / "dashboards" / "dr.json").write_text(json.dumps({"title": "XAI disaster recovery", "panels": [
        {"title": "Backup age", "expr": "xai_dr_backup_last_success_age_seconds"},
        {"title": "RPO compliance", "expr": "xai_dr_rpo_compliance_ratio"}]}, indent=2))


def _seconds(text: Any) -> float:
    s = str(text).strip()
    unit = {"s": 1, "m": 60, "h": 3600}.get(s[-1:], None)
    return float(s[:-1]) * unit if unit else float(s)


def load(config_dir: Path) -> dict[str, Any]:
    """The configuration directory, checked; ValueError naming what is wrong."""
    main = config_dir / "prometheus.yml"
    if not main.is_file():
        raise ValueError(f"{main} is missing")
    doc = yaml.safe_load(main.read_text()) or {}
    targets = [t for job in doc.get("scrape_configs") or [] for sc in job.get("static_configs") or []
               for t in sc.get("targets") or []]
    groups = []
    for pattern in doc.get("rule_files") or []:
        for f in sorted(glob.glob(str(config_dir / pattern))):
            for g in (yaml.safe_load(Path(f).read_text()) or {}).get("groups") or []:
                if not all(r.get("alert") and r.get("expr") for r in g.get("rules") or []):
                    raise ValueError(f"{f}: group {g.get('name')!r} has a rule without alert/expr")
                groups.append({"name": g.get("name"), "file": f, "rules": len(g.get("rules") or [])})
    dashboards = []
    for f in sorted((config_dir / "dashboards").glob("*.json")):
        d = json.loads(f.read_text())
        if not d.get("title"):
            raise ValueError(f"{f} has no title")
        dashboards.append(d["title"])
    interval = _seconds((doc.get("global") or {}).get("scrape_interval", "15s"))
    return {"targets": targets, "groups": groups, "dashboards": dashboards, "scrape_interval_s": interval}


class Monitoring:
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.config: dict[str, Any] | None = None
        self.error: str | None = None
        self.scrapes: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.reload()

    def reload(self) -> bool:
        try:
            cfg = load(self.config_dir)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            with self.lock:
                self.error = str(exc)
            return False
        with self.lock:
            self.config, self.error = cfg, None
        return True

    def scrape(self) -> None:
        with self.lock:
            targets = list((self.config or {}).get("targets", []))
        for t in targets:
            try:
                lines = [ln for ln in Path(t).read_text().splitlines() if ln and not ln.startswith("#")]
                for ln in lines:
                    float(ln.rsplit(" ", 1)[1])
                res = {"health": "up", "samples": len(lines), "lastError": ""}
            except (OSError, ValueError, IndexError) as exc:
                res = {"health": "down", "samples": 0, "lastError": f"{type(exc).__name__}: {exc}"}
            with self.lock:
                self.scrapes[t] = {**res, "lastScrape": time.time()}

    def loop(self) -> None:
        while not self.stop.is_set():
            self.scrape()
            self.stop.wait((self.config or {}).get("scrape_interval_s", 2.0))

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        with self.lock:
            cfg, err = self.config, self.error
            scrapes = dict(self.scrapes)
        if path == HEALTH:
            return 200, {"status": "healthy"}
        if path == "/-/ready":
            return (200, {"status": "ready", "warning": err}) if cfg else (503, {"status": "not ready", "error": err})
        if path == "/-/reload" and method == "POST":
            ok = self.reload()
            return (200, {"status": "reloaded"}) if ok else (500, {"status": "error", "error": self.error})
        if path == "/api/v1/rules":
            return 200, {"status": "success", "data": {"groups": (cfg or {}).get("groups", [])}, "error": err}
        if path == "/api/v1/targets":
            active = [{"scrapeUrl": t, **scrapes.get(t, {"health": "unknown"})} for t in (cfg or {}).get("targets", [])]
            return 200, {"status": "success", "data": {"activeTargets": active}}
        if path == "/api/v1/status/config":
            return 200, {"status": "success", "data": {"dashboards": (cfg or {}).get("dashboards", []),
                                                       "config_dir": str(self.config_dir), "error": err}}
        return 404, {"error": "not found"}


def serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m recovery.local.monitoring serve")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--config-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    m = Monitoring(Path(args.config_dir))
    threading.Thread(target=m.loop, daemon=True).start()
    serve_json(m.answer, args.port, args.run_dir, args.name, on_hup=m.reload)
    m.stop.set()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    return control("monitoring", HEALTH, argv)


if __name__ == "__main__":
    sys.exit(main())
