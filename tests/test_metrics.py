"""`recovery metrics` on a catalogue with known successes and failures, built in a real moto server.

Every figure asserted here is worked out by hand from the records the fixture writes: backups per
schedule window (with one failed verification, an orphan object and an orphan manifest), verify
runs, restore journals (ok, failed, still running) and drill records (passed, failed, skipped
scenarios, plus the Markdown/HTML reports beside them that must be ignored).
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from recovery import aws
from recovery.catalog import MANIFEST_SUFFIX, TS_FORMAT, VERIFY_SUFFIX, Manifest, iso, object_name, prefix
from recovery.local.deploy_bound import site_for_tests
from recovery.local.moto_server import MotoServer
from recovery.engine.journal import Journal, S3JournalStore
from recovery.reports.metrics import METRICS, collect, p95, render_prometheus, write_textfile
from recovery.stack import parse_outputs
from tests.conftest import DB_PASSWORD, run_cli

STACK = "production"


# ------------------------------------------------------------------------- a tiny exposition parser

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse the text format strictly enough to catch what Prometheus would reject."""
    assert text.endswith("\n"), "exposition must end with a newline"
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: dict[str, str] = {}
    helped: set[str] = set()
    seen_families: list[str] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped, f"HELP twice for {name}"
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "untyped", "summary", "histogram")
            assert name not in typed, f"TYPE twice for {name}"
            typed[name] = kind
            seen_families.append(name)
            continue
        assert line and not line.startswith("#"), f"unexpected line {line!r}"
        m = _SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        name, _, body, value = m.groups()
        assert name in typed and seen_families[-1] == name, f"{name}: samples must follow their TYPE line, grouped"
        labels: list[tuple[str, str]] = []
        if body:
            pos = 0
            while pos < len(body):
                lm = _LABEL.match(body, pos)
                assert lm, f"bad labels in {line!r}"
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
        key = (name, frozenset(labels))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    assert set(typed) == helped
    return samples


def val(samples: dict[Any, float], name: str, **labels: str) -> float:
    labels = {"stack": STACK, **labels}
    return samples[(name, frozenset(labels.items()))]


# ------------------------------------------------------------------------------ the known catalogue


