"""Render the raw runs (docs/benchmarks.json) as docs/benchmarks.md: medians, ratios, targets."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

GROUP_TITLES = {
    "backup-db": "Database backup",
    "restore-db": "Database restore (into a new database)",
    "verify": "Verify (the same gzip backup object)",
    "backup-chain": "Chain data backup",
    "restore-chain": "Chain data restore (into an empty directory)",
}
CHAIN_GROUPS = ("backup-chain", "restore-chain")


def _ok(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if "wall_s" in r]


def med(runs: list[dict[str, Any]], key: str = "wall_s") -> float | None:
    vals = [r[key] for r in _ok(runs) if key in r]
    return statistics.median(vals) if vals else None


def spread(runs: list[dict[str, Any]], key: str = "wall_s", fmt: str = "{:.2f}") -> str:
    vals = [r[key] for r in _ok(runs) if key in r]
    if not vals:
        return "skipped"
    m = fmt.format(statistics.median(vals))
    return m if len(vals) == 1 else f"{m} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


class Index:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.by: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in doc["runs"]:
            self.by.setdefault((r["size"], r["group"], r["id"]), []).append(r)
        self.sizes = list(doc["datasets"])

    def runs(self, size: str, group: str, cid: str) -> list[dict[str, Any]]:
        return self.by.get((size, group, cid), [])

    def wall(self, size: str, group: str, cid: str) -> float | None:
        return med(self.runs(size, group, cid))

    def competitors(self, size: str, group: str) -> list[tuple[str, list[dict[str, Any]]]]:
        seen: dict[str, list[dict[str, Any]]] = {}
        for (s, g, cid), runs in self.by.items():
            if s == size and g == group:
                seen[cid] = runs
        return list(seen.items())

    def data_mb(self, size: str, group: str) -> float:
        d = self.doc["datasets"][size]
        return (d["chain_bytes"] if group in CHAIN_GROUPS else d["plain_dump_bytes"]) / 1e6


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "–"


def targets(ix: Index) -> list[dict[str, Any]]:
    """Every target of issue 8, per size: the figure and whether it is met (None: not measured)."""
    rows: list[dict[str, Any]] = []

    def ratio_target(label: str, size: str, group: str, cid: str, ref: str, limit: float) -> None:
        a, b = ix.wall(size, group, cid), ix.wall(size, group, ref)
        value = a / b if a is not None and b else None
        fig = f"{value:.2f}× ({a:.2f} s vs {b:.2f} s)" if value is not None else "not measured"
        rows.append({"target": label, "size": size, "figure": fig, "value": value, "limit": limit,
                     "met": None if value is None else value <= limit})

    for s in ix.sizes:
        ratio_target("db backup, default (gzip) ≤ 0.4× the plan", s, "backup-db", "gzip", "plan", 0.4)
        ratio_target("db backup, default (gzip) ≤ 3× pg_dump > /dev/null", s, "backup-db", "gzip", "limit", 3.0)
        ratio_target("db backup, fastest (zstd) ≤ 1.3× pg_dump > /dev/null", s, "backup-db", "zstd", "limit", 1.3)
        ratio_target("db restore, default (gzip) ≤ 0.85× the plan", s, "restore-db", "gzip", "plan", 0.85)
        ratio_target("db restore, default (gzip) ≤ 1.15× local gunzip -c | psql", s, "restore-db", "gzip", "limit-gz", 1.15)
        ratio_target("db restore, fastest (zstd) ≤ 0.6× the plan", s, "restore-db", "zstd", "plan", 0.6)
        ratio_target("db restore, fastest (zstd) ≤ 1.15× local zstd -dc | psql", s, "restore-db", "zstd", "limit-zst", 1.15)
        ratio_target("chain backup ≤ 0.5× the plan", s, "backup-chain", "recovery", "plan", 0.5)
        ratio_target("chain restore ≤ 0.5× the plan", s, "restore-chain", "recovery", "plan", 0.5)
        ratio_target("verify ≤ 1.2× aws s3 cp - | gunzip -t", s, "verify", "recovery", "plan", 1.2)
        peaks = [(r["rss_max_proc_mb"], r["group"], r["id"]) for r in ix.doc["runs"]
                 if r["size"] == s and r["role"] == "recovery" and "rss_max_proc_mb" in r]
        if peaks:
            top = max(peaks)
            rows.append({"target": "peak RSS of the recovery process ≤ 200 MB", "size": s,
                         "figure": f"{top[0]:.0f} MB (max over all runs: {top[1]} {top[2]})", "value": top[0],
                         "limit": 200, "met": top[0] <= 200})
    if "250M" in ix.sizes and "1G" in ix.sizes:
        for group in ("backup-db", "restore-db", "verify", "backup-chain", "restore-chain"):
            for cid, runs in ix.competitors("1G", group):
                if not runs or runs[0]["role"] != "recovery":
                    continue
                small, big = ix.runs("250M", group, cid), runs
                rs, rb = med(small, "rss_max_proc_mb"), med(big, "rss_max_proc_mb")
                if rs and rb:
                    g = rb / rs
                    rows.append({"target": f"memory: RSS at 1 GB within 10% of 250 MB ({group} {cid})", "size": "both",
                                 "figure": f"{rb:.0f} MB vs {rs:.0f} MB ({(g - 1) * 100:+.0f}%)", "value": g,
                                 "limit": 1.10, "met": g <= 1.10})
                ws, wb = med(small), med(big)
                if ws and wb:
                    per_s = ws / (ix.data_mb("250M", group) / 1000)
                    per_b = wb / (ix.data_mb("1G", group) / 1000)
                    g = per_b / per_s
                    rows.append({"target": f"scaling: s/GB at 1 GB within 15% of 250 MB ({group} {cid})", "size": "both",
                                 "figure": f"{per_b:.1f} vs {per_s:.1f} s/GB ({(g - 1) * 100:+.0f}%)", "value": g,
                                 "limit": 1.15, "met": abs(g - 1) <= 0.15,
                                 "note": "faster per GB at 1 GB" if g < 0.85 else None})
    return rows


def _load_line(doc: dict[str, Any]) -> str:
    loads = [r["load_1m_before"] for r in doc["runs"] if "load_1m_before" in r]
    if not loads:
        return "not recorded"
    return (f"median {statistics.median(loads):.2f}, min {min(loads):.2f}, max {max(loads):.2f} "
            "(the harness itself keeps about 1–2 cores busy)")


def render(doc: dict[str, Any]) -> str:
    ix = Index(doc)
    m = doc["machine"]
    L: list[str] = []
    L += ["# Benchmarks: backup and restore against the DR plan's pipeline and the limit", "",
          "Generated by `make bench` (`python -m bench`, see bench/__init__.py); the raw runs are in "
          "[benchmarks.json](benchmarks.json). Do not edit by hand: `python -m bench --report-only` re-renders it.", "",
          f"- **Date:** {doc['started_at']} – {doc['ended_at']}",
          f"- **Machine:** {m['cores']} cores ({m.get('cpu_model') or '?'}), {m['memory_gb']} GB memory, Python {m['python']}; "
          f"shared with other users, so expect noise.",
          f"- **Load average (1, 5, 15 min):** {', '.join(map(str, m['load_average_start']))} at the start, "
          f"{', '.join(map(str, m['load_average_end']))} at the end.",
          "- **Load average (1 min) just before each run:** " + _load_line(doc),
          f"- **Versions:** " + "; ".join(f"{k} `{v}`" for k, v in m.get("versions", {}).items()),
          f"- **Runs:** {doc['runs_per_competitor']} per competitor, in alternating order (forwards, backwards, ...). "
          "Times are the median, with min–max in brackets.",
          "- **Emulated AWS:** moto 5.2 in server mode as a separate process (the local environment's daemon); "
          "awscli 1.x and `recovery` both talk to it over HTTP. PostgreSQL 15 is local (fsync off).", ""]
    L += ["**Data** (deterministic: the `blockchain` rows are a function of the height; the chain's transactions "
          "come from a fixed seed):", "",
          "| size | rows | plain dump | chain data dir |", "|---|---|---|---|"]
    for s, d in doc["datasets"].items():
        L.append(f"| {s} | {d['rows']:,} | {d['plain_dump_bytes'] / 1e6:.0f} MB | {d['chain_bytes'] / 1e6:.0f} MB |")
    L += ["", "Columns: **× plan** = this wall time / the plan's pipeline; **× limit** = / the limit named in the group "
          "(restore: the same format's local ingest); **MB/s** = plain dump MB (chain: data dir MB) / wall; **CPU** = "
          "user+system of the whole process tree; **server CPU** = what the run cost the PostgreSQL server and the "
          "moto process; **RSS** = peak of the summed RSS of the process tree, and of its largest process; "
          "**S3** = bytes stored.", ""]
    L += ["## Targets", "", "| target | size | figure | |", "|---|---|---|---|"]
    for t in targets(ix):
        mark = {True: "met", False: "**missed**", None: "–"}[t["met"]]
        if t.get("note"):
            mark += f" ({t['note']})"
        L.append(f"| {t['target'].replace('|', chr(92) + '|')} | {t['size']} | {t['figure']} | {mark} |")
    for s in ix.sizes:
        L += ["", f"## {s}: {doc['datasets'][s]['plain_dump_bytes'] / 1e6:.0f} MB plain dump, "
                  f"{doc['datasets'][s]['chain_bytes'] / 1e6:.0f} MB chain data"]
        for group in GROUP_TITLES:
            comps = ix.competitors(s, group)
            if not comps:
                continue
            plan = ix.wall(s, group, "plan")
            L += ["", f"### {GROUP_TITLES[group]}", "",
                  "| competitor | wall s | × plan | × limit | MB/s | CPU s | server CPU s (pg + moto) | RSS MB tree (largest) | S3 MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
            stage_lines = []
            for cid, runs in comps:
                w = med(runs)
                ref = runs[0].get("limit_ref") or ("limit" if any(c == "limit" for c, _ in comps) else None)
                limit = ix.wall(s, group, ref) if ref and ref != cid else None
                mbs = f"{ix.data_mb(s, group) / w:.0f}" if w else "–"
                pgc, mtc = med(runs, "pg_cpu_s"), med(runs, "moto_cpu_s")
                srv = f"{pgc:.1f} + {mtc:.1f}" if pgc is not None and mtc is not None else "–"
                rt, rp = med(runs, "rss_tree_mb"), med(runs, "rss_max_proc_mb")
                rss = f"{rt:.0f} ({rp:.0f})" if rt is not None and rp is not None else "–"
                s3 = med(runs, "s3_bytes")
                name = runs[0]["competitor"].replace("|", "\\|")
                L.append(f"| {name} | {spread(runs)} | {_ratio(w, plan)} | {_ratio(w, limit)} | {mbs} | "
                         f"{spread(runs, 'cpu_s', '{:.1f}')} | {srv} | {rss} | {s3 / 1e6:.0f} |" if s3 else
                         f"| {name} | {spread(runs)} | {_ratio(w, plan)} | {_ratio(w, limit)} | {mbs} | "
                         f"{spread(runs, 'cpu_s', '{:.1f}')} | {srv} | {rss} | |")
                stages = [r["stages"] for r in _ok(runs) if "stages" in r]
                if stages:
                    keys = list(stages[0])
                    parts = ", ".join(f"{k} {statistics.median(st.get(k, 0) for st in stages):.2f}" for k in keys)
                    extra = [r["restore_scratch"] for r in _ok(runs) if r.get("restore_scratch")]
                    if extra:
                        parts += " (restore-scratch: " + ", ".join(
                            f"{k} {statistics.median(e.get(k, 0) for e in extra):.2f}" for k in extra[0]) + ")"
                    stage_lines.append(f"- {runs[0]['competitor']}: {parts}".replace("|", "\\|"))
            if stage_lines:
                L += ["", "Stages, median seconds:", *stage_lines]
    findings = Path(__file__).with_name("findings.md")
    if findings.exists():
        L += ["", findings.read_text().rstrip()]
    skipped = sorted({(r["competitor"], r["skipped"]) for r in doc["runs"] if "skipped" in r})
    if skipped:
        L += ["", "Skipped: " + "; ".join(f"{c} ({why})" for c, why in skipped)]
    return "\n".join(L) + "\n"
