"""Running the real `recovery` CLI as a subprocess, isolated from the caller's environment.

Tests that drive the CLI must not inherit AWS credentials, endpoints, Pulumi backends, PG*
variables or RECOVERY_* settings from whoever runs the suite: `isolated_env()` strips them.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import prewarmed_cli

ROOT = Path(__file__).resolve().parent.parent
_INHERITED = ("AWS_", "RECOVERY_", "PULUMI_", "PG")


def isolated_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return prewarmed_cli.run("recovery", args, env=env, timeout=timeout, cwd=ROOT)


def run_on_a_terminal(cmd: list[str], typed: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run cmd with stdin/stdout/stderr on a real pseudo-terminal; type `typed` at the prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen = b""
    answered = False
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not answered and (b"Type its name" in seen or b"[y/N]" in seen):
            os.write(master, typed.encode() + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


def screen_lines(raw: str) -> list[str]:
    """What is left on the screen after `raw` (a terminal's output): carriage returns, cursor-up and
    erase-line applied, other control sequences dropped. Lines rewritten in place count once."""
    import re

    screen: list[str] = [""]
    row = col = 0
    for tok in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r|\n|[^\x1b\r\n]+|\x1b", raw):
        if tok == "\n":
            row, col = row + 1, 0
            if row == len(screen):
                screen.append("")
        elif tok == "\r":
            col = 0
        elif tok.startswith("\x1b["):
            n = int(tok[2:-1] or 1) if tok[2:-1].isdigit() else 1
            if tok[-1] == "A":
                row = max(row - n, 0)
            elif tok[-1] == "K":  # erase the line (rich erases whole lines)
                screen[row] = screen[row][:col] if tok[2:-1] in ("", "0") else ""
        elif not tok.startswith("\x1b"):
            line = screen[row].ljust(col)
            screen[row] = line[:col] + tok + line[col + len(tok):]
            col += len(tok)
    while screen and not screen[-1].strip():
        screen.pop()
    return [line.rstrip() for line in screen]
