"""The bad-input battery: every row of docs/bad-input.md, run as the real CLI against a deployed site.

Each case must exit with its code, print exactly one `error: PROBLEM - FIX` line on stderr (nothing
else, no traceback, no "unexpected"), end within the hang guard, and change nothing: the bucket's
object versions and open multipart uploads, the server's databases and their rows, and the files the
cases point at are compared before and after. The cases are read from the doc's table, so the doc
is the test's parameter list and the two cannot drift.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import prewarmed_cli
from cli_env import ROOT, isolated_env
from recovery.local.deploy_bound import site_for_tests
from recovery.local.moto_server import MotoServer
from recovery.local.postgres_cluster import PostgresCluster

from conftest import DB_PASSWORD, STACK

DOC = ROOT / "docs" / "bad-input.md"
HANG_GUARD_S = 30  # not a performance bound: a case that needs longer is hanging


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    environment: str
    exit_code: int
    says: str


def doc_cases() -> list[Case]:
    """The battery table: the rows after the `| case | command |` header."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| case | command |"))
    cases = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        name, command, env, code, says = (c.strip() for c in ln.strip().strip("|").split("|"))
        cases.append(Case(name, command.strip("`"), env.strip("`"), int(code), says.strip("`")))
    return cases


CASES = doc_cases()
COMMANDS = {"backup", "list", "verify", "offsite", "restore", "failover", "failback", "partition", "rotate",
            "contain", "investigate", "drill", "status", "sites", "metrics", "local", "cache", "runs", "quarantine"}


