"""A tiny runbook run as a real process by tests/test_runbook.py (crash, refusal, exit codes).

It copies a payload into <dir>/target.txt in three steps and logs every action it performs to
<dir>/actions.log, so a test can tell which steps really ran. Exit codes are the RecoveryError
classes' codes, as the real CLI maps them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import boto3

from recovery.errors import RecoveryError
from recovery.engine.console import ConsoleReporter
from recovery.engine.journal import LocalJournalStore, S3JournalStore
from recovery.engine.runbook import Runbook
from recovery.engine.steps import Step, StepContext, Target


def build(d: Path, block_at: str | None, fail_at: str | None, production: bool) -> Runbook:
    def log(name: str) -> None:
        with open(d / "actions.log", "a") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def maybe_block(name: str) -> None:
        if fail_at == name:
            raise OSError(f"simulated failure in {name}")
        if block_at == name:
            (d / f"in-{name}").write_text(str(os.getpid()))
            while not (d / "release").exists():
                time.sleep(0.05)

    def prepare(ctx: StepContext) -> dict[str, object]:
        log("prepare")
        (d / "prepared.txt").write_text("ready")
        maybe_block("prepare")
        return {"files": 1}

    def copy(ctx: StepContext) -> dict[str, object]:
        log("copy")
        tmp = d / "target.tmp"
        tmp.write_text("pay")
        maybe_block("copy")
        tmp.write_text("payload")
        os.replace(tmp, d / "target.txt")
        return {"bytes": 7}

    def copied(ctx: StepContext) -> bool:
        t = d / "target.txt"
        return t.exists() and t.read_text() == "payload"

    def finish(ctx: StepContext) -> None:
        log("finish")
        maybe_block("finish")
        (d / "done.txt").write_text(str(ctx.results["copy"].get("bytes", "?")))

    steps = [
        Step("prepare", prepare, touches=f"writes {d}/prepared.txt"),
        Step("copy", copy, touches=f"replaces {d}/target.txt", check=copied),
        Step("finish", finish, touches=f"writes {d}/done.txt"),
    ]
    return Runbook("demo-copy", steps, Target(str(d), production=production), destructive=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--journal-dir", type=Path)
    ap.add_argument("--bucket")
    ap.add_argument("--yes", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--block-at")
    ap.add_argument("--fail-at")
    ap.add_argument("--production", action="store_true")
    args = ap.parse_args()
    # Ctrl-C as on a foreground terminal even when the suite itself runs as a background job: a
    # shell's `cmd &` starts it with SIGINT ignored, and every child inherits that across exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rb = build(args.dir, args.block_at, args.fail_at, args.production)
    if args.bucket:
        store = S3JournalStore(boto3.client("s3", region_name="us-east-1"), args.bucket)
    else:
        store = LocalJournalStore(args.journal_dir)
    reporter = ConsoleReporter()
    try:
        if args.dry_run:
            import json

            print(json.dumps(rb.dry_run(store, reporter).to_dict()))
            return 0
        journal = rb.run(store, reporter, yes=args.yes)
    except RecoveryError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted - rerun the same command to resume", file=sys.stderr)
        return 130
    print(journal.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
