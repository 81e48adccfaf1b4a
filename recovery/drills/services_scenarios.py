"""`drill full` scenarios for the explorer and the monitoring, local only.

They import recovery.local on purpose: killing the local explorer or monitoring process and
deleting its state is damage only the local environment's processes can take
(recovery/local/site_services.py).

explorer-loss (component explorer: RTO 30 min, RPO 1 h)
    preflight  the explorer answers its health check and serves the index's latest block
    backup     a real `backup config` of the explorer's state (its configuration and cache): the
               last good state, as the hourly config schedule would have taken it
    inject     the explorer process is SIGKILLed and its state directory deleted
    detect     its health URL (from the services config) does not answer
    restore    the restore-config runbook with that backup, restarting xai-explorer, which starts
               only once the node answers (the plan's order)
    verify     healthy again and serving the index's latest block (its cache rebuilt from the index)
    RPO        seconds between the restored state and the disaster; 0 blocks (the explorer's blocks
               come from the index, which lost none)

monitoring-loss (component monitoring: RTO 60 min, RPO n/a)
    preflight  ready, its alert rules and dashboards loaded
    backup     a real `backup config` of its configuration directory
    inject     the process is SIGKILLed and its configuration directory deleted
    detect     /-/ready does not answer
    restore    restore-config, restarting xai-monitoring
    verify     ready with the same rule groups and dashboards, and `recovery metrics --textfile`
               output scraped (its target up)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from recovery.aws import acting_as
from recovery.backups.take import BackupOptions, backup_config
from recovery.drills.base import DrillRun, scenario
from recovery.drills.checks import NotYet, wait_for
from recovery.drills.restore_scenarios import TIMEOUT_S, _add_runbook_steps, _node, _reporter, _store
from recovery.errors import VerificationFailed
from recovery.local import site_services
from recovery.local.paths import read_state
from recovery.reports.service_health import probe
from recovery.services import ServicesConfig


def _service(d: DrillRun, name: str) -> Any:
    return ServicesConfig.for_stack(d.outputs).service(name)


def _healthy(url: str) -> dict[str, Any]:
    code, body, err = probe(url, 2.0)
    if code != 200:
        raise NotYet(f"{url}: {err or code} {body.get('problems') or body.get('error') or ''}".strip())
    return body


def _disaster_and_restore(d: DrillRun, svc: Any) -> Any:
    """backup (the last good state), inject, detect, restore; returns the backup's manifest."""
    with d.step("backup") as st:
        with acting_as(d.outputs, "backup"):
            m = backup_config(d.outputs, list(svc.config), BackupOptions())
        st.detail.update(key=m.key)
    _lose(d, svc.name, svc.config)
    _detect(d, svc.health)
    _restore(d, m.key, svc.config, svc.name)
    return m


def _restore(d: DrillRun, key: str, paths: tuple[str, ...], service: str) -> None:
    from recovery.runbooks.restore_config import ConfigRestoreOptions, restore_config

    with d.step("restore") as st:
        opts = ConfigRestoreOptions(backup=key, paths=tuple(paths), restart=(service,))
        with acting_as(d.outputs, "restore"):
            journal, _ = restore_config(d.outputs, opts, _store(d), yes=True, reporter=_reporter(d))
        assert journal is not None
        st.detail.update(runbook=journal.runbook, run_id=journal.run_id, status=journal.status)
    _add_runbook_steps(d, journal, "restore-config")


def _lose(d: DrillRun, name: str, paths: tuple[str, ...]) -> None:
    """SIGKILL the service and delete its state (moved into the drill's work dir first, so a drill
    that fails halfway can still put it back)."""
    entry = read_state()["site_services"]
    with d.step("inject") as st:
        st.detail["killed_pid"] = site_services.kill(entry, name)
        for p in paths:
            shutil.move(p, d.work_dir / Path(p).name)
    d.injected()

    def put_back() -> None:
        for p in paths:
            if not Path(p).exists() and (d.work_dir / Path(p).name).exists():
                shutil.move(str(d.work_dir / Path(p).name), p)
    d.cleanup(put_back)


def _detect(d: DrillRun, url: str) -> None:
    with d.step("detect") as st:
        code, body, err = probe(url, 2.0)
        if code == 200:
            raise VerificationFailed(f"{url} still answers healthy after the damage")
        st.detail.update(http_status=code, error=err)
        d.detected(f"health check {url}: {err or f'HTTP {code}'}")


@scenario("explorer-loss", component="explorer", order=70,
          description="the block explorer's process killed and its state deleted; restored from the last "
                      "configuration backup with the restore-config runbook, started after the node")
def explorer_loss(d: DrillRun) -> None:
    svc = _service(d, site_services.EXPLORER)
    assert svc.health, "the explorer has no health URL in the services config"
    with d.step("preflight") as st:
        st.detail.update(wait_for("the explorer healthy", lambda: _healthy(svc.health), TIMEOUT_S))
    m = _disaster_and_restore(d, svc)
    with d.step("verify") as st:
        with _node(d) as node:
            node.block_height()  # the node answers: the explorer was (re)started after it
        body = wait_for("the explorer serving the index's latest block", lambda: _healthy(svc.health), TIMEOUT_S)
        st.detail.update(latest_height=body.get("latest_height"), index_height=body.get("index_height"))
    d.recovered()
    d.lost(blocks=0, seconds=max(0.0, (d.injected_at or time.time()) - m.time.timestamp()))


@scenario("monitoring-loss", component="monitoring", order=80,
          description="the monitoring's process killed and its configuration (alert rules, dashboards, scrape "
                      "targets) deleted; restored with the restore-config runbook")
def monitoring_loss(d: DrillRun) -> None:
    svc = _service(d, site_services.MONITORING)
    assert svc.health, "the monitoring has no health URL in the services config"
    base = svc.health.rsplit("/-/", 1)[0]
    with d.step("preflight") as st:
        wait_for("the monitoring ready", lambda: _healthy(svc.health), TIMEOUT_S)
        groups = _healthy(f"{base}/api/v1/rules")["data"]["groups"]
        dashboards = _healthy(f"{base}/api/v1/status/config")["data"]["dashboards"]
        st.detail.update(rule_groups=len(groups), dashboards=len(dashboards))
    m = _disaster_and_restore(d, svc)
    with d.step("verify") as st:
        wait_for("the monitoring ready", lambda: _healthy(svc.health), TIMEOUT_S)
        if _healthy(f"{base}/api/v1/rules")["data"]["groups"] != groups:
            raise VerificationFailed("the restored monitoring loaded other alert rules than before the loss")
        if _healthy(f"{base}/api/v1/status/config")["data"]["dashboards"] != dashboards:
            raise VerificationFailed("the restored monitoring lost dashboards")
        st.detail.update(targets=_scraped(d, base))
    d.recovered()
    d.lost(blocks=0, seconds=max(0.0, (d.injected_at or time.time()) - m.time.timestamp()))


def _scraped(d: DrillRun, base: str) -> int:
    """`recovery metrics --textfile` writes the file the monitoring scrapes; wait until it is up."""
    from recovery.reports.metrics import collect, render_prometheus, write_textfile

    textfile = read_state()["site_services"]["textfile"]
    with acting_as(d.outputs, "backup"):
        write_textfile(textfile, render_prometheus(collect(d.outputs).samples))

    def up() -> int:
        active = _healthy(f"{base}/api/v1/targets")["data"]["activeTargets"]
        if not active or any(t.get("health") != "up" for t in active):
            raise NotYet(f"targets: {active}")
        return len(active)

    return wait_for("the monitoring scraping the metrics textfile", up, TIMEOUT_S)