@pytest.fixture()
def known(moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    raw, oncall = site_for_tests(moto_server, db_password=DB_PASSWORD)
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps(raw))
    for k, v in moto_server.env().items():
        monkeypatch.setenv(k, v)
    aws.forget_sessions()  # metrics read as the environment's identity (the root here), not a last test's role
    outputs = parse_outputs(STACK, raw)
    bucket = outputs.backup_bucket_name
    # the root's own writes into the vault carry its key, or the bucket policy refuses them
    aws.vault_key(bucket, outputs.backup_kms_key_arn)
    s3 = aws.encrypt_into_vaults(moto_server.client("s3", outputs.region))
    # Whole seconds, so a backup's name (start time) is exact; ages below are exact too.
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def put(key: str, doc: Any) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode() if not isinstance(doc, bytes) else doc)

    def backup(kind: str, ago: timedelta, verified: bool | None = None, *, manifest: bool = True,
               obj: bool = True) -> str:
        ended = now - ago
        started = ended - timedelta(seconds=10)
        key = prefix(kind) + object_name(kind, started, "gzip")
        if obj:
            put(key, b"x")
        if manifest:
            m = Manifest(kind=kind, key=key, bucket=bucket, format="gzip", content="sql" if kind == "db" else "tar",
                         source="test", stored_bytes=1, raw_bytes=1, sha256="0" * 64, kms_key_id="k",
                         started_at=iso(started), ended_at=iso(ended), tool_version="t", stack=STACK)
            put(key + MANIFEST_SUFFIX, m.to_json())
        if verified is not None:
            put(key + VERIFY_SUFFIX, {"ok": verified, "at": iso(ended)})
        return key

    h = lambda x: timedelta(hours=x)  # noqa: E731
    # db, hourly schedule: 24 expected in 24 h, 168 in 7 d.
    for i in range(20):  # 0.5 h .. 19.5 h ago; the newest one FAILED verification, another passed it
        backup("db", h(0.5 + i), verified=False if i == 0 else True if i == 5 else None)
    for i in range(30):  # 30 h .. 88 h ago
        backup("db", h(30 + 2 * i))
    backup("db", h(2.25), manifest=False)  # an upload that never got its manifest: not a backup
    backup("db", h(3.25), obj=False)  # a manifest whose object expired: not a backup
    backup("db", timedelta(days=10))  # outside every window
    # chain, every 6 h: 4 expected in 24 h, 28 in 7 d. Five in 24 h (a manual extra): capped at 100%.
    for ago in (1, 5, 9, 13, 17, 48, 72):
        backup("chain", h(ago))

    # verification runs: 2 ok, 1 failed in the last 7 days; one ok 10 days ago (outside)
    for when, ok in ((h(3), True), (h(27), False), (h(100), True), (timedelta(days=10), True)):
        t = now - when
        put(f"verifications/{t:%Y/%m/%d}/verify-{t.strftime(TS_FORMAT)}.json", {"ok": ok, "started_at": iso(t)})

    # restore journals, in the engine's own format
    store = S3JournalStore(s3, bucket)
    n = 0

    def journal(runbook: str, status: str, elapsed: float | None) -> None:
        nonlocal n
        n += 1
        start = now - h(n)
        end = (start + timedelta(seconds=elapsed)).isoformat() if elapsed is not None else None
        store.save(Journal(runbook=runbook, run_id=f"{start.strftime(TS_FORMAT)}-{n:06x}", target="t", production=False,
                           params={}, steps=[], status=status, started_at=start.isoformat(), ended_at=end))

    for el in (100, 200, 400):
        journal("restore-db", "ok", el)
    journal("restore-db", "failed", 30)
    journal("restore-db", "running", None)  # in flight or crashed: neither success nor failure
    journal("restore-chain", "ok", 50)
    journal("restore-chain", "failed", 5)

    # drill records (recovery/drills/run.py's wrapper around DrillRun.to_json()) and their reports
    def scenario(name: str, component: str, rto: float | None, rto_met: bool | None, rpo_met: bool | None,
                 skipped: str | None = None) -> dict[str, Any]:
        t = now.timestamp()
        return {"name": name, "component": component, "skipped": skipped, "error": None,
                "passed": None if skipped else bool(rto_met is not False and rpo_met is not False),
                "injected_at": t - 10, "detected_at": t - 5 if rto else None,
                "recovered_at": t if rto else None, "rto_seconds": rto, "rto_met": rto_met,
                "rpo_seconds": 1.0 if rpo_met is not None else None, "rpo_met": rpo_met, "steps": []}

    def drill(kind: str, ago: timedelta, passed: bool, scenarios: list[dict[str, Any]]) -> None:
        t = now - ago
        key = f"drills/{t:%Y/%m/%d}/drill-{kind}-{t.strftime(TS_FORMAT)}.json"
        put(key, {"drill": kind, "stack": STACK, "started_at": t.timestamp() - 60, "ended_at": t.timestamp(),
                  "passed": passed, "objectives": raw["objectives"], "scenarios": scenarios, "record_key": key})
        put(key.replace(".json", ".md"), b"# report")
        put(key.replace(".json", ".html"), b"<html></html>")

    drill("full", h(50), False, [scenario("database-corruption", "postgresql", 120, True, True),
                                 scenario("chain-data-loss", "node", 600, True, False),
                                 scenario("cache-loss", "redis", None, None, None, skipped="no redis-server")])
    drill("db", h(20), True, [scenario("db", "postgresql", 300, True, None)])
    drill("full", h(2), True, [scenario("database-corruption", "postgresql", 60, True, True),
                               scenario("chain-data-loss", "node", 900, True, True)])
    put("drills/locks/drill-production.json", {"owner": "someone"})  # JSON but not a drill record
    return {"outputs": outputs, "s3": s3, "now": now, "file": f, "env": {**moto_server.env(), **oncall.env()}}


