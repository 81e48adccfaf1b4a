"""The shipped schedule (systemd units and crontab): they parse, follow the plan, and run real commands."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SCHEDULE = ROOT / "scripts" / "schedule"
UNITS = sorted(SCHEDULE.glob("*.service")) + sorted(SCHEDULE.glob("*.timer"))


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def recovery_commands() -> list[list[str]]:
    """argv (after `recovery`) of every job in the units and the crontab."""
    cmds = [shlex.split(unit(p)["Service"]["ExecStart"])[1:] for p in SCHEDULE.glob("*.service")]
    for line in (SCHEDULE / "crontab").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and not line.startswith("#") and fields[5] == "recovery":
            cmds.append(fields[6:])
    return cmds


def test_timers_follow_the_plans_schedule() -> None:
    timers = {p.stem: unit(p)["Timer"] for p in SCHEDULE.glob("*.timer")}
    assert timers["recovery-backup-db"]["OnCalendar"] == "hourly"
    assert "RandomizedDelaySec" in timers["recovery-backup-db"]
    assert timers["recovery-backup-chain"]["OnCalendar"] == "*-*-* 00/6:00:00"
    assert timers["recovery-verify"]["OnCalendar"] == "*-*-* 04:00:00"
    assert "recovery-offsite-sync" in timers
    assert all(t["Persistent"] == "true" for t in timers.values())
    for name in timers:  # every timer has its service, and every service is a oneshot (exit status shows)
        assert unit(SCHEDULE / f"{name}.service")["Service"]["Type"] == "oneshot"
    assert (SCHEDULE / "recovery-backup-config.service").exists()  # started by deployments, no timer


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    binary = Path(sys.executable).parent / "recovery"
    for p in UNITS:
        text = p.read_text().replace("/usr/local/bin/recovery", str(binary))
        text = text.replace("EnvironmentFile=/etc/recovery/recovery.env", "EnvironmentFile=-/etc/recovery/recovery.env")
        (tmp_path / p.name).write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(str(x) for x in tmp_path.iterdir())],
                          capture_output=True, text=True, env={"SYSTEMD_LOG_LEVEL": "notice", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


@pytest.mark.parametrize("argv", recovery_commands(), ids=lambda a: " ".join(a))
def test_every_scheduled_command_exists_in_the_cli(argv: list[str]) -> None:
    words = [w for w in argv if not w.startswith(("-", "$"))]
    options = [w for w in argv if w.startswith("--")]
    proc = subprocess.run([sys.executable, "-m", "recovery.cli", *words, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--stack" in proc.stdout and "RECOVERY_STACK" in proc.stdout  # the env file supplies it
    for opt in options:
        assert opt in proc.stdout, f"{opt} is not an option of recovery {' '.join(words)}"


def test_crontab_lines_are_well_formed() -> None:
    jobs = [ln for ln in (SCHEDULE / "crontab").read_text().splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(jobs) == 4
    for job in jobs:
        minute, hour, dom, mon, dow = job.split()[:5]
        assert all(part.replace("*", "").replace("/", "").isdigit() or part == "*" for part in (minute, hour, dom, mon, dow))
