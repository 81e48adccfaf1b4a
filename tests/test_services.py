"""Service control: commands from config, real subprocesses, ordering, timeouts, failures."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from recovery.errors import InputError, ServiceControlError
from recovery.services import ENV_VAR, ServiceControl, ServicesConfig

PY = sys.executable

# A fake service manager: `svc.py <state-dir> stop|start|status <name>` keeps a pid file per running
# service and appends every call to calls.log. A service listed in <state-dir>/broken fails to stop.
SVC = r'''
import os, sys, time
state, verb, name = sys.argv[1], sys.argv[2], sys.argv[3]
pid = os.path.join(state, name + ".pid")
with open(os.path.join(state, "calls.log"), "a") as fh:
    fh.write(f"{verb} {name}\n")
broken = open(os.path.join(state, "broken")).read().split() if os.path.exists(os.path.join(state, "broken")) else []
if verb == "stop":
    if name in broken:
        print(f"Failed to stop {name}.service: Access denied", file=sys.stderr)
        sys.exit(3)
    if os.path.exists(pid):
        os.unlink(pid)
elif verb == "start":
    open(pid, "w").write(str(os.getpid()))
elif verb == "status":
    sys.exit(0 if os.path.exists(pid) else 3)
elif verb == "hang":
    time.sleep(60)
'''


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    (tmp_path / "svc.py").write_text(SVC)
    state = tmp_path / "state"
    state.mkdir()
    for name in ("xai-node", "xai-explorer"):
        (state / f"{name}.pid").write_text("1")  # both running
    return state


def config_for(state: Path, fmt: str = "toml", **extra: object) -> Path:
    svc = state.parent / "svc.py"
    services = [
        {
            "name": n,
            "stop": f"{PY} {svc} {state} stop {n}",
            "start": f"{PY} {svc} {state} start {n}",
            "status": f"{PY} {svc} {state} status {n}",
        }
        for n in ("xai-node", "xai-explorer")
    ]
    path = state.parent / f"services.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"services": services, **extra}))
    else:
        lines = [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
        for s in services:
            lines.append("[[services]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in s.items()]
        path.write_text("\n".join(lines) + "\n")
    return path


def calls(state: Path) -> list[str]:
    return (state / "calls.log").read_text().splitlines()


def test_defaults_are_the_plans_systemctl_commands() -> None:
    cfg = ServicesConfig.from_env({})
    assert cfg.source == "defaults"
    assert cfg.stop_order == ("xai-node", "xai-explorer")
    assert cfg.start_order == ("xai-node", "xai-explorer"), "the plan starts the node first"
    control = ServiceControl(cfg)
    assert control.describe_stop() == "systemctl stop xai-node; systemctl stop xai-explorer"
    assert control.describe_start() == "systemctl start xai-node; systemctl start xai-explorer"


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_stop_and_start_all_from_env_config(fake: Path, fmt: str) -> None:
    cfg = ServicesConfig.from_env({ENV_VAR: str(config_for(fake, fmt))})
    control = ServiceControl(cfg)
    assert control.all_running() and not control.all_stopped()
    results = control.stop_all()
    assert [r.service for r in results] == ["xai-node", "xai-explorer"]
    assert not (fake / "xai-node.pid").exists() and not (fake / "xai-explorer.pid").exists()
    assert control.all_stopped()
    control.start_all()
    assert (fake / "xai-node.pid").exists() and (fake / "xai-explorer.pid").exists()
    ops = [c for c in calls(fake) if not c.startswith("status")]
    assert ops == ["stop xai-node", "stop xai-explorer", "start xai-explorer", "start xai-node"]


def test_start_order_can_follow_the_plan_text(fake: Path) -> None:
    cfg = ServicesConfig.from_file(config_for(fake, start_order=["xai-node", "xai-explorer"]))
    ServiceControl(cfg).start_all()
    assert calls(fake) == ["start xai-node", "start xai-explorer"]


def test_failure_to_stop_names_service_and_command_and_rolls_back(fake: Path) -> None:
    (fake / "broken").write_text("xai-explorer")
    control = ServiceControl(ServicesConfig.from_file(config_for(fake)))
    with pytest.raises(ServiceControlError) as err:
        control.stop_all()
    msg = str(err.value)
    assert "could not stop xai-explorer" in msg and "stop xai-explorer" in msg and "exited 3" in msg
    assert "Access denied" in msg and "\n" not in msg
    assert err.value.exit_code == ServiceControlError.exit_code
    # the node it had already stopped is running again: the system is as it was
    assert (fake / "xai-node.pid").exists() and (fake / "xai-explorer.pid").exists()
    assert calls(fake) == ["stop xai-node", "status xai-node", "stop xai-explorer", "start xai-node"]


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(tmp_path / 'grandchild')!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    cfg = ServicesConfig.from_mapping(
        {"services": [{"name": "slow", "stop": [PY, str(tmp_path / "child.py")], "start": "true",
                       "timeout_seconds": 1}]}
    )
    t0 = time.monotonic()
    with pytest.raises(ServiceControlError) as err:
        ServiceControl(cfg).stop("slow")
    assert time.monotonic() - t0 < 10
    assert "could not stop slow" in str(err.value) and "within 1s" in str(err.value)
    grandchild = int((tmp_path / "grandchild").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the whole process group died, grandchild included
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("grandchild survived the timeout")


def test_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    cfg = ServicesConfig.from_mapping(
        {"services": [{"name": "xai-node", "stop": "/nonexistent/systemctl stop xai-node", "start": "true"}]}
    )
    with pytest.raises(ServiceControlError) as err:
        ServiceControl(cfg).stop_all()
    assert "could not stop xai-node" in str(err.value) and "/nonexistent/systemctl" in str(err.value)


@pytest.mark.parametrize(
    "content, why",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"services": []}), "non-empty 'services'"),
        (json.dumps({"services": [{"name": "a", "stop": "", "start": "x"}]}), "'a.stop'"),
        (json.dumps({"services": [{"name": "a", "stop": "x", "start": "x"}], "start_order": ["b"]}), "start_order"),
    ],
)
def test_bad_config_is_an_input_error(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "services.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        ServicesConfig.from_env({ENV_VAR: str(path)})
    assert why in str(err.value)


def test_missing_config_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        ServicesConfig.from_env({ENV_VAR: str(tmp_path / "nope.toml")})
    assert ENV_VAR in str(err.value)


def test_service_steps_in_a_runbook_dry_run_then_run_then_rerun(fake: Path, tmp_path: Path) -> None:
    from _engine_fixtures import RecordingReporter

    from recovery.engine.journal import LocalJournalStore
    from recovery.engine.runbook import Runbook

    control = ServiceControl(ServicesConfig.from_file(config_for(fake)))
    rb = Runbook("services-demo", [control.stop_step(), control.start_step()], "host")
    store = LocalJournalStore(tmp_path / "journal")

    plan = rb.dry_run(store, RecordingReporter())
    assert "stop xai-node" in plan.steps[0].touches and "stop xai-explorer" in plan.steps[0].touches
    assert all(not c.startswith(("stop", "start")) for c in calls(fake))  # only status was asked
    assert not (tmp_path / "journal").exists()

    journal = rb.run(store, RecordingReporter())
    assert journal.step("stop-services").detail["stopped"] == ["xai-node", "xai-explorer"]
    assert journal.step("start-services").detail["started"] == ["xai-explorer", "xai-node"]

    control.stop("xai-explorer")
    again = rb.run(store, RecordingReporter())  # a new run: the check says what already holds
    assert [(s.name, s.status) for s in again.steps] == [("stop-services", "ok"), ("start-services", "ok")]
    control.stop_all()
    third = rb.run(store, RecordingReporter())
    assert third.step("stop-services").status == "held"


def test_an_unreadable_status_is_a_failure_never_stopped(fake: Path) -> None:
    """Only exit 0 (running) and the stopped exit codes (3 by default) are answers."""
    sc = ServiceControl(ServicesConfig.from_mapping({"services": [
        {"name": "xai-node", "stop": "true", "start": "true",
         "status": ["sh", "-c", "echo 'Failed to connect to bus' >&2; exit 1"]}]}))
    with pytest.raises(ServiceControlError) as err:
        sc.all_stopped()
    assert err.value.line().startswith("cannot tell whether xai-node is running: `sh -c")
    assert "exited 1: Failed to connect to bus (stopped is exit 3)" in err.value.line()
    with pytest.raises(ServiceControlError):  # a stop is confirmed by the status, so it fails too
        sc.stop("xai-node")
    custom = ServicesConfig.from_mapping({"services": [
        {"name": "xai-node", "stop": "true", "start": "true", "status": "false", "stopped_exit_codes": [1]}]})
    assert ServiceControl(custom).all_stopped() is True
    with pytest.raises(InputError, match="stopped_exit_codes' must be a non-empty list of exit codes 1-255"):
        ServicesConfig.from_mapping({"services": [{"name": "n", "stop": "true", "start": "true",
                                                   "stopped_exit_codes": [0]}]})


def test_a_stop_that_leaves_the_service_running_fails(fake: Path) -> None:
    sc = ServiceControl(ServicesConfig.from_mapping({"services": [
        {"name": "xai-node", "stop": "true", "start": "true", "status": "true"}]}))
    with pytest.raises(ServiceControlError, match="exited 0 but xai-node still reports running"):
        sc.stop("xai-node")
