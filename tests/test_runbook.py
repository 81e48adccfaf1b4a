"""The runbook engine: steps, checks, journal (local and S3), resume after a crash, dry run, confirmation."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _engine_fixtures import (  # noqa: F401 - fixtures
    DUMMY_AWS,
    PYTHON,
    REPO,
    RecordingReporter,
    bucket,
    engine_moto,
    s3,
    subprocess_env,
)

from cli_env import run_on_a_terminal
from recovery.errors import InputError, LockHeldError, RefusedError, StepFailedError
from recovery.engine.console import ConsoleReporter
from recovery.engine.journal import FallbackJournalStore, journal_store, LocalJournalStore, S3JournalStore
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step, StepContext, Target

SCRIPT = str(REPO / "tests" / "_engine_script.py")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: what an operator would see changed."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Demo:
    """An in-process three-step runbook over a directory; every action is logged to `ran`."""

    def __init__(self, work: Path, fail_at: str | None = None) -> None:
        self.work = work
        self.fail_at = fail_at
        self.ran: list[str] = []

    def _act(self, name: str) -> None:
        self.ran.append(name)
        if self.fail_at == name:
            raise OSError(f"disk full while doing {name}")

    def runbook(self, **kw: Any) -> Runbook:
        w = self.work

        def prepare(ctx: StepContext) -> dict[str, Any]:
            self._act("prepare")
            (w / "prepared").write_text("1")
            return {"files": 1}

        def copy(ctx: StepContext) -> None:
            self._act("copy")
            (w / "target").write_text("payload")
            ctx.detail["bytes"] = 7

        def copied(ctx: StepContext) -> dict[str, Any] | bool:
            t = w / "target"
            return {"bytes": len(t.read_bytes())} if t.exists() else False

        def finish(ctx: StepContext) -> None:
            self._act("finish")
            (w / "done").write_text(str(ctx.results["copy"]["bytes"]))

        steps = [
            Step("prepare", prepare, touches=f"writes {w}/prepared"),
            Step("copy", copy, touches=f"replaces {w}/target", check=copied),
            Step("finish", finish, touches=f"writes {w}/done"),
        ]
        return Runbook("demo", steps, kw.pop("target", Target("demo-target")), **kw)


def statuses(journal: Any) -> list[tuple[str, str]]:
    return [(s.name, s.status) for s in journal.steps]


def test_run_records_every_step_with_timings_and_detail(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    store = LocalJournalStore(tmp_path / "state")
    rep = RecordingReporter()
    journal = Demo(work).runbook().run(store, rep)

    assert journal.status == "ok"
    assert statuses(journal) == [("prepare", "ok"), ("copy", "ok"), ("finish", "ok")]
    assert journal.step("prepare").detail == {"files": 1}
    assert journal.step("copy").detail == {"bytes": 7}
    assert (work / "done").read_text() == "7"  # a later step saw an earlier step's detail
    durations = journal.step_durations()
    assert set(durations) == {"prepare", "copy", "finish"} and all(d is not None and d >= 0 for d in durations.values())
    assert journal.elapsed_s() is not None and journal.elapsed_s() >= 0
    # the journal on disk is the same JSON the --json form gives, at runs/<runbook>/<run-id>.json
    path = tmp_path / "state" / "runs" / "demo" / f"{journal.run_id}.json"
    assert json.loads(path.read_text()) == json.loads(journal.to_json())
    assert rep.started == ["prepare", "copy", "finish"] and len(rep.summaries) == 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_failure_names_the_step_and_rerun_resumes_without_redoing_completed_steps(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    store = LocalJournalStore(tmp_path / "state")
    demo = Demo(work, fail_at="finish")
    with pytest.raises(StepFailedError) as err:
        demo.runbook().run(store, RecordingReporter())
    assert "step 'finish'" in str(err.value) and "disk full" in str(err.value)
    assert "\n" not in str(err.value)
    failed = err.value.journal  # type: ignore[attr-defined]
    on_disk = json.loads(Path(failed.location).read_text())
    assert on_disk["status"] == "failed" and on_disk["failed_step"] == "finish"
    assert [s["status"] for s in on_disk["steps"]] == ["ok", "ok", "failed"]

    demo.fail_at = None
    demo.ran.clear()
    rep = RecordingReporter()
    journal = demo.runbook().run(store, rep)
    assert journal.run_id == failed.run_id  # resumed, not a new run
    assert demo.ran == ["finish"]  # prepare (journal) and copy (check) were not redone
    assert statuses(journal) == [("prepare", "skipped"), ("copy", "held"), ("finish", "ok")]
    assert journal.step("copy").detail == {"bytes": 7}  # kept from the attempt that did the work
    assert len(journal.attempts) == 2
    assert any("Resuming run" in m for m in rep.messages)


def test_check_wins_over_journal_when_the_world_changed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    store = LocalJournalStore(tmp_path / "state")
    demo = Demo(work, fail_at="finish")
    with pytest.raises(StepFailedError):
        demo.runbook().run(store, RecordingReporter())
    (work / "target").unlink()  # someone undid the copy after the journal said ok
    demo.fail_at = None
    demo.ran.clear()
    journal = demo.runbook().run(store, RecordingReporter())
    assert demo.ran == ["copy", "finish"]
    assert journal.step("copy").status == "ok" and journal.step("copy").attempts == 2


def test_finished_run_is_not_resumed_and_other_targets_are_separate(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    store = LocalJournalStore(tmp_path / "state")
    first = Demo(work).runbook().run(store, RecordingReporter())
    demo = Demo(work, fail_at="prepare")
    with pytest.raises(StepFailedError):
        demo.runbook(target=Target("other")).run(store, RecordingReporter())
    again = Demo(work)
    second = again.runbook().run(store, RecordingReporter())
    assert second.run_id != first.run_id
    assert statuses(second) == [("prepare", "ok"), ("copy", "held"), ("finish", "ok")]
    assert second.step("copy").detail == {"bytes": 7}  # detail from the check, action never ran
    assert again.ran == ["prepare", "finish"]


def test_dry_run_changes_nothing_not_even_the_journal(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "existing").write_text("keep")
    state = tmp_path / "state"
    demo = Demo(work)
    before = tree(tmp_path)
    rep = RecordingReporter()
    plan = demo.runbook(destructive=True).dry_run(LocalJournalStore(state), rep)
    assert tree(tmp_path) == before and not state.exists()
    assert demo.ran == []
    assert [(s.name, s.touches, s.will_run) for s in plan.steps] == [
        ("prepare", f"writes {work}/prepared", True),
        ("copy", f"replaces {work}/target", True),
        ("finish", f"writes {work}/done", True),
    ]
    assert rep.plans == [plan] and plan.to_dict()["dry_run"] is True


def test_dry_run_shows_what_a_resume_would_skip(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    store = LocalJournalStore(tmp_path / "state")
    with pytest.raises(StepFailedError) as err:
        Demo(work, fail_at="finish").runbook().run(store, RecordingReporter())
    before = tree(tmp_path)
    plan = Demo(work).runbook().dry_run(store, RecordingReporter())
    assert tree(tmp_path) == before
    assert plan.resumes == err.value.journal.run_id  # type: ignore[attr-defined]
    assert [(s.name, s.will_run, s.check) for s in plan.steps] == [
        ("prepare", False, None),
        ("copy", False, "holds"),
        ("finish", True, None),
    ]


def test_plain_output_without_a_tty(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = io.StringIO()
    rep = ConsoleReporter(stream=out, stdin=io.StringIO())
    assert rep.interactive is False
    Demo(work).runbook().run(LocalJournalStore(tmp_path / "s"), rep)
    text = out.getvalue()
    assert "[1/3] prepare ..." in text and "[3/3] finish: ok in" in text
    assert "demo on demo-target: ok" in text and "copy: ok" in text and "bytes=7" in text
    assert "\x1b[" not in text and "┃" not in text  # no colour codes or box drawing in a log


# -- confirmation ----------------------------------------------------------------------------


def test_destructive_without_tty_or_yes_is_refused_before_anything_changes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    demo = Demo(work)
    with pytest.raises(RefusedError) as err:
        demo.runbook(destructive=True).run(LocalJournalStore(tmp_path / "state"), RecordingReporter())
    assert "--yes" in str(err.value) and err.value.exit_code == 9
    assert demo.ran == [] and not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    "production, answer, proceeds",
    [
        (False, "y", True),
        (False, "", False),
        (True, "demo-target", True),
        (True, "y", False),
        (True, "demo-targe", False),
    ],
)
def test_confirmation_prompt(tmp_path: Path, production: bool, answer: str, proceeds: bool) -> None:
    work = tmp_path / "work"
    work.mkdir()
    demo = Demo(work)
    rep = RecordingReporter(interactive=True, answers=[answer])
    rb = demo.runbook(destructive=True, target=Target("demo-target", production=production))
    if proceeds:
        assert rb.run(LocalJournalStore(tmp_path / "s"), rep).status == "ok"
    else:
        with pytest.raises(RefusedError):
            rb.run(LocalJournalStore(tmp_path / "s"), rep)
        assert demo.ran == []
    assert len(rep.plans) == 1  # the plan is shown before the question
    assert ("Type its name" in rep.prompts[0]) == production


def test_yes_skips_the_prompt(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    rep = RecordingReporter(interactive=True)
    Demo(work).runbook(destructive=True).run(LocalJournalStore(tmp_path / "s"), rep, yes=True)
    assert rep.prompts == []


def test_no_tty_no_yes_refused_as_a_process(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    before = tree(tmp_path)
    proc = subprocess.run(
        [PYTHON, SCRIPT, str(work), "--journal-dir", str(tmp_path / "state")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=subprocess_env(), timeout=60,
    )
    assert proc.returncode == RefusedError.exit_code == 9
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--yes" in last
    assert "Traceback" not in proc.stderr
    assert tree(tmp_path) == before


# -- lock hook -------------------------------------------------------------------------------


class LosableLock:
    def __init__(self) -> None:
        self.entered = self.exited = False
        self.checks = 0
        self.lost_after = 2

    def __enter__(self) -> LosableLock:
        self.entered = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.exited = True

    def check(self) -> None:
        self.checks += 1
        if self.checks > self.lost_after:
            raise LockHeldError("demo lock: the lock was taken over by another run")


def test_lock_is_held_and_checked_between_steps(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    demo = Demo(work)
    lock = LosableLock()
    with pytest.raises(LockHeldError):
        demo.runbook().run(LocalJournalStore(tmp_path / "s"), RecordingReporter(), lock=lock)
    assert lock.entered and lock.exited
    assert demo.ran == ["prepare", "copy"]  # stopped before the third step


# -- S3 journal ------------------------------------------------------------------------------


def test_s3_journal_is_written_after_every_step_change(tmp_path: Path, s3: Any, bucket: str) -> None:
    seen: list[list[str]] = []
    store = S3JournalStore(s3, bucket)

    def snapshot(ctx: StepContext) -> None:
        body = s3.get_object(Bucket=bucket, Key=f"runs/watch/{ctx.run_id}.json")["Body"].read()
        seen.append([s["status"] for s in json.loads(body)["steps"]])

    rb = Runbook("watch", [Step("a", snapshot), Step("b", snapshot)], "t")
    journal = rb.run(store, RecordingReporter())
    # while each step ran, the stored journal already said so
    assert seen == [["running", "pending"], ["ok", "running"]]
    assert journal.location == f"s3://{bucket}/runs/watch/{journal.run_id}.json"
    body = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/watch/{journal.run_id}.json")["Body"].read())
    assert body["status"] == "ok"


def test_fallback_store_keeps_the_journal_when_s3_is_unavailable(tmp_path: Path, s3: Any) -> None:
    warnings: list[str] = []
    store = journal_store(s3, "no-such-bucket", local_dir=tmp_path, warn=warnings.append)
    assert isinstance(store, FallbackJournalStore)
    work = tmp_path / "work"
    work.mkdir()
    journal = Demo(work).runbook().run(store, RecordingReporter())
    assert journal.status == "ok"
    assert Path(journal.location).exists()
    assert len([w for w in warnings if "instead" in w]) == 1 and "no-such-bucket" in warnings[0]


# -- crash: SIGKILL a real process mid-step, rerun --------------------------------------------


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"runbook exited early: {proc.communicate()}")
        if time.monotonic() > end:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("kill_in", ["copy", "finish"])
def test_sigkill_mid_step_then_rerun_resumes(tmp_path: Path, where: str, kill_in: str, request: Any) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if where == "s3":
        endpoint = request.getfixturevalue("engine_moto")
        bkt = request.getfixturevalue("bucket")
        env = subprocess_env({**DUMMY_AWS, "AWS_ENDPOINT_URL": endpoint})
        store_args = ["--bucket", bkt]
    else:
        env = subprocess_env()
        store_args = ["--journal-dir", str(tmp_path / "state")]
    cmd = [PYTHON, SCRIPT, str(work), "--yes", *store_args]

    proc = subprocess.Popen([*cmd, "--block-at", kill_in], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(work / f"in-{kill_in}", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (work / "done.txt").exists()

    # the journal left behind shows the step in flight
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    plan = json.loads(dry.stdout)
    assert plan["resumes"] is not None
    assert {s["name"]: s["journal_status"] for s in plan["steps"]}[kill_in] == "running"

    rerun = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    journal = json.loads(rerun.stdout)
    assert journal["run_id"] == plan["resumes"] and len(journal["attempts"]) == 2
    assert journal["status"] == "ok"
    assert (work / "target.txt").read_text() == "payload" and (work / "done.txt").read_text() == "7"
    ran = (work / "actions.log").read_text().split()
    if kill_in == "copy":
        assert ran == ["prepare", "copy", "copy", "finish"]  # prepare not redone; copy redone
        assert [s["status"] for s in journal["steps"]] == ["skipped", "ok", "ok"]
    else:
        assert ran == ["prepare", "copy", "finish", "finish"]  # only the killed step redone
        assert [s["status"] for s in journal["steps"]] == ["skipped", "held", "ok"]
    assert all(s["duration_s"] is not None for s in journal["steps"] if s["status"] == "ok")


def test_dry_run_writes_nothing_to_s3(tmp_path: Path, s3: Any, bucket: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    Demo(work).runbook(destructive=True).dry_run(S3JournalStore(s3, bucket), RecordingReporter())
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert tree(work) == {}


def test_rich_table_when_on_a_terminal(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = io.StringIO()
    # issue 18: the per-step table repeats the step lines; it is drawn only when -v asks for it
    rep = ConsoleReporter(stream=out, stdin=io.StringIO(), interactive=False, color=True, verbose=True)
    Demo(work).runbook().run(LocalJournalStore(tmp_path / "s"), rep)
    text = out.getvalue()
    assert "┃" in text or "│" in text  # a table, drawn
    for name in ("prepare", "copy", "finish", "duration"):
        assert name in text


def test_ctrl_c_mid_step_marks_it_failed_and_rerun_resumes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cmd = [PYTHON, SCRIPT, str(work), "--yes", "--journal-dir", str(tmp_path / "state")]
    env = subprocess_env()
    proc = subprocess.Popen([*cmd, "--block-at", "copy"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(work / "in-copy", proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err.strip().splitlines()[-1]
    [path] = (tmp_path / "state" / "runs" / "demo-copy").glob("*.json")
    saved = json.loads(path.read_text())
    assert saved["status"] == "failed" and saved["failed_step"] == "copy"
    assert saved["steps"][1]["error"] == "interrupted"
    rerun = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["run_id"] == path.stem
    assert (work / "actions.log").read_text().split() == ["prepare", "copy", "copy", "finish"]


@pytest.mark.parametrize("typed, code", [("wrong-name", 9), ("<target>", 0)])
def test_production_target_must_be_retyped_on_a_real_terminal(tmp_path: Path, typed: str, code: int) -> None:
    work = tmp_path / "work"
    work.mkdir()
    typed = typed.replace("<target>", str(work))
    cmd = [PYTHON, SCRIPT, str(work), "--production", "--journal-dir", str(tmp_path / "state")]
    rc, screen = run_on_a_terminal(cmd, typed, subprocess_env({"TERM": "xterm", "COLUMNS": "200"}))
    assert rc == code, screen
    assert "PRODUCTION" in screen and "replaces" in screen  # the plan was shown before the question
    if code:
        assert "did not match" in screen and not (work / "actions.log").exists()
    else:
        assert (work / "done.txt").exists() and "demo-copy on" in screen


def test_unfinished_run_with_other_params_is_not_resumed_and_says_so(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    store = LocalJournalStore(tmp_path / "state")
    with pytest.raises(StepFailedError) as err:
        Demo(work, fail_at="finish").runbook(params={"backup": "a"}).run(store, RecordingReporter())
    rep = RecordingReporter()
    journal = Demo(work).runbook(params={"backup": "b"}).run(store, rep)
    assert journal.run_id != err.value.journal.run_id  # type: ignore[attr-defined]
    left = [m for m in rep.messages if m.startswith(f"An unfinished run {err.value.journal.run_id} ")]  # type: ignore[attr-defined]
    assert len(left) == 1 and "different inputs (backup: 'a', now 'b')" in left[0] and "Its journal: " in left[0]
    assert journal.params == {"backup": "b"}


def test_an_unfinished_run_past_the_resume_window_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Yesterday's crashed run is history: a rerun with the same inputs starts afresh and says so."""
    work = tmp_path / "work"
    work.mkdir()
    store = LocalJournalStore(tmp_path / "state")
    with pytest.raises(StepFailedError) as err:
        Demo(work, fail_at="finish").runbook(params={"backup": "a"}).run(store, RecordingReporter())
    old = err.value.journal  # type: ignore[attr-defined]
    old.started_at = old.ended_at = old.attempts[0]["started_at"] = "2026-11-01T00:00:00+00:00"
    store.save(old)
    monkeypatch.setenv("RECOVERY_RESUME_WITHIN_HOURS", "6")
    rep = RecordingReporter()
    journal = Demo(work).runbook(params={"backup": "a"}).run(store, rep)
    assert journal.run_id != old.run_id and len(journal.attempts) == 1
    assert any(m.startswith(f"An unfinished run {old.run_id} ") and "more than RECOVERY_RESUME_WITHIN_HOURS=6" in m
               for m in rep.messages), rep.messages
    monkeypatch.setenv("RECOVERY_RESUME_WITHIN_HOURS", "soon")
    with pytest.raises(InputError) as bad:
        Demo(work, fail_at="finish").runbook(params={"backup": "a"}).run(store, RecordingReporter())
    assert bad.value.line().startswith("RECOVERY_RESUME_WITHIN_HOURS='soon' is not a number in 0..8760 h")


