"""Plumbing shared by every command: error mapping, common options, output and progress.

Commands live in the modules of this package, one per area; `recovery/cli.py` only builds the
top-level group from them. Results go to stdout (`--json`: one JSON document); logs, progress
and errors go to stderr. Exit codes: 0 success; 2 usage (unknown or missing option or command);
4 a bad option value (as InputError); otherwise the RecoveryError class's code (recovery/errors.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click

from recovery import redact
from recovery.errors import IncompleteRestoreError, InputError, RecoveryError, StepFailedError, with_stack
from recovery.units import human_bytes, human_seconds  # noqa: F401 - re-exported for the commands

log = logging.getLogger("recovery")



def terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def setup_logging(verbose: int, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("recovery: %(levelname)s: %(message)s"))
    handler.addFilter(redact.RedactingFilter())
    root = logging.getLogger("recovery")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING)
    # botocore's DEBUG log prints response bodies (secrets!); never raise it above WARNING.
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Main(click.Group):
    """Maps RecoveryError (and stray AWS errors) to a one-line message and the class's exit code.
    Click's own usage errors get the same one line instead of click's three (usage, hint, error)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # the top-level options (`recovery --bogus`)
            self._usage(exc)
            raise AssertionError("unreachable")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's options, parsed inside this invoke
            self._usage(exc)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except RecoveryError as exc:
            self._fail(ctx, exc, with_stack(exc.line(), (ctx.obj or {}).get("stack")), exc.exit_code)
        except KeyboardInterrupt:
            self._fail(ctx, None, "interrupted", 130)
        except BrokenPipeError:
            # `recovery list | head`: the reader left. Exit like any Unix tool killed by SIGPIPE,
            # without a message, and keep Python from complaining while flushing stdout.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except Exception as exc:  # noqa: BLE001 - the top-level mapping: anything left is one line and exit 1
            from botocore.exceptions import BotoCoreError, ClientError  # here: botocore stays out of --help

            if isinstance(exc, (BotoCoreError, ClientError)):
                from recovery.aws import aws_error

                err = aws_error(exc, "talking to AWS")
                self._fail(ctx, exc, err.line(), err.exit_code)
            self._fail(ctx, exc, f"unexpected {type(exc).__name__}: {exc} - rerun with --debug and report it", 1)

    @classmethod
    def _usage(cls, exc: click.UsageError) -> None:
        """A bad option value is a bad input (InputError's code); anything else is usage (2)."""
        where = exc.ctx.command_path if exc.ctx is not None else "recovery"
        bad_value = isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter)
        code = InputError.exit_code if bad_value else 2
        line = f"{exc.format_message().rstrip('.')} - see `{where} --help`"
        ctx = exc.ctx or click.Context(click.Command("recovery"))
        cls._fail(ctx.find_root(), None, line, code)

    @staticmethod
    def _fail(ctx: click.Context, exc: BaseException | None, line: str, code: int) -> None:
        obj = ctx.obj or {}
        if obj.get("json") and not obj.get("emitted"):  # machines get the failure on stdout too
            click.echo(json.dumps({"ok": False, "error": redact.scrub(line), "exit_code": code}))
        if obj.get("debug") and exc is not None:
            sys.stderr.write(redact.scrub("".join(traceback.format_exception(exc))))
        sys.stderr.write("error: " + redact.scrub(line) + "\n")
        sys.stderr.flush()
        ctx.exit(code)


def _note_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    root = ctx.find_root()
    if root.obj is not None:
        root.obj["json"] = value
    return value


def _note_stack(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    # The stack in use, for the hints of an error (errors.with_stack) that the top level prints.
    root = ctx.find_root()
    if root.obj is not None:
        root.obj["stack"] = value
    return value


def stack_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--json", "as_json", is_flag=True, callback=_note_json, is_eager=True,
                     help="Print a machine-readable result on stdout.")(f)
    f = click.option("--outputs", "outputs_file", envvar="RECOVERY_OUTPUTS",
                     help="JSON of `pulumi stack output --json` or `pulumi stack export` [env RECOVERY_OUTPUTS].")(f)
    f = click.option("--stack", required=True, envvar="RECOVERY_STACK", callback=_note_stack,
                     help="Pulumi stack name, e.g. production [env RECOVERY_STACK].")(f)
    return f


def outputs_for(stack: str, outputs_file: str | None, job: str) -> Any:
    """The stack's outputs; from here on the command runs as `job`'s role of that stack (recovery/aws.py)."""
    from recovery.aws import act_as
    from recovery.stack import load_outputs

    outputs = load_outputs(stack, outputs_file)
    act_as(outputs, job)
    return outputs


