"""The local environment's on-call receiver: a real HTTP server standing in for the DR lead's SNS
subscription (the emulator's SNS posts to it), the Slack-compatible chat webhook and the PagerDuty
Events API (see deploy_sns.py for how the stack files point at it).

Every request is appended to ``deliveries.jsonl`` in the state directory (path, the parsed JSON
body, the answer it got), so tests assert on what was really sent. ``POST /_control/fail`` with
``{"count": N, "path": "/local/slack"}`` makes it answer the next N deliveries (to that path, or to
any without "path") 503, to prove retries; control requests are not recorded. ``python -m recovery.local.webhook_receiver --state-dir D`` runs it; `local up`
starts it and `local down` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from recovery.errors import LocalEnvError
from recovery.local.paths import write_json
from recovery.processes import pid_alive, stop_pid

RECEIVER_FILE = "receiver.json"
DELIVERIES_FILE = "deliveries.jsonl"


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, log: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log = log
        self.fail_next: dict[str, int] = {}  # path ("" = any) -> deliveries still to refuse
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, *_: Any) -> None:  # the JSONL file is the log
        pass

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(200, {"ok": True})

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if self.path == "/_control/fail":
            with self.server.lock:
                self.server.fail_next[str((body or {}).get("path") or "")] = int((body or {}).get("count", 1))
            self._answer(200, {"fail_next": self.server.fail_next})
            return
        with self.server.lock:
            which = self.path if self.server.fail_next.get(self.path, 0) > 0 else ""
            failing = self.server.fail_next.get(which, 0) > 0
            if failing:
                self.server.fail_next[which] -= 1
            code = 503 if failing else 202
            with open(self.server.log, "a") as f:
                f.write(json.dumps({"at": time.time(), "path": self.path, "status": code,
                                    "content_type": self.headers.get("Content-Type"), "body": body}) + "\n")
        self._answer(code, {"status": "success" if code == 202 else "unavailable"})


def serve(state_dir: Path) -> None:
    server = _Receiver(state_dir / DELIVERIES_FILE)
    write_json(state_dir / RECEIVER_FILE, {"url": f"http://127.0.0.1:{server.server_port}", "pid": os.getpid()})
    server.serve_forever()


# ------------------------------------------------------------------------- local up / down / tests

def start_receiver(d: Path, say: Any) -> dict[str, Any]:
    """Start the receiver; returns {"url", "pid", "log"} once it listens."""
    say("starting the on-call webhook receiver")
    log = d / "webhook-receiver.log"
    with open(log, "ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "recovery.local.webhook_receiver", "--state-dir", str(d)],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            info = dict(json.loads((d / RECEIVER_FILE).read_text()))
            return {**info, "deliveries": str(d / DELIVERIES_FILE)}
        except (OSError, ValueError):
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    raise LocalEnvError("the webhook receiver did not start", f"see {log}")


def seed_pager_secrets(receiver: dict[str, Any], outputs: dict[str, dict[str, Any]], client: Any) -> None:
    """Give each stack's (empty) pager secret a value, as an operator would: the receiver's address and a
    fresh routing key. `client(service, region)` is the emulator's admin client."""
    for stack, out in outputs.items():
        for hook in out.get("notifications", {}).get("webhooks", []):
            if hook.get("secret_arn"):
                value = {"url": f"{receiver['url']}/{stack}/{hook['format']}", "routing_key": secrets.token_hex(16)}
                client("secretsmanager", hook["secret_arn"].split(":")[3]).put_secret_value(
                    SecretId=hook["secret_arn"], SecretString=json.dumps(value))


def stop_receiver(state: dict[str, Any]) -> list[str]:
    pid = (state.get("receiver") or {}).get("pid")
    if pid_alive(pid):
        stop_pid(pid)
        return ["receiver"]
    return []


def deliveries(path: str | Path) -> list[dict[str, Any]]:
    """Every delivery recorded so far."""
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state-dir", required=True, type=Path)
    serve(ap.parse_args().state_dir)
