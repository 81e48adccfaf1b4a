"""`recovery drill db|chain|full`: rehearse the DR plan and keep a record of how it went.

- ``drill db`` (the plan's monthly database restore test): take a backup or the latest one, check it
  against its manifest, restore it into a scratch database ``xai_drill_<ts>`` on the target server,
  compare count(*) and max(height) with the manifest, drop the scratch database. The stack's own
  database is only read (its max(height), for the record), never written.
- ``drill chain``: restore the latest chain backup into a temp directory, check chain.db (SQLite
  integrity) and the hash chain (``verify_chain_file``), remove the directory.
- ``drill full`` (the annual exercise; local stacks only): every registered scenario of
  ``recovery.drills`` in order. Each injects a real disaster, detects it through a real check,
  recovers with the runbooks and measures RTO (detection -> verified service) and RPO.

Every drill writes its record (JSON) to ``s3://<bucket>/drills/YYYY/MM/DD/drill-<kind>-<ts>.json``
and a human report (Markdown + self-contained HTML, ``recovery.drills.report``) to ``--report-dir``.

Cleanup: whatever a drill creates (scratch databases ``xai_drill_*``, work directories) is removed by
the scenario's cleanups, on failure and on SIGTERM/Ctrl-C too. A SIGKILLed drill cannot clean up, so
every drill first *sweeps* the leftovers of earlier ones, under a per-stack lock so it never sweeps a
drill that is still running. The sweep removes only what a dead drill recorded as its own: the
scratch databases in its ledger (``DrillRun.record_created``, written before each is created), and what the
restores it ran make (their scratch and quarantine databases, the chain restore's staging and
quarantine directories), named from those restores' journals in its work dir. A quarantine kept by
an operator's own restore is never touched. It then starts a local node a killed restore left
stopped; ``recovery local down`` removes everything in any case.

The restores a drill runs journal into the drill's own work directory (and the journal is copied into
the record), so a killed drill's half-done restore is never resumed by a later, unrelated run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from recovery.notify_findings import drill_findings
from recovery import postgres, redact
from recovery.aws import aws_error, client
from recovery.processes import pid_alive
from recovery.drills import checks
from recovery.drills.base import LEDGER, DrillRun, ScenarioSpec, load_all, run_scenario
from recovery.drills.report import render_html, render_markdown
from recovery.errors import DatabaseError, DrillFailedError, InputError, LockHeldError, NotLocalStackError, RecoveryError
from recovery.engine.journal import Journal, default_journal_dir
from recovery.engine.locks import HostLock
from recovery.runbooks.restore_chain import run_paths
from recovery.runbooks.restore_db import Server, quarantine_name, scratch_name
from recovery.services import ServiceControl, ServicesConfig
from recovery.stack import LOCAL_STACKS, StackOutputs, local_dir

TS_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULT_REPORT_DIR = ".recovery/reports"
SCRATCH_PREFIX = "xai_drill_"
TMP_PREFIX = "xai-drill-"
PID_FILE = "drill.pid"


def is_local(stack: str) -> bool:
    """By name, before the outputs are read: only `recovery local up` makes stacks of these names.
    Once they are read, the stack's own `local` output must agree (`specs_for`)."""
    return stack in LOCAL_STACKS


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime(TS_FORMAT)


# ------------------------------------------------------------------------------------- work dirs


def work_root(outputs: StackOutputs) -> Path:
    """Local stacks: inside the local environment's directory (so `local down` removes it);
    real stacks: the system temp dir (each drill dir is named xai-drill-* and holds its pid)."""
    return local_dir() / "drills" if outputs.local else Path(tempfile.gettempdir())


def make_work_dir(outputs: StackOutputs, drill_id: str) -> Path:
    root = work_root(outputs)
    root.mkdir(parents=True, exist_ok=True)
    d = root / f"{TMP_PREFIX}{drill_id}"
    d.mkdir(mode=0o700)
    (d / PID_FILE).write_text(str(os.getpid()))
    return d