def test_a_rerun_step_runs_again_on_resume(tmp_path: Path) -> None:
    """A preflight guarding irreversible steps judges the world as it is at the resume, not at the crash."""
    seen: list[str] = []
    state = {"fail": True}

    def work(ctx: StepContext) -> None:
        if state["fail"]:
            raise OSError("disk full")

    steps = [Step("preflight", lambda ctx: seen.append("preflight"), rerun=True), Step("work", work)]
    store = LocalJournalStore(tmp_path)
    with pytest.raises(StepFailedError):
        Runbook("guarded", steps, "t").run(store, RecordingReporter())
    state["fail"] = False
    plan = Runbook("guarded", steps, "t").plan(store, RecordingReporter())
    assert [s.will_run for s in plan.steps] == [True, True]
    j = Runbook("guarded", steps, "t").run(store, RecordingReporter())
    assert seen == ["preflight", "preflight"] and len(j.attempts) == 2 and j.step("preflight").status == "ok"


def test_a_check_that_raises_fails_its_step_without_running_the_action(tmp_path: Path) -> None:
    ran: list[str] = []

    def broken_check(ctx: StepContext) -> bool:
        raise ConnectionError("database unreachable")

    rb = Runbook("checked", [Step("probe", lambda ctx: ran.append("probe"), check=broken_check)], "db")
    with pytest.raises(StepFailedError) as err:
        rb.run(LocalJournalStore(tmp_path), RecordingReporter())
    assert "step 'probe'" in str(err.value) and "database unreachable" in str(err.value)
    assert ran == [] and err.value.journal.step("probe").status == "failed"  # type: ignore[attr-defined]


