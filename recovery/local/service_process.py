"""Start, stop and ask after a small local service (the explorer, the monitoring stand-in) the way
systemctl would for the real ones: ``python -m recovery.local.<module> start|stop|status ...``.

A service is ``python -m recovery.local.<module> serve --data-dir D --run-dir R --name N ...``: it
writes ``R/N.port`` once it listens and ``R/N.pid``; ``start`` returns once ``GET <health>`` answers
at all (200 or 503: a service that says it is unhealthy is still running, and status must see it).
It runs in its own session, so it outlives the command that started it. Exit codes follow LSB:
status 0 running, 3 stopped; start 1 when the service exited or never answered (its log's tail is
printed: e.g. "configuration missing").
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


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def state(run_dir: Path, name: str) -> dict[str, Any]:
    pid, port = _read_int(run_dir / f"{name}.pid"), _read_int(run_dir / f"{name}.port")
    running = pid is not None and pid_alive(pid)
    return {"name": name, "pid": pid, "running": running,
            "url": f"http://127.0.0.1:{port}" if port and running else None}


def get_json(url: str, timeout: float = 3.0) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of a GET; a 4xx/5xx answer is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(json.loads(resp.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, dict(json.loads(exc.read() or b"{}"))
        except ValueError:
            return exc.code, {}


def start(module: str, name: str, run_dir: Path, serve_args: list[str], health: str, log: Path,
          timeout: float = 20.0) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    if state(run_dir, name)["running"]:
        return state(run_dir, name)
    (run_dir / f"{name}.port").unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", f"recovery.local.{module}", "serve", "--run-dir", str(run_dir), "--name", name,
           *serve_args]
    with open(log, "ab") as f:
        popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=env, start_new_session=True)
    (run_dir / f"{name}.pid").write_text(f"{popen.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode} at start: {_tail(log)}")
        port = _read_int(run_dir / f"{name}.port")
        if port:
            try:
                get_json(f"http://127.0.0.1:{port}{health}", timeout=2)
                return state(run_dir, name)
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    popen.kill()
    raise RuntimeError(f"{name} did not answer within {timeout:g}s: {_tail(log)}")


def stop(run_dir: Path, name: str, timeout: float = 10.0) -> dict[str, Any]:
    st = state(run_dir, name)
    if st["running"]:
        os.kill(st["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(st["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(st["pid"]):
            os.kill(st["pid"], signal.SIGKILL)
    return state(run_dir, name)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def control(module: str, health: str, argv: list[str] | None) -> int:
    """``start --run-dir R --name N [serve options...]`` | ``stop|status --run-dir R --name N``."""
    p = argparse.ArgumentParser(prog=f"python -m recovery.local.{module}")
    p.add_argument("cmd", choices=["start", "stop", "status"])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--log")
    args, serve_args = p.parse_known_args(argv)
    rd = Path(args.run_dir)
    if args.cmd == "start":
        try:
            st = start(module, args.name, rd, serve_args, health, Path(args.log or rd / f"{args.name}.log"))
        except RuntimeError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    elif args.cmd == "stop":
        st = stop(rd, args.name)
    else:
        st = state(rd, args.name)
    print(json.dumps(st))
    if args.cmd == "status":
        return 0 if st["running"] else 3
    return 0 if st["running"] == (args.cmd == "start") else 1


def serve_json(answer: Any, port: int, run_dir: str, name: str, on_hup: Any = None) -> None:
    """Serve ``answer(method, path) -> (status, JSON body)`` on 127.0.0.1 until SIGTERM; the port
    goes to ``<run_dir>/<name>.port`` once it listens (what `start` waits for)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a: Any) -> None:
            pass

        def _reply(self, method: str) -> None:
            code, body = answer(method, self.path.split("?", 1)[0])
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._reply("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._reply("POST")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    if on_hup is not None:
        signal.signal(signal.SIGHUP, lambda *_: on_hup())
    (Path(run_dir) / f"{name}.port").write_text(f"{server.server_address[1]}\n")
    server.serve_forever()