def test_rates_ages_p95_and_compliance_are_exact(known: dict[str, Any]) -> None:
    report = collect(known["outputs"], s3=known["s3"], now=known["now"])
    doc = report.to_json()
    db, chain = doc["backups"]["db"], doc["backups"]["chain"]
    assert db["windows"]["24h"] == {"expected": 24, "catalogued": 20, "failed_verification": 1,
                                    "success_ratio": 19 / 24}
    assert db["windows"]["7d"] == {"expected": 168, "catalogued": 50, "failed_verification": 1,
                                   "success_ratio": 49 / 168}
    assert chain["windows"]["24h"]["success_ratio"] == 1.0  # 5 good of 4 expected: capped
    assert chain["windows"]["7d"] == {"expected": 28, "catalogued": 7, "failed_verification": 0,
                                      "success_ratio": 7 / 28}
    # The newest db backup failed verification: the last *successful* one is 1.5 h old, exactly at
    # the 90 min limit (interval 60 min + half of it, recovery/backups/age.py) and so still within
    # it; the chain's is 1 h old within 9 h.
    assert db["last_success_age_seconds"] == 5400 and db["rpo_limit_seconds"] == 5400
    assert db["rpo_compliant"] is True
    assert chain["last_success_age_seconds"] == 3600 and chain["rpo_compliant"] is True
    # config backups are scheduled hourly (they carry the explorer's state, RPO 1 h); none here
    cfg = doc["backups"]["config"]
    assert cfg["component"] == "explorer" and cfg["windows"]["24h"]["expected"] == 24
    assert cfg["windows"]["24h"]["success_ratio"] == 0.0

    assert doc["verifications"] == {"window": "7d", "runs": 3, "ok": 2, "success_ratio": 2 / 3}
    r = doc["restores"]
    assert r["by_kind"]["db"] == {"ok": 3, "failed": 1, "partial": 0, "running": 1, "component": "postgresql", "success_ratio": 0.75}
    assert r["by_kind"]["chain"]["success_ratio"] == 0.5
    assert r["success_ratio"] == 4 / 6

    d = doc["drills"]
    assert (d["records"], d["passed"], d["failed"]) == (3, 2, 1)
    assert d["by_drill"] == {"full": {"passed": 1, "failed": 1}, "db": {"passed": 1, "failed": 0}}

    rt = doc["recovery_time"]
    assert rt["postgresql"]["drill"] == {"samples": 3, "mean_seconds": 160.0, "p95_seconds": 300.0}
    assert rt["node"]["drill"] == {"samples": 2, "mean_seconds": 750.0, "p95_seconds": 900.0}
    assert rt["postgresql"]["restore"]["mean_seconds"] == pytest.approx(700 / 3)
    assert rt["postgresql"]["restore"]["p95_seconds"] == 400.0
    assert rt["node"]["restore"] == {"samples": 1, "mean_seconds": 50.0, "p95_seconds": 50.0}
    assert "redis" not in rt  # the skipped scenario measured nothing

    c = doc["compliance"]
    assert c["postgresql"]["rto_compliance_ratio"] == 1.0 and c["postgresql"]["rpo_decided"] == 2
    assert c["node"]["rpo_compliance_ratio"] == 0.5 and c["node"]["rto_compliance_ratio"] == 1.0
    assert c["redis"]["rto_compliance_ratio"] is None and c["postgresql"]["rto_objective_seconds"] == 900


def test_p95_is_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([7.0]) == 7.0
    assert p95(float(i) for i in range(1, 21)) == 19.0  # ceil(0.95 * 20) = 19th smallest
    assert p95(float(i) for i in range(1, 101)) == 95.0
    assert p95([5.0, 1.0, 3.0]) == 5.0


def test_exposition_parses_and_carries_the_same_numbers(known: dict[str, Any]) -> None:
    report = collect(known["outputs"], s3=known["s3"], now=known["now"])
    samples = parse_exposition(render_prometheus(report.samples))
    assert {name for name, _ in samples} <= set(METRICS)
    assert val(samples, "xai_dr_backup_success_ratio", kind="db", component="postgresql", window="24h") == 19 / 24
    assert val(samples, "xai_dr_backup_last_success_age_seconds", kind="db", component="postgresql") == 5400
    assert val(samples, "xai_dr_backup_rpo_compliant", kind="db", component="postgresql") == 1  # at the 90 min limit
    assert val(samples, "xai_dr_restore_success_ratio", kind="all", component="all") == pytest.approx(4 / 6)
    assert val(samples, "xai_dr_restore_runs", kind="pitr", component="postgresql", result="ok") == 0
    assert val(samples, "xai_dr_drill_success_ratio", kind="all") == pytest.approx(2 / 3)
    assert val(samples, "xai_dr_recovery_time_p95_seconds", component="node", source="drill") == 900
    assert val(samples, "xai_dr_rpo_compliance_ratio", component="node") == 0.5
    assert val(samples, "xai_dr_backup_last_success_timestamp_seconds", kind="chain", component="node") == \
        (known["now"] - timedelta(hours=1)).timestamp()
    for (_name, labels), v in samples.items():
        assert ("stack", STACK) in labels and not math.isnan(v)