class Switch:
    """A service that is running or not: stop, work and start steps over it, as a restore has."""

    def __init__(self) -> None:
        self.running = True

    def steps(self, undone: bool = True) -> list[Step]:
        return [
            Step("stop", lambda ctx: setattr(self, "running", False), check=lambda ctx: not self.running),
            Step("work", lambda ctx: None),
            Step("start", lambda ctx: setattr(self, "running", True), check=lambda ctx: self.running,
                 undone_by=("stop",) if undone else ()),
        ]


def _will_run(plan: Any) -> list[str]:
    return [s.name for s in plan.steps if s.will_run]


def test_a_step_undone_by_an_earlier_one_is_planned_to_run_as_it_will(tmp_path: Path) -> None:
    store = LocalJournalStore(tmp_path)
    sw = Switch()
    plan = Runbook("svc", sw.steps(), "t").plan(store, RecordingReporter())
    start = plan.steps[2]
    assert (start.check, start.will_run, start.undone_by) == ("holds", True, "stop")
    j = Runbook("svc", sw.steps(), "t").run(store, RecordingReporter())
    assert _will_run(plan) == [s.name for s in j.steps if s.status == "ok"] == ["stop", "work", "start"]
    # without the declaration the plan would say "start: skip", which the run then contradicts
    assert _will_run(Runbook("svc", Switch().steps(undone=False), "t").plan(store, RecordingReporter())) == [
        "stop", "work"]