def node_data_dir(outputs: Any, given: str | None) -> str:
    """--data-dir, else the stack's node_data_dir output (the local environment has one); else say it."""
    if given:
        return given
    if outputs.node_data_dir:
        return str(outputs.node_data_dir)
    raise InputError("no --data-dir given", "pass the node's data directory, e.g. --data-dir /var/lib/xai/blockchain")


def local_node_url(outputs: Any) -> str:
    """The node API on this host: the plan's localhost:8080, or the local environment's node."""
    return str(outputs.node_api_url) if outputs.local else "http://localhost:8080"


def emit_json(doc: Any) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().obj is not None:
        ctx.find_root().obj["emitted"] = True
    click.echo(redact.scrub(json.dumps(doc, indent=2, sort_keys=True, default=str)))


def out(line: str) -> None:
    click.echo(redact.scrub(line))


def interactive(as_json: bool) -> bool:
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()


class _Bar:
    """What `progress` yields: call it with the bytes just moved; `total(n)` when the size becomes
    known (an estimate is fine), so the bar shows a total and an ETA."""

    def __init__(self, p: Any, task: Any) -> None:
        self._p, self._task = p, task

    def __call__(self, n: int) -> None:
        self._p.advance(self._task, n)

    def total(self, n: int) -> None:
        self._p.update(self._task, total=n)


@contextmanager
def progress(enabled: bool, description: str) -> Iterator[_Bar | None]:
    """A transient bar on stderr, on a terminal only (`enabled`): bytes, rate, elapsed; with a total, the ETA."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as p:
        yield _Bar(p, p.add_task(description, total=None))


def mb(n: int | float) -> str:
    """Kept for callers that say `mb`: the size in human units (recovery/units.py), never '0.0 MB'."""
    return human_bytes(n)


def table(rows: list[tuple[str, ...]]) -> None:
    """Plain columns on stdout (the first row is the header): greppable, no terminal needed."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def confirm(prompt_what: str, target: str, production: bool, yes: bool) -> None:
    """Ask before deleting: RefusedError without a terminal unless --yes; production asks for its name."""
    from recovery.errors import RefusedError

    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise RefusedError(f"{prompt_what} and needs confirmation, but there is no terminal",
                           "check the list with --dry-run, then rerun with --yes")
    if production:
        answer = click.prompt(f"{target} is a PRODUCTION stack. Type its name to go ahead", default="",
                              show_default=False, err=True)
        if answer != target:
            raise RefusedError(f"confirmation did not match {target!r}; nothing was deleted",
                               "rerun and type the stack's name exactly")
    elif not click.confirm(f"{prompt_what}. Go ahead?", default=False, err=True):
        raise RefusedError("cancelled by the operator; nothing was deleted")


def _note_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> int:
    root = ctx.find_root()
    if root.obj is not None and value:
        root.obj["verbose"] = root.obj.get("verbose", 0) + value
    return value


def console_reporter() -> Any:
    """The engine's reporter for this command: as verbose as `-v` asked, here or before the command."""
    from recovery.engine.console import ConsoleReporter

    ctx = click.get_current_context(silent=True)
    obj = (ctx.find_root().obj if ctx is not None else None) or {}
    return ConsoleReporter(verbose=bool(obj.get("verbose")))


def runbook_options(f: Callable[..., Any]) -> Callable[..., Any]:
    # not a parameter of each command: console_reporter() reads it from the root context
    f = click.option("-v", "--verbose", count=True, expose_value=False, callback=_note_verbose,
                     help="Show every step's detail and the per-step table.")(f)
    f = click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")(f)
    f = click.option("--dry-run", is_flag=True, help="Show the plan and change nothing.")(f)
    return stack_options(f)


def journal_store_for(outputs: Any, reporter: Any) -> Any:
    from recovery.aws import client
    from recovery.engine.journal import journal_store

    return journal_store(client("s3", outputs.region), outputs.backup_bucket_name, warn=reporter.message)


def finish_runbook(run: Callable[[], tuple[Any, Any]], as_json: bool) -> Any:
    """Run; print the journal (or plan) as JSON when asked, on failure too."""
    try:
        journal, plan = run()
    except StepFailedError as err:
        if as_json and getattr(err, "journal", None) is not None:
            emit_json(err.journal.to_dict())  # type: ignore[attr-defined]
        raise
    if as_json:
        emit_json(plan if plan is not None else journal.to_dict())
    gaps = journal.not_restored() if journal is not None else []
    if gaps:
        raise IncompleteRestoreError(
            f"{journal.runbook} finished, but {len(gaps)} item(s) were not restored: " + "; ".join(gaps[:3])
            + (f"; and {len(gaps) - 3} more" if len(gaps) > 3 else ""),
            f"apply them by hand; the journal lists them all ({journal.location})")
    return journal