def test_label_values_are_escaped() -> None:
    from recovery.reports.metrics import Sample

    text = render_prometheus([Sample("xai_dr_drill_runs", {"stack": 'a"b\\c\nd', "kind": "x", "result": "passed"}, 1)])
    samples = parse_exposition(text)
    ((_, labels),) = samples
    assert dict(labels)["stack"] == 'a\\"b\\\\c\\nd'  # escaped on the wire, one line


def test_cli_textfile_is_replaced_atomically(known: dict[str, Any], tmp_path: Path) -> None:
    out_dir = tmp_path / "textfile_collector"
    out_dir.mkdir()
    target = out_dir / "xai_dr.prom"
    target.write_text("# stale\n")
    reader = open(target)  # a scrape in progress keeps reading the old file, never a half-written one
    before = os.stat(target).st_ino
    env = {**known["env"], "RECOVERY_AWS_MAX_ATTEMPTS": "2"}
    r = run_cli("metrics", "--stack", STACK, "--outputs", str(known["file"]), "--textfile", str(target), env=env)
    assert r.code == 0, r.err
    assert "wrote" in r.out and str(target) in r.out
    assert os.stat(target).st_ino != before, "the file was renamed over, not rewritten in place"
    assert reader.read() == "# stale\n"
    reader.close()
    assert sorted(p.name for p in out_dir.iterdir()) == ["xai_dr.prom"], "no temp file left behind"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    samples = parse_exposition(target.read_text())
    assert val(samples, "xai_dr_backup_catalogued", kind="db", component="postgresql", window="7d") == 50

    j = run_cli("metrics", "--stack", STACK, "--outputs", str(known["file"]), "--format", "json", env=env)
    assert j.code == 0, j.err
    assert j.json()["restores"]["by_kind"]["db"]["ok"] == 3

    bad = run_cli("metrics", "--stack", STACK, "--outputs", str(known["file"]), "--textfile",
                  str(tmp_path / "missing" / "x.prom"), env=env)
    assert bad.code == 4 and len(bad.err.strip().splitlines()) == 1 and "does not exist" in bad.err


def test_write_textfile_refuses_other_suffixes(tmp_path: Path) -> None:
    from recovery.errors import InputError

    with pytest.raises(InputError):
        write_textfile(tmp_path / "metrics.txt", "x\n")
    assert list(tmp_path.iterdir()) == []


def test_unknown_bucket_is_one_line_exit_5(known: dict[str, Any], tmp_path: Path) -> None:
    raw = json.loads(known["file"].read_text())
    raw["backup_bucket_name"] = "xai-backups-nope"
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(raw))
    r = run_cli("metrics", "--stack", STACK, "--outputs", str(f), env={**known["env"], "RECOVERY_AWS_MAX_ATTEMPTS": "1"})
    assert r.code == 5 and len(r.err.strip().splitlines()) == 1 and "xai-backups-nope" in r.err
    assert r.out == ""


def test_backups_are_due_only_since_the_first_one_kept(known: dict[str, Any]) -> None:
    """Issue 18: a new environment's first backups read 100%, not 3/24; with none kept at all the whole
    window counts (a stack whose backups never ran must alarm)."""
    from types import SimpleNamespace

    from recovery.reports.metrics import _backup_kind_metrics, _due_from, _Samples

    now = known["now"]
    made = [SimpleNamespace(manifest=SimpleNamespace(time=now - timedelta(minutes=m), key=f"k{m}"), verified=None)
            for m in (150, 90, 30)]  # hourly schedule, first backup 2.5 h ago: slots at -150, -90, -30 min
    kb = _backup_kind_metrics(known["outputs"], "db", made, now, _Samples(STACK), _due_from(made))  # type: ignore[arg-type]
    assert kb["windows"]["24h"] == {"expected": 3, "catalogued": 3, "failed_verification": 0, "success_ratio": 1.0}
    assert kb["windows"]["7d"]["success_ratio"] == 1.0
    none = _backup_kind_metrics(known["outputs"], "db", [], now, _Samples(STACK), _due_from([]))
    assert none["windows"]["24h"] == {"expected": 24, "catalogued": 0, "failed_verification": 0, "success_ratio": 0.0}