def test_undone_by_counts_only_when_the_undoing_step_runs(tmp_path: Path) -> None:
    """Stopped already: stop holds, start's check is false now anyway; both plans match the run."""
    sw = Switch()
    sw.running = False
    store = LocalJournalStore(tmp_path)
    plan = Runbook("svc", sw.steps(), "t").plan(store, RecordingReporter())
    assert _will_run(plan) == ["work", "start"] and plan.steps[2].undone_by is None
    j = Runbook("svc", sw.steps(), "t").run(store, RecordingReporter())
    assert [s.name for s in j.steps if s.status == "ok"] == ["work", "start"]


def test_undone_by_must_name_an_earlier_step() -> None:
    sw = Switch()
    stop, work, start = sw.steps()
    with pytest.raises(ValueError, match="undone_by"):
        Runbook("svc", [start, stop, work], "t")
    with pytest.raises(ValueError, match="undone_by"):
        Runbook("svc", [stop, Step("start", start.action, check=start.check, undone_by=("stpo",))], "t")


def test_plain_plan_line_says_which_step_undoes_a_check(tmp_path: Path) -> None:
    buf = io.StringIO()
    Runbook("svc", Switch().steps(), "t").dry_run(LocalJournalStore(tmp_path), ConsoleReporter(stream=buf, color=False))
    assert "3. start [run] touches: - (holds now; stop runs first and undoes it)" in buf.getvalue()


@pytest.mark.parametrize("production", [False, True])
def test_the_prompt_and_the_plan_restate_the_stakes(tmp_path: Path, production: bool) -> None:
    stakes = {"mode": "switchover", "new writer": "db-dr", "expected loss": "none"}
    rep = RecordingReporter(interactive=True, answers=["n"])
    rb = Runbook("move", Switch().steps(), Target("site", production=production), destructive=True, stakes=stakes)
    with pytest.raises(RefusedError):
        rb.run(LocalJournalStore(tmp_path), rep)
    assert "mode: switchover; new writer: db-dr; expected loss: none" in rep.prompts[0]
    assert rep.plans[0].to_dict()["stakes"] == stakes
    buf = io.StringIO()
    rb.dry_run(LocalJournalStore(tmp_path), ConsoleReporter(stream=buf, color=False))
    assert "  mode: switchover; new writer: db-dr; expected loss: none" in buf.getvalue()
