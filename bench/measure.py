"""Run one command and measure it: wall time, CPU time and peak RSS of its whole process tree.

- wall: perf_counter around spawn .. reap.
- CPU: the rusage of the reaped child (os.wait4), which includes every descendant it waited
  for (a shell waits for its pipeline, `recovery` for pg_dump/psql), so it is the tree's CPU.
- peak RSS: every 50 ms the tree is listed (psutil) and /proc/PID/status read: `rss_tree_mb` is
  the peak of the summed VmRSS; `rss_max_proc_mb` the largest VmHWM (a process's exact peak since
  exec) of any process of the tree. For a `recovery` run that process is `recovery` itself.
  Without psutil both fall back to ru_maxrss, which is polluted by the harness's RSS at fork.
- server CPU: CPU the command caused in the PostgreSQL server (postmaster + reaped backends)
  and in the out-of-process moto server, as deltas (psutil; 0 when not installed).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

try:
    import psutil
except ImportError:  # optional: without it there is no tree sampling and no server CPU
    psutil = None


class CommandFailed(RuntimeError):
    pass


def _cpu_of(pid: int | None) -> float:
    """user+system of a process and of its reaped children (postmaster: the finished backends)."""
    if psutil is None or pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0))


@dataclass
class Watch:
    """Server processes whose CPU deltas are recorded for every measured command."""

    postgres_pid: int | None = None
    moto_pid: int | None = None

    def snapshot(self) -> tuple[float, float, float]:
        # the postmaster's children_* only grow when a backend exits; live backends are added below
        pg = _cpu_of(self.postgres_pid)
        if psutil is not None and self.postgres_pid:
            try:
                for c in psutil.Process(self.postgres_pid).children():
                    t = c.cpu_times()
                    pg += t.user + t.system
            except psutil.Error:
                pass
        return pg, _cpu_of(self.moto_pid), time.perf_counter()


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KB, from /proc: VmHWM is its exact peak RSS since exec."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


class _Sampler(threading.Thread):
    """Every `interval`: the tree's summed RSS (peak kept), and each process's VmHWM (max kept)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.stop = threading.Event()
        self.peak_tree_kb = 0
        self.peak_proc_kb = 0
        self.peak_top_kb = 0

    def run(self) -> None:
        if psutil is None:
            return
        try:
            top = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                pids = [self.pid, *(c.pid for c in top.children(recursive=True))]
            except psutil.Error:
                break
            total = 0
            for pid in pids:
                rss, hwm = _status_kb(pid)
                total += rss
                self.peak_proc_kb = max(self.peak_proc_kb, hwm)
                if pid == self.pid:
                    self.peak_top_kb = max(self.peak_top_kb, hwm)
            self.peak_tree_kb = max(self.peak_tree_kb, total)
            self.stop.wait(self.interval)


def run_measured(cmd: str | Sequence[str], env: dict[str, str], *, cwd: Path | None = None,
                 watch: Watch | None = None, log: Path | None = None) -> tuple[dict[str, float], str]:
    """Run `cmd` (a string runs under `sh -c`); return (figures, stdout). Raises CommandFailed."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    before = watch.snapshot() if watch else None
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    sampler = _Sampler(p.pid)
    sampler.start()
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((p.stdout, out_chunks), (p.stderr, err_chunks))]
    for r in readers:
        r.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    p.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    sampler.join()
    out = b"".join(out_chunks).decode(errors="replace")
    err = b"".join(err_chunks).decode(errors="replace")
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"$ {cmd if isinstance(cmd, str) else ' '.join(cmd)}\n[rc={p.returncode} wall={wall:.2f}s]\n"
                     f"{err[-4000:]}\n")
    if p.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        raise CommandFailed(f"exit {p.returncode}: {shown}\n{err[-3000:]}")
    fig: dict[str, float] = {
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
    }
    if sampler.peak_tree_kb:
        fig["rss_tree_mb"] = sampler.peak_tree_kb / 1024
        fig["rss_max_proc_mb"] = sampler.peak_proc_kb / 1024
    else:  # no psutil: ru_maxrss, which also counts the harness's own RSS copied at fork
        fig["rss_tree_mb"] = fig["rss_max_proc_mb"] = ru.ru_maxrss / 1024
    if watch and before:
        after = watch.snapshot()
        fig["pg_cpu_s"] = max(0.0, after[0] - before[0])
        fig["moto_cpu_s"] = max(0.0, after[1] - before[1])
    return fig, out


def add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Figures of sequential steps: times add up, memory peaks take the max."""
    out = dict(a)
    for k, v in b.items():
        out[k] = max(out.get(k, 0.0), v) if k.startswith("rss") else out.get(k, 0.0) + v
    return out


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem / 2**30, 1)}