def made_by(work: Path) -> dict[str, list[str]]:
    """What the drill whose work dir is `work` created: its ledger, plus what the restores it ran
    make (named from their journals, which a run saves before its first step)."""
    made: dict[str, list[str]] = {"databases": [], "dirs": []}
    for ledger in work.rglob(LEDGER):
        for line in ledger.read_text().splitlines():
            try:
                entry = json.loads(line)
                made["databases" if entry["kind"] == "database" else "dirs"].append(str(entry["name"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the kill
    for runbook in ("restore-db", "restore-chain"):
        for f in work.rglob(f"runs/{runbook}/*.json"):
            try:
                j = Journal.from_dict(json.loads(f.read_text()))
                if runbook == "restore-db":
                    made["databases"] += [scratch_name(j.target, j.run_id), quarantine_name(j.target, j.run_id)]
                else:
                    made["dirs"] += [str(p) for p in run_paths(Path(str(j.params["data_dir"])), j.run_id)]
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return made


def sweep(outputs: StackOutputs, say: Callable[[str], None] = lambda _m: None) -> dict[str, list[str]]:
    """Remove what killed drills left behind: only what their ledgers and journals name (see the
    module docstring), never a database or directory an operator's own restore kept. Never raises
    for one item."""
    removed: dict[str, list[str]] = {"databases": [], "dirs": [], "started": []}
    made: dict[str, list[str]] = {"databases": [], "dirs": []}
    root = work_root(outputs)
    dead = []
    for d in sorted(root.glob(f"{TMP_PREFIX}*")) if root.is_dir() else []:
        try:
            pid = int((d / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and pid_alive(pid):
            continue
        dead.append(d)
        for k, v in made_by(d).items():
            made[k] += v
    for p in map(Path, made["dirs"]):
        if p.exists():
            shutil.rmtree(p, ignore_errors=True)
            removed["dirs"].append(str(p))
    if made["databases"]:
        try:
            server = Server(postgres.resolve(outputs))
            for n in made["databases"]:
                if server.exists(n):
                    server.drop(n)
                    removed["databases"].append(n)
        except DatabaseError as exc:
            say(f"sweep: could not drop leftover scratch databases: {exc.line()}")
            dead = []  # keep the ledgers: the next drill tries again
    for d in dead:
        shutil.rmtree(d, ignore_errors=True)
        removed["dirs"].append(str(d))
    if outputs.local and dead:  # a drill killed mid-restore may have left the node stopped
        try:
            sc = ServiceControl(ServicesConfig.for_stack(outputs))
            if not sc.all_running():
                sc.start_all()
                removed["started"].append("services")
        except RecoveryError as exc:
            say(f"sweep: could not start the local services: {exc.line()}")
    if any(removed.values()):
        say("swept leftovers of earlier drills: " + "; ".join(f"{k} {', '.join(v)}" for k, v in removed.items() if v))
    return removed


class DrillLock:
    """One drill per stack on this host (an flock, released by the kernel even on SIGKILL)."""

    def __init__(self, stack: str) -> None:
        self._lock = HostLock(f"drill-{stack.replace('/', '_')}", default_journal_dir(), what="drill")
        self.stack = stack

    def __enter__(self) -> "DrillLock":
        try:
            self._lock.__enter__()
        except LockHeldError as exc:
            raise LockHeldError(f"another drill on stack {self.stack} is running ({exc.problem})",
                                "wait for it to finish") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)


# ------------------------------------------------------------------------------------- records


def record_key(kind: str, started: float) -> str:
    when = datetime.fromtimestamp(started, tz=timezone.utc)
    return f"drills/{when:%Y/%m/%d}/drill-{kind}-{when.strftime(TS_FORMAT)}.json"


def put_record(outputs: StackOutputs, record: dict[str, Any], s3: Any = None) -> str:
    s3 = s3 or client("s3", outputs.region)
    key = record["record_key"]
    body = redact.scrub(json.dumps(record, indent=2, sort_keys=True, default=str)).encode()
    try:
        s3.put_object(Bucket=outputs.backup_bucket_name, Key=key, Body=body, ContentType="application/json",
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=outputs.backup_kms_key_arn)
    except ClientError as exc:
        raise aws_error(exc, "writing the drill record", bucket=outputs.backup_bucket_name) from None
    return key


def write_reports(record: dict[str, Any], report_dir: str | os.PathLike[str]) -> dict[str, str]:
    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    base = f"drill-{record['drill']}-{record['stack']}-{_stamp(record['started_at'])}"
    md, page, doc = d / f"{base}.md", d / f"{base}.html", d / f"{base}.json"
    md.write_text(redact.scrub(render_markdown(record)))
    page.write_text(redact.scrub(render_html(record)))
    doc.write_text(redact.scrub(json.dumps(record, indent=2, sort_keys=True, default=str)))  # the record, offline
    return {"markdown": str(md.absolute()), "html": str(page.absolute()), "json": str(doc.absolute())}


@dataclass
class DrillResult:
    record: dict[str, Any]
    reports: dict[str, str] = field(default_factory=dict)
    record_error: str | None = None  # the record could not be written to the bucket
    record_bucket: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.record.get("passed"))


# ------------------------------------------------------------------------------------- running


def specs_for(kind: str, stack: str, local: bool = True) -> list[ScenarioSpec]:
    """The scenarios of drill `kind`; `local` is the stack's own `local` output once it is read."""
    if kind == "failover":  # the plan's quarterly exercise: the failover scenario of `drill full`
        return [s for s in specs_for("full", stack, local) if s.name == "region-outage"]
    if kind == "full":
        if not (is_local(stack) and local):
            raise NotLocalStackError(f"drill full injects real damage and runs only on {', '.join(LOCAL_STACKS)}, "
                                     f"not on stack {stack}",
                                     "use `recovery drill db|chain` on real stacks, or `recovery local up` and --stack local")
        return [s for s in load_all() if not s.local_only or is_local(stack)]
    return [checks.DB_SPEC if kind == "db" else checks.CHAIN_SPEC]


def run_drill(kind: str, outputs: StackOutputs, *, report_dir: str | os.PathLike[str] = DEFAULT_REPORT_DIR,
              say: Callable[[str], None] = lambda _m: None, only: list[str] | None = None,
              **params: Any) -> DrillResult:
    """Run drill ``kind`` (db | chain | full), write its record and reports; never raises for a
    scenario's failure (see ``DrillResult.passed``)."""
    specs = specs_for(kind, outputs.stack, outputs.local)
    if only:
        unknown = sorted(set(only) - {s.name for s in specs})
        if unknown:
            raise InputError(f"unknown drill scenario {', '.join(unknown)}",
                             f"choose from {', '.join(s.name for s in specs)}")
        specs = [s for s in specs if s.name in only]
    with DrillLock(outputs.stack):
        sweep(outputs, say)
        started = time.time()
        drill_id = f"{kind}-{_stamp(started)}-{os.getpid()}"
        work = make_work_dir(outputs, drill_id)
        runs: list[DrillRun] = []
        interrupted: BaseException | None = None
        try:
            for i, spec in enumerate(specs, 1):
                say(f"[{i}/{len(specs)}] scenario {spec.name}: {spec.description}")
                sdir = work / spec.name
                sdir.mkdir()
                try:
                    d = run_scenario(spec, outputs.stack, outputs, sdir, say, **params)
                except KeyboardInterrupt as exc:  # SIGTERM / Ctrl-C: its cleanups ran; keep a partial record
                    d = DrillRun(spec.name, spec.component, spec.description, outputs.stack, outputs, sdir, say)
                    d.error = f"interrupted ({exc or 'Ctrl-C'}) before the scenario finished; its cleanups ran"
                    runs.append(d)
                    interrupted = exc
                    break
                runs.append(d)
                sc = d.to_json()
                verdict = "skipped: " + str(d.skipped) if d.skipped else ("passed" if sc["passed"] else
                                                                        f"FAILED: {d.error or 'objective missed'}")
                say(f"[{i}/{len(specs)}] scenario {spec.name}: {verdict}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        ended = time.time()
    scenarios = [r.to_json() for r in runs]
    ran = [s for s in scenarios if not s.get("skipped")]
    record: dict[str, Any] = {
        "drill": kind, "stack": outputs.stack, "started_at": started, "ended_at": ended,
        "passed": bool(ran) and all(s["passed"] for s in ran),
        "objectives": outputs.objectives, "scenarios": scenarios,
        "record_key": record_key(kind, started),
        "tool": "recovery drill", "host": os.uname().nodename,
    }
    record = json.loads(redact.scrub(json.dumps(record, default=str)))
    result = DrillResult(record, record_bucket=outputs.backup_bucket_name)
    try:
        put_record(outputs, record)
    except RecoveryError as exc:  # keep the report: it says where the record should have gone
        result.record_error = exc.line()
        record["record_key"] = f"(not written: {exc.problem})"
    result.reports = write_reports(record, report_dir)
    drill_findings(outputs, record, result.reports)  # one event per failing scenario
    if interrupted is not None:
        say(f"drill interrupted; partial record {record['record_key']}, report {result.reports['html']}")
        raise interrupted
    return result


__all__ = ["DrillFailedError", "DrillResult", "NotLocalStackError", "run_drill", "sweep", "put_record",
           "write_reports", "record_key", "specs_for"]
