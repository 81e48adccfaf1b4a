"""The Node.js sidecar: one long-lived ``node simulate.mjs`` (``recovery/local/evaluator/``) per
Python process, started on first use, restarted if it dies, stopped by ``uninstall()`` and at
exit. It answers one iam-simulate decision per JSON line."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

EVALUATOR_DIR = Path(__file__).parent.with_name("evaluator")  # recovery/local/evaluator


def check_prerequisites() -> None:
    """RuntimeError naming what is missing for the evaluator (Node.js, the pinned npm packages)."""
    if shutil.which("node") is None:
        raise RuntimeError("IAM evaluator: `node` (Node.js 20+) is not on PATH; install Node.js, then run `make venv`")
    if not (EVALUATOR_DIR / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        raise RuntimeError(f"IAM evaluator: {EVALUATOR_DIR / 'node_modules'} is missing; run `make venv` "
                           f"(npm ci --prefix {EVALUATOR_DIR})")


class _Sidecar:
    """One long-lived `node simulate.mjs`; requests are serialised (one line out, one line in)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._pid = 0  # the Python process that started it (a fork must start its own)

    def ask(self, simulation: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(simulation) + "\n"
        with self._lock:
            for _ in range(2):  # once more after a restart, if it died under us
                proc = self._running()
                try:
                    proc.stdin.write(line)  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                    answer = proc.stdout.readline()  # type: ignore[union-attr]
                except (BrokenPipeError, OSError):
                    answer = ""
                if answer:
                    return json.loads(answer)
                self._kill()
        raise RuntimeError("IAM evaluator: node simulate.mjs exited twice on one request (see its stderr)")

    def stop(self) -> None:
        with self._lock:
            self._kill()

    def _running(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None or self._pid != os.getpid():
            check_prerequisites()
            self._proc = subprocess.Popen(
                ["node", str(EVALUATOR_DIR / "simulate.mjs")], cwd=EVALUATOR_DIR, text=True, bufsize=1,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._pid = os.getpid()
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None and self._pid == os.getpid():
            self._proc.kill()
            self._proc.wait()
        self._proc = None


_SIDECAR = _Sidecar()
atexit.register(_SIDECAR.stop)