def bad_outputs(outputs: dict[str, Any]) -> dict[str, bytes]:
    """The prepared defective outputs files, by the name `{out:NAME}` uses in the doc."""
    good = json.dumps(outputs)
    lacking = {k: v for k, v in outputs.items() if k != "db_secret_arn"}
    return {
        "garbage": b"this is not what pulumi writes\n",
        "latin1": json.dumps({**outputs, "db_name": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
        "empty": b"  \n",
        "digits": good.replace(f'"db_port": {outputs["db_port"]}', '"db_port": ' + "9" * 5000).encode(),
        "nan": good.replace(f'"db_port": {outputs["db_port"]}', '"db_port": NaN').encode(),
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "array": json.dumps([outputs]).encode(),
        "gzip": b"\x1f\x8b\x08\x00garbage",
        "lacking": json.dumps(lacking).encode(),
        "port_string": json.dumps({**outputs, "db_port": "5432"}).encode(),
        "port_range": json.dumps({**outputs, "db_port": 70000}).encode(),
        "inf_days": good.replace(f'"backup_retention_days": {outputs["backup_retention_days"]}',
                                 '"backup_retention_days": 1e400').encode(),
        "bad_export": json.dumps({"deployment": {"resources": {"not": "a list"}}}).encode(),
    }


@dataclass
class Stage:
    outputs: dict[str, Any]
    env: dict[str, str]
    work: Path
    values: dict[str, str]
    site_args: list[str]
    server: MotoServer
    pg: PostgresCluster

    def expand(self, text: str) -> str:
        return re.sub(r"\{([a-z0-9_:]+)\}", lambda m: self.values[m.group(1)], text)

    def snapshot(self) -> dict[str, Any]:
        """What a bad input must not change."""
        s3 = self.server.client("s3", self.outputs["region"])
        bucket = self.outputs["backup_bucket_name"]
        r = s3.list_object_versions(Bucket=bucket)
        versions = sorted(f"{v['Key']}@{v['VersionId']}" for v in r.get("Versions", []) + r.get("DeleteMarkers", []))
        uploads = sorted(u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
        with self.pg.connect() as c:
            dbs = sorted(row[0] for row in c.execute("SELECT datname FROM pg_database"))
            rows = c.execute("SELECT count(*) FROM blockchain").fetchone()
        files = sorted((str(p.relative_to(self.work)), p.lstat().st_mode, p.lstat().st_size,
                        p.lstat().st_mtime_ns) for p in self.work.rglob("*"))
        reports = sorted(str(p) for p in (ROOT / ".recovery").rglob("*")) if (ROOT / ".recovery").exists() else []
        return {"versions": versions, "uploads": uploads, "databases": dbs, "rows": rows, "files": files,
                "reports": reports}


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A TCP port that completes handshakes (the kernel's backlog does) and never answers a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="module")
def stage(moto_server: MotoServer, pg: PostgresCluster, tmp_path_factory: pytest.TempPathFactory,
          blackhole: int) -> Stage:
    """One deployed site for the whole battery: no case may change it, and each case proves it did not."""
    outputs, oncall = site_for_tests(moto_server, db_port=pg.port,
                                     db_password=DB_PASSWORD)
    work = tmp_path_factory.mktemp("bad-input")
    good = work / "outputs.json"
    good.write_text(json.dumps(outputs))
    (work / "regular.txt").write_text("a regular file\n")
    (work / "data").mkdir()
    (work / "data" / "chain.db").write_bytes(b"")
    os.mkfifo(work / "pipe")
    (work / "bad").mkdir()
    values = {"file": str(work / "regular.txt"),
              "dir": str(work / "data"), "fifo": str(work / "pipe"), "missing": str(work / "no-such-file"),
              "blackhole": f"http://127.0.0.1:{blackhole}", "blackhole_port": str(blackhole),
              "name80": "a" * 80, "name64b": "\u00e9" * 32}
    for name, data in bad_outputs(outputs).items():
        (work / "bad" / f"{name}.json").write_bytes(data)
        values[f"out:{name}"] = str(work / "bad" / f"{name}.json")
    env = isolated_env(**{**moto_server.env(), **oncall.env(), "RECOVERY_AWS_MAX_ATTEMPTS": "2",
                          "RECOVERY_JOURNAL_DIR": str(work / "journal")})
    return Stage(outputs, env, work, values, ["--stack", STACK, "--outputs", str(good)], moto_server, pg)


def run(stage: Stage, case: Case) -> tuple[subprocess.CompletedProcess[str], float]:
    # split first, then expand: a path or a name never becomes two words; {site} is two options
    args: list[str] = []
    for word in shlex.split(case.command):
        args += stage.site_args if word == "{site}" else [stage.expand(word)]
    extra = dict(stage.expand(kv).split("=", 1) for kv in shlex.split(case.environment))
    t0 = time.monotonic()
    proc = prewarmed_cli.run("recovery", args, env={**stage.env, **extra}, cwd=ROOT, timeout=HANG_GUARD_S,
                             input="")  # stdin at EOF, as from /dev/null
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_line_its_code_and_changes_nothing(stage: Stage, case: Case) -> None:
    before = stage.snapshot()
    proc, took = run(stage, case)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"{case.name}: stderr is not one line:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("error: ") and " - " in line, f"{case.name}: not 'error: PROBLEM - FIX': {line}"
    assert "Traceback" not in line and "unexpected" not in line, line
    assert stage.expand(case.says) in line, f"{case.name}: {line}"
    assert proc.returncode == case.exit_code, f"{case.name}: exit {proc.returncode}: {line}"
    assert DB_PASSWORD not in proc.stdout + proc.stderr
    assert stage.snapshot() == before, f"{case.name} changed something"
    assert took < HANG_GUARD_S


def test_the_battery_covers_every_command_and_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
    first_words = {shlex.split(c.command)[0] for c in CASES}
    assert COMMANDS <= first_words, f"commands without a case: {COMMANDS - first_words}"
    import click

    from recovery.cli import main

    assert set(main.commands) <= COMMANDS, "a new command needs rows in docs/bad-input.md"
    covered = {" ".join(shlex.split(c.command)[:2]) for c in CASES}
    for name, cmd in main.commands.items():
        for sub in getattr(cmd, "commands", {}) if isinstance(cmd, click.Group) else ():
            assert f"{name} {sub}" in covered, f"`recovery {name} {sub}` has no row in docs/bad-input.md"


def test_every_knob_is_in_the_doc_with_its_range() -> None:
    from recovery.knobs import KNOBS

    text = DOC.read_text()
    for knob in KNOBS.values():
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{knob.name}`")), None)
        assert row is not None, f"{knob.name} is not in docs/bad-input.md's variables table"
        low, high = knob.range_text().split(" ")[0].split("..")
        assert f"{low}..{high}" in row, f"{knob.name}: the doc's range differs from {knob.range_text()}"
        assert any(knob.name in c.environment for c in CASES), f"{knob.name} has no battery case"


def test_gzip_outputs_are_still_read(stage: Stage) -> None:
    """The outputs reader's checks leave the good paths alone: a gzip'ed export is accepted."""
    f = stage.work / "outputs.json.gz"
    f.write_bytes(gzip.compress(json.dumps(stage.outputs).encode()))
    proc = subprocess.run([sys.executable, "-m", "recovery", "list", "--stack", STACK, "--outputs", str(f)],
                          capture_output=True, text=True, env=stage.env, cwd=ROOT, timeout=120)
    f.unlink()
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("target", ["xai_blockchain", "a" * 63, "\u00e9" * 31 + "a", "\u6570" * 21])
def test_derived_database_names_fit_postgres_and_keep_the_run_suffix(target: str) -> None:
    """PostgreSQL cuts names over 63 bytes silently; the scratch and quarantine names must never need it,
    and the part that makes them unique per run must survive (the old code cut characters, then the end)."""
    from recovery.runbooks.restore_db import quarantine_name, scratch_name

    run_id = "20261125T171600Z-3f9a1c"
    scratch, quarantine = scratch_name(target, run_id), quarantine_name(target, run_id)
    assert len(scratch.encode()) <= 63 and scratch.endswith("_restore_20261125t171600z_3f9a1c")
    assert len(quarantine.encode()) <= 63 and quarantine.endswith("_quarantine_20261125t171600z")
    assert target.startswith(scratch.split("_restore_")[0])  # cut on a character boundary
    if target == "xai_blockchain":  # short ASCII names are what they always were (a resumed run finds them)
        assert scratch == "xai_blockchain_restore_20261125t171600z_3f9a1c"
