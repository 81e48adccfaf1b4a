"""Launch and stop the simulated XAI node (``recovery.local.node_sim``) as a real process.

    node = start_node(data_dir, init=True, pg_dsn=cluster.conninfo(), pg_password=cluster.password)
    node.url, node.pid, node.port          # http://127.0.0.1:<port>
    node.stop()                            # SIGTERM, wait, exit code (SIGKILL only after the timeout)

The node runs in its own session, so it outlives the caller when the local environment leaves it
running (``recovery local up``); ``NodeProcess.attach(run_dir, name)`` finds it again from its pid
and port files. The PostgreSQL password goes to the child through PGPASSWORD, never its argv.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from recovery.processes import pid_alive

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class NodeProcess:
    def __init__(self, pid: int, port: int, *, data_dir: Path, name: str, run_dir: Path,
                 popen: subprocess.Popen[bytes] | None = None, log_path: Path | None = None) -> None:
        self.pid = pid
        self.port = port
        self.data_dir = data_dir
        self.name = name
        self.run_dir = run_dir
        self.log_path = log_path
        self._popen = popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def port_file(self) -> Path:
        return self.run_dir / f"{self.name}.port"

    @classmethod
    def attach(cls, run_dir: str | os.PathLike[str], name: str = "xai-node",
               data_dir: str | os.PathLike[str] | None = None) -> "NodeProcess":
        """A node started earlier (maybe by another process), from its pid and port files."""
        rd = Path(run_dir)
        pid = int((rd / f"{name}.pid").read_text().split()[0])
        port = int((rd / f"{name}.port").read_text().split()[0])
        return cls(pid, port, data_dir=Path(data_dir) if data_dir else rd, name=name, run_dir=rd)

    def is_running(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid)

    def get(self, path: str, timeout: float = 5.0) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return dict(json.loads(resp.read()))

    def post(self, path: str, body: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body if body is not None else {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return dict(json.loads(resp.read()))

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for exit; the exit code when the node is our child, else None."""
        if self._popen is not None:
            return self._popen.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_running():
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"node pid {self.pid}", timeout or 0)
            time.sleep(0.05)
        return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it has not stopped within ``timeout``."""
        if not self.is_running():
            return self._popen.returncode if self._popen is not None else None
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.wait(5)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"NodeProcess(name={self.name!r}, pid={self.pid}, url={self.url!r}, data_dir={str(self.data_dir)!r})"


def start_node(
    data_dir: str | os.PathLike[str],
    port: int = 0,
    pg_dsn: str | None = None,
    *,
    pg_password: str | None = None,
    init: bool = False,
    mine_interval: float = 1.0,
    peers: list[str] | None = None,
    peer_count: int = 8,
    peer_heal_interval: float = 0.5,
    reference_url: str | None = None,
    sync_interval: float = 0.5,
    name: str = "xai-node",
    run_dir: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    pg_service_file: str | os.PathLike[str] | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 20.0,
) -> NodeProcess:
    """Start ``python -m recovery.local.node_sim`` and return once its API answers.

    ``init=True`` creates chain.db with the shared genesis when it is missing (never overwrites).
    Without it a missing chain is reported by the node, not replaced. Logs go to ``log_path``
    (default ``<run_dir>/<name>.log``); run files to ``run_dir`` (default: the data dir's parent).
    """
    data = Path(data_dir).absolute()
    rd = Path(run_dir).absolute() if run_dir else data.parent
    rd.mkdir(parents=True, exist_ok=True)
    port_file = rd / f"{name}.port"
    try:
        other = NodeProcess.attach(rd, name, data)
    except (OSError, ValueError, IndexError):
        other = None
    if other is not None and other.is_running():
        raise RuntimeError(f"node {name} already runs as pid {other.pid} ({other.url}); stop it first")
    port_file.unlink(missing_ok=True)
    logp = Path(log_path) if log_path else rd / f"{name}.log"
    cmd = [sys.executable, "-m", "recovery.local.node_sim", "--data-dir", str(data), "--port", str(port),
           "--name", name, "--run-dir", str(rd), "--mine-interval", str(mine_interval),
           "--peer-count", str(peer_count), "--peer-heal-interval", str(peer_heal_interval),
           "--sync-interval", str(sync_interval)]
    if init:
        cmd.append("--init")
    if pg_dsn:
        cmd += ["--pg-dsn", pg_dsn]
    if peers:
        cmd += ["--peers", ",".join(peers)]
    if reference_url:
        cmd += ["--reference-url", reference_url]
    cmd += list(extra_args or [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH", "")) if p)
    if pg_password is not None:
        env["PGPASSWORD"] = pg_password
    if pg_service_file is not None:  # a DSN "service=NAME" is looked up there (a cutover rewrites its host)
        env["PGSERVICEFILE"] = str(pg_service_file)
    with open(logp, "ab") as log:
        popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                 start_new_session=True)
    node = NodeProcess(popen.pid, 0, data_dir=data, name=name, run_dir=rd, popen=popen, log_path=logp)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"node {name} exited with {popen.returncode} at start: {_tail(logp)}")
        try:
            node.port = int(port_file.read_text().split()[0])
            node.get("/api/v1/node/status", timeout=2)
            return node
        except (OSError, ValueError, IndexError, urllib.error.URLError):
            time.sleep(0.05)
    node.stop(2)
    raise RuntimeError(f"node {name} did not answer within {timeout:g}s: {_tail(logp)}")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    """Service control for the local environment (what systemctl is for a real node):

        python -m recovery.local.node_process start --data-dir DIR [node options...]
        python -m recovery.local.node_process stop  --run-dir RUN [--name xai-node]
        python -m recovery.local.node_process status --run-dir RUN [--name xai-node]

    ``start`` returns once the API answers and leaves the node running in its own session;
    unknown options are passed to the node. PGPASSWORD is inherited from the environment.
    """
    p = argparse.ArgumentParser(prog="python -m recovery.local.node_process")
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start")
    st.add_argument("--data-dir", required=True)
    st.add_argument("--port", type=int, default=0)
    st.add_argument("--name", default="xai-node")
    st.add_argument("--run-dir")
    st.add_argument("--pg-dsn")
    st.add_argument("--pg-service-file", help="the libpq service file a --pg-dsn 'service=NAME' names (PGSERVICEFILE)")
    st.add_argument("--init", action="store_true")
    st.add_argument("--mine-interval", type=float, default=1.0)
    st.add_argument("--reference-url")
    st.add_argument("--timeout", type=float, default=20.0)
    for name in ("stop", "status"):
        sp = sub.add_parser(name)
        sp.add_argument("--run-dir", required=True)
        sp.add_argument("--name", default="xai-node")
        sp.add_argument("--timeout", type=float, default=10.0)
    args, extra = p.parse_known_args(argv)
    if args.cmd != "start" and extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "start":
        try:
            node = start_node(args.data_dir, args.port, args.pg_dsn, init=args.init, mine_interval=args.mine_interval,
                              reference_url=args.reference_url, name=args.name, run_dir=args.run_dir,
                              pg_service_file=args.pg_service_file, extra_args=extra, timeout=args.timeout)
        except RuntimeError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(json.dumps({"name": node.name, "pid": node.pid, "url": node.url, "data_dir": str(node.data_dir)}))
        return 0
    try:
        node = NodeProcess.attach(args.run_dir, args.name)
    except (OSError, ValueError, IndexError):
        print(json.dumps({"name": args.name, "running": False}))
        return 0 if args.cmd == "stop" else 3
    running = node.is_running()
    if args.cmd == "status":
        print(json.dumps({"name": node.name, "pid": node.pid, "url": node.url, "running": running}))
        return 0 if running else 3
    if running:
        node.stop(args.timeout)
    print(json.dumps({"name": node.name, "pid": node.pid, "running": node.is_running()}))
    return 0 if not node.is_running() else 1


__all__ = ["NodeProcess", "main", "start_node"]

if __name__ == "__main__":
    sys.exit(main())
