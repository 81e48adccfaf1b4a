"""Stop and start the services that depend on the database and chain data.

The commands come from config, never from code paths, so tests and odd hosts can substitute their own:

* ``RECOVERY_SERVICES_CONFIG`` names a TOML (``.toml``) or JSON file (any other suffix).
* Without it, the DR plan's defaults apply: stop ``xai-node`` then ``xai-explorer`` with
  ``systemctl stop``, and start them in the plan's order (``xai-node`` first, then
  ``xai-explorer``, which reads from the node) with ``systemctl start``.

File format (TOML shown; JSON has the same keys)::

    timeout_seconds = 60               # default per command
    start_order = ["xai-node", "xai-explorer"]   # optional; default: reverse of the stop order
    # optional, top level: the libpq service file (pg_service.conf) these services find the database
    # in (they connect with service=NAME); a `restore pitr|snapshot --cutover` rewrites its host/port
    database_service_file = "/etc/xai/pg_service.conf"
    database_service = "xai-db"        # the section in it (default xai-db)

    [[services]]                       # listed in STOP order
    name = "xai-node"
    stop = "systemctl stop xai-node"   # a string (split like a shell would, no shell) or a list
    start = "systemctl start xai-node"
    status = "systemctl is-active --quiet xai-node"   # optional; exit 0 means running
    stopped_exit_codes = [3]           # optional; the status exits that mean "not running" (LSB, systemctl)
    health = "http://127.0.0.1:8080/health"   # optional; `status` checks it (200 = healthy)
    config = ["/etc/xai-explorer"]     # optional; what `restore config` restores for it, then restarts it
    stop_for_restores = false          # optional (default true); false: restores of data leave it running
    timeout_seconds = 120              # optional per-service override

Every command runs as a real subprocess in its own process group, with a timeout; on timeout
the whole group is killed. A failure raises ServiceControlError naming the service and command.

Status is strict: exit 0 is running, an exit listed in ``stopped_exit_codes`` is stopped, and
anything else ("Failed to connect to bus", a timeout, a missing command) is a failure, never
"stopped": a restore must not swap data under a node that may still be running. For the same
reason a stop is confirmed by the status command when there is one.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from recovery.errors import InputError, ServiceControlError
from recovery.files import read_regular_file
from recovery.engine.steps import Step, StepContext

ENV_VAR = "RECOVERY_SERVICES_CONFIG"
DEFAULT_TIMEOUT_S = 60.0
STOPPED_EXIT_CODES = (3,)  # LSB "program is not running"; `systemctl is-active` exits 3 when inactive


@dataclass(frozen=True)
class Service:
    name: str
    stop: tuple[str, ...]
    start: tuple[str, ...]
    status: tuple[str, ...] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    stopped_codes: tuple[int, ...] = STOPPED_EXIT_CODES
    health: str | None = None  # an HTTP URL that answers 200 while the service is healthy (status)
    config: tuple[str, ...] = ()  # the files or directories it reads its configuration from (restore config)
    # False for a service that restores of data leave running (monitoring): only named commands touch it.
    stop_for_restores: bool = True


@dataclass(frozen=True)
class ServicesConfig:
    services: tuple[Service, ...]  # in stop order
    start_order: tuple[str, ...]
    source: str  # the file it came from, or "defaults"
    database_service_file: str | None = None  # pg_service.conf the services read their DB host from
    database_service: str = "xai-db"

    @property
    def stop_order(self) -> tuple[str, ...]:
        """What stop_all stops (restores stop the services that read the data), in order."""
        return tuple(s.name for s in self.services if s.stop_for_restores)

    @property
    def restart_order(self) -> tuple[str, ...]:
        """What start_all starts again: the start order of the services stop_all stops."""
        return tuple(n for n in self.start_order if n in self.stop_order)

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise InputError(f"unknown service {name!r}", f"configured: {', '.join(self.stop_order)}")

    @classmethod
    def defaults(cls) -> ServicesConfig:
        """The DR plan's services and order: stop xai-node, xai-explorer; start xai-node, xai-explorer."""
        return cls.from_mapping(
            {
                "start_order": ["xai-node", "xai-explorer"],
                "services": [
                    {
                        "name": n,
                        "stop": f"systemctl stop {n}",
                        "start": f"systemctl start {n}",
                        "status": f"systemctl is-active --quiet {n}",
                    }
                    for n in ("xai-node", "xai-explorer")
                ]
            },
            source="defaults",
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServicesConfig:
        env = os.environ if environ is None else environ
        path = env.get(ENV_VAR)
        return cls.from_file(path) if path else cls.defaults()

    @classmethod
    def for_stack(cls, outputs: Any, environ: Mapping[str, str] | None = None) -> ServicesConfig:
        """This host's config for `outputs`' services: RECOVERY_SERVICES_CONFIG when set, else the
        stack's own `services_config` output (the local environment's), else systemd's defaults."""
        env = os.environ if environ is None else environ
        path = env.get(ENV_VAR) or getattr(outputs, "services_config", None)
        return cls.from_file(path) if path else cls.defaults()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ServicesConfig:
        p = Path(path)
        # a FIFO or device named by mistake is refused, not opened (a blocking read would hang)
        raw = read_regular_file(p, "services config", InputError, limit=1 << 20,
                                fix_special=f"point {ENV_VAR} at the TOML or JSON file", fix_missing=f"fix {ENV_VAR}")
        try:
            data = tomllib.loads(raw.decode()) if p.suffix == ".toml" else json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"services config {p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}") from exc
        return cls.from_mapping(data, source=str(p))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "config") -> ServicesConfig:
        def bad(why: str) -> InputError:
            return InputError(f"services config {source}: {why}", "see the format in docs/runbook-engine.md")

        if not isinstance(data, dict) or not isinstance(data.get("services"), list) or not data["services"]:
            raise bad("needs a non-empty 'services' list")
        default_timeout = _number(data.get("timeout_seconds", DEFAULT_TIMEOUT_S), bad)
        services = []
        for entry in data["services"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
                raise bad("every service needs a 'name'")
            name = entry["name"]
            services.append(
                Service(
                    name=name,
                    stop=_command(entry.get("stop"), f"{name}.stop", bad),
                    start=_command(entry.get("start"), f"{name}.start", bad),
                    status=_command(entry["status"], f"{name}.status", bad) if entry.get("status") else None,
                    timeout_s=_number(entry.get("timeout_seconds", default_timeout), bad),
                    stopped_codes=_codes(entry.get("stopped_exit_codes", list(STOPPED_EXIT_CODES)), name, bad),
                    health=_url(entry.get("health"), f"{name}.health", bad),
                    config=_paths(entry.get("config"), f"{name}.config", bad),
                    stop_for_restores=_flag(entry.get("stop_for_restores", True), f"{name}.stop_for_restores", bad),
                )
            )
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise bad(f"service names repeat: {names}")
        start_order = data.get("start_order")
        if start_order is None:
            order = tuple(reversed(names))
        else:
            if not isinstance(start_order, list) or sorted(start_order) != sorted(names):
                raise bad(f"'start_order' must list exactly these services: {names}")
            order = tuple(start_order)
        db_file, db_service = data.get("database_service_file"), data.get("database_service", "xai-db")
        if db_file is not None and (not isinstance(db_file, str) or not os.path.isabs(db_file)):
            raise bad("'database_service_file' must be an absolute path")
        if not isinstance(db_service, str) or not db_service:
            raise bad("'database_service' must be a section name")
        return cls(tuple(services), order, source, db_file, db_service)


def _url(value: Any, what: str, bad: Callable[[str], InputError]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise bad(f"{what} must be an http(s) URL, got {value!r}")
    return value


def _paths(value: Any, what: str, bad: Callable[[str], InputError]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith("/") for v in value):
        raise bad(f"{what} must be a list of absolute paths")
    return tuple(value)


def _flag(value: Any, what: str, bad: Callable[[str], InputError]) -> bool:
    if not isinstance(value, bool):
        raise bad(f"{what} must be true or false")
    return value


def _number(value: Any, bad: Callable[[str], InputError]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise bad(f"timeout_seconds must be a positive number, got {value!r}")
    return float(value)


def _codes(value: Any, name: str, bad: Callable[[str], InputError]) -> tuple[int, ...]:
    if (isinstance(value, list) and value
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 256 for v in value)):
        return tuple(value)
    raise bad(f"'{name}.stopped_exit_codes' must be a non-empty list of exit codes 1-255, got {value!r}")


def _command(value: Any, what: str, bad: Callable[[str], InputError]) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return tuple(shlex.split(value))
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise bad(f"'{what}' must be a command string or a non-empty list of strings")


@dataclass(frozen=True)
class CommandResult:
    service: str
    verb: str  # stop, start, status
    command: str
    returncode: int
    duration_s: float
    output: str  # last line of stderr/stdout, for messages


def run_command(argv: Sequence[str], timeout_s: float) -> tuple[int, str, float]:
    """Run argv (no shell) in its own process group; kill the group on timeout.

    Returns (returncode, last output line, seconds). Raises TimeoutError or OSError.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise TimeoutError(f"did not finish within {timeout_s:g}s") from None
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    text = (err or out or b"").decode(errors="replace").strip().splitlines()
    return proc.returncode, (text[-1] if text else ""), time.monotonic() - t0


class ServiceControl:
    """Stops and starts the configured services. ``on_result`` sees each command's outcome."""

    def __init__(
        self,
        config: ServicesConfig | None = None,
        on_result: Callable[[CommandResult], None] | None = None,
    ) -> None:
        self.config = config if config is not None else ServicesConfig.from_env()
        self.on_result = on_result or (lambda r: None)

    def _run(self, svc: Service, verb: str, argv: tuple[str, ...]) -> CommandResult:
        shown = shlex.join(argv)
        doing = "check" if verb == "status" else verb
        try:
            code, last, secs = run_command(argv, svc.timeout_s)
        except TimeoutError as exc:
            raise ServiceControlError(
                f"could not {doing} {svc.name}: `{shown}` {exc}",
                f"check {svc.name} by hand, then rerun",
            ) from None
        except OSError as exc:
            raise ServiceControlError(
                f"could not {doing} {svc.name}: `{shown}` cannot run: {exc.strerror or exc}",
                f"fix the command in {self.config.source}",
            ) from None
        result = CommandResult(svc.name, verb, shown, code, secs, last)
        self.on_result(result)
        if code != 0 and verb != "status":
            raise ServiceControlError(
                f"could not {verb} {svc.name}: `{shown}` exited {code}" + (f": {last}" if last else ""),
                f"check {svc.name} by hand, then rerun",
            )
        return result

    def stop(self, name: str) -> CommandResult:
        svc = self.config.service(name)
        result = self._run(svc, "stop", svc.stop)
        if self.is_running(name):
            raise ServiceControlError(f"`{result.command}` exited 0 but {name} still reports running",
                                      f"stop {name} by hand, then rerun")
        return result

    def start(self, name: str) -> CommandResult:
        svc = self.config.service(name)
        return self._run(svc, "start", svc.start)

    def is_running(self, name: str) -> bool | None:
        """True (exit 0) or False (a stopped exit code) from the status command; None when none is
        configured. Any other answer raises: an unreadable status is never taken for "stopped"."""
        svc = self.config.service(name)
        if svc.status is None:
            return None
        r = self._run(svc, "status", svc.status)
        if r.returncode == 0:
            return True
        if r.returncode in svc.stopped_codes:
            return False
        raise ServiceControlError(
            f"cannot tell whether {name} is running: `{r.command}` exited {r.returncode}"
            + (f": {r.output}" if r.output else "") + f" (stopped is exit {', '.join(map(str, svc.stopped_codes))})",
            f"fix service control on this host (or {name}'s stopped_exit_codes in {self.config.source}), then rerun")

    def all_stopped(self) -> bool:
        """For a step check: every service with a status command reports not running.

        False when any service has no status command (we cannot tell, so stop it again).
        """
        return all(self.is_running(n) is False for n in self.config.stop_order)

    def all_running(self) -> bool:
        return all(self.is_running(n) is True for n in self.config.stop_order)

    def stop_all(self, rollback: bool = True) -> list[CommandResult]:
        """Stop every service in stop order. If one fails and ``rollback``, start again the ones
        this call stopped (best effort, in start order) so the system is left as it was."""
        done: list[CommandResult] = []
        for name in self.config.stop_order:
            try:
                done.append(self.stop(name))
            except ServiceControlError:
                if rollback:
                    stopped = {r.service for r in done}
                    for back in self.config.restart_order:
                        if back in stopped:
                            try:
                                self.start(back)
                            except ServiceControlError:
                                pass
                raise
        return done

    def start_all(self) -> list[CommandResult]:
        """Start every service in start order; stop at the first failure."""
        return [self.start(name) for name in self.config.restart_order]

    def describe_stop(self) -> str:
        """For a step's ``touches``: the commands stop_all runs."""
        return "; ".join(shlex.join(self.config.service(n).stop) for n in self.config.stop_order)

    def describe_start(self) -> str:
        return "; ".join(shlex.join(self.config.service(n).start) for n in self.config.restart_order)

    # -- ready-made runbook steps -------------------------------------------------------------

    def stop_step(self, name: str = "stop-services") -> Step:
        """A runbook step that stops every service; it holds when all report stopped."""

        def action(ctx: StepContext) -> dict[str, Any]:
            done = self.stop_all()
            return {"stopped": [r.service for r in done], "seconds": round(sum(r.duration_s for r in done), 3)}

        return Step(name, action, touches=self.describe_stop(), check=lambda ctx: self.all_stopped())

    def start_step(self, name: str = "start-services", undone_by: tuple[str, ...] = ("stop-services",)) -> Step:
        """A runbook step that starts every service; it holds when all report running. It follows
        its stop step (``undone_by``), so a dry run plans it to run even while they run now."""

        def action(ctx: StepContext) -> dict[str, Any]:
            done = self.start_all()
            return {"started": [r.service for r in done], "seconds": round(sum(r.duration_s for r in done), 3)}

        return Step(name, action, touches=self.describe_start(), check=lambda ctx: self.all_running(),
                    undone_by=undone_by)


__all__ = [
    "ENV_VAR",
    "CommandResult",
    "Service",
    "ServiceControl",
    "ServicesConfig",
    "run_command",
]
