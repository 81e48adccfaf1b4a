"""The `recovery` CLI as a real subprocess, forked from a process that has already imported it.

About 530 CLI runs in the suite each spent 0.5-0.9 s of CPU importing boto3, botocore, click and the
recovery package before doing anything (`python -X importtime -m recovery list`); on a 2-core
machine that alone was about a fifth of `make test`. Each pytest worker starts one server
(`python tests/prewarmed_cli.py SOCKET`) that imports the package once and then, per request,
forks a child that becomes exactly what `python -m recovery ...` would be: its own pid, the
caller's pipes as fds 0-2, the caller's environment and cwd, `runpy` running the same module as
`__main__`, the interpreter's exit steps (non-daemon threads joined, atexit run), and its exit
status (or -signal) returned like subprocess's.

`RECOVERY_TEST_SPAWN=1` runs every CLI call as a fresh interpreter instead; the start-up path
itself stays covered by the tests that spawn `python -m recovery` directly (e.g. `--help` in
tests/test_bench_smoke.py, the pty tests of tests/test_dry_run_truth.py).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_SERVER: dict[str, Any] = {"proc": None, "path": None}


# ------------------------------------------------------------------------------------------ client

def run(module: str, args: list[str] | tuple[str, ...], *, env: dict[str, str], cwd: Path | str = ROOT,
        timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Like `subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, ...)`."""
    argv = [sys.executable, "-m", module, *args]
    if os.environ.get("RECOVERY_TEST_SPAWN") == "1":
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, input=input)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if input is not None else (None, None)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(_server())
        request = json.dumps({"module": module, "args": list(args), "env": env, "cwd": str(cwd)}).encode()
        stdin = in_r if in_r is not None else 0  # as subprocess: no input, the caller's stdin
        socket.send_fds(conn, [struct.pack("!I", len(request)) + request], [stdin, out_w, err_w])
    finally:
        for fd in (out_w, err_w, in_r):
            if fd is not None:
                os.close(fd)
    if in_w is not None:
        os.write(in_w, (input or "").encode())
        os.close(in_w)
    try:
        pid = struct.unpack("!i", _recv_exactly(conn, 4))[0]
        out, err = _drain(out_r, err_r, conn, pid, argv, timeout)
        code = struct.unpack("!i", _recv_exactly(conn, 4))[0]
    finally:
        conn.close()
        os.close(out_r)
        os.close(err_r)
    return subprocess.CompletedProcess(argv, code, out, err)


def _drain(out_r: int, err_r: int, conn: socket.socket, pid: int, argv: list[str],
           timeout: float) -> tuple[str, str]:
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = {out_r, err_r}
    end = time.monotonic() + timeout
    while open_fds:
        left = end - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)  # what subprocess.run does on a timeout
            raise subprocess.TimeoutExpired(argv, timeout, b"".join(chunks[out_r]), b"".join(chunks[err_r]))
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.discard(fd)
    # text=True's decoding: the locale's codec (UTF-8 here) and universal newlines
    return tuple(b"".join(chunks[fd]).decode().replace("\r\n", "\n").replace("\r", "\n")
                 for fd in (out_r, err_r))  # type: ignore[return-value]


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise RuntimeError("the pre-warmed CLI server went away (RECOVERY_TEST_SPAWN=1 runs without it)")
        data += part
    return data


def _server() -> str:
    proc = _SERVER["proc"]
    if proc is not None and proc.poll() is None:
        return str(_SERVER["path"])
    path = Path(tempfile.mkdtemp(prefix="recovery-cli-")) / "sock"
    proc = subprocess.Popen([sys.executable, __file__, str(path)], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, env={k: v for k, v in os.environ.items()
                                                         if not k.startswith(("AWS_", "RECOVERY_", "PG"))})
    assert proc.stdout is not None
    ready = proc.stdout.readline()  # the server says "ready" once it has imported everything
    if ready.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"the pre-warmed CLI server did not start: {ready!r}")
    _SERVER.update(proc=proc, path=path)
    if not _SERVER.get("atexit"):
        atexit.register(_stop)
        _SERVER["atexit"] = True
    return str(path)


def _stop() -> None:
    proc = _SERVER["proc"]
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------ server

def _warm() -> None:
    """Import what the commands import, so that a fork starts with it: everything in recovery/."""
    import importlib
    import pkgutil

    import recovery
    import recovery.cli  # noqa: F401

    for mod in pkgutil.walk_packages(recovery.__path__, "recovery."):
        if mod.name.endswith(".__main__"):  # importing it runs the command
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 - a module that cannot import here loads (and fails) in the child
            pass
    # `local up` runs the Pulumi program (recovery/local/deploy.py puts infra/ on sys.path itself):
    # its modules and pulumi_aws's are imported here, and sys.path is left as a fresh process has it.
    sys.path.insert(0, str(ROOT / "infra"))
    try:
        for mod in pkgutil.iter_modules([str(ROOT / "infra")]):
            if mod.name != "__main__":
                importlib.import_module(mod.name)
    finally:
        sys.path.remove(str(ROOT / "infra"))
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:  # a fork copies only the calling thread: locks held by others would stay held
        raise SystemExit(f"importing the recovery package started {threads - 1} thread(s); cannot fork safely")


def _child(request: dict[str, Any], fds: list[int], listener: socket.socket, conns: list[socket.socket]) -> None:
    import io
    import runpy
    import threading

    listener.close()
    for c in conns:
        c.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # Fresh text streams on the new fds, set up as the interpreter's start-up would.
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                  line_buffering=os.isatty(1), write_through=False)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.argv = [request["module"], *request["args"]]  # runpy replaces argv[0] with the module's file
    code: int = 0
    try:
        # `python -m recovery.cli` has not imported recovery.cli when it runs it; runpy warns if it has.
        sys.modules.pop(request["module"], None)
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined] # the interpreter joins non-daemon threads first
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def serve(path: str) -> None:
    _warm()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    parent = os.getppid()
    sys.stdout.buffer.write(b"ready\n")
    sys.stdout.flush()
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection that asked for it
    while os.getppid() == parent:  # the pytest worker that started us is gone: so are we
        ready, _, _ = select.select([listener], [], [], 0.05)
        if ready:
            conn, _ = listener.accept()
            head, fds, _, _ = socket.recv_fds(conn, 65536, 3)
            body = head[4:]
            need = struct.unpack("!I", head[:4])[0]
            while len(body) < need:
                body += conn.recv(need - len(body))
            pid = os.fork()
            if pid == 0:
                _child(json.loads(body), fds, listener, list(waiting.values()) + [conn])
            for fd in fds:
                os.close(fd)
            conn.sendall(struct.pack("!i", pid))
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                try:
                    conn.sendall(struct.pack("!i", code))
                except OSError:  # the caller gave up (a timeout): nothing to tell
                    pass
                conn.close()


if __name__ == "__main__":
    sys.path[0] = str(ROOT)  # as `python -m` from the repository: its directory first, not tests/
    serve(sys.argv[1])
