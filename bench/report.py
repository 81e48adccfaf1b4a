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


STACK_FILE = Path(__file__).resolve().parent.parent / "Pulumi.production.yaml"
# restore path -> (its group, competitor id, the component whose RTO it serves)
RESTORE_PATHS = {
    "restore db (gzip)": ("restore-db", "gzip", "postgresql"),
    "restore db (zstd)": ("restore-db", "zstd", "postgresql"),
    "restore db --jobs 2 (parallel)": ("restore-db", "parallel", "postgresql"),
    "restore chain": ("restore-chain", "recovery", "node"),
}
RTO_NAMES = {"postgresql": "PostgreSQL", "node": "node"}


def stack_objectives(path: Path = STACK_FILE) -> dict[str, float]:
    """component -> RTO minutes, from the stack file's `xai-dr:objectives` (what drills are held to)."""
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text()).get("config", {})
    except (OSError, AttributeError, yaml.YAMLError):
        return {}
    return {k: float(v["rtoMinutes"]) for k, v in (cfg.get("xai-dr:objectives") or {}).items()
            if isinstance(v, dict) and v.get("rtoMinutes") is not None}


def _skip_reason(runs: list[dict[str, Any]]) -> str | None:
    return next((r["skipped"] for r in runs if "skipped" in r), None)


def targets(ix: Index) -> list[dict[str, Any]]:
    """Every target of issue 17, per size: the figure and whether it is met (None: not measured)."""
    rows: list[dict[str, Any]] = []

    def ratio_target(label: str, size: str, group: str, cid: str, ref: str, limit: float, judged: bool = True) -> None:
        a, b = ix.wall(size, group, cid), ix.wall(size, group, ref)
        value = a / b if a is not None and b else None
        if value is not None:
            fig = f"{value:.2f}× ({a:.2f} s vs {b:.2f} s)"
        else:
            why = _skip_reason(ix.runs(size, group, cid)) or _skip_reason(ix.runs(size, group, ref))
            fig = f"skipped: {why}" if why else "not measured"
        met = None if value is None else value <= limit
        rows.append({"target": label, "size": size, "figure": fig, "value": value, "limit": limit,
                     "met": met if judged else None, "note": None if judged or value is None else "the target is at 1 GB"})

    for s in ix.sizes:
        ratio_target("db restore, gzip ≤ 1.10× local gunzip -c | psql", s, "restore-db", "gzip", "limit-gz", 1.10)
        ratio_target("db restore, gzip ≤ 0.8× the plan", s, "restore-db", "gzip", "plan", 0.8)
        ratio_target("db restore, zstd ≤ 1.10× local zstd -dc | psql", s, "restore-db", "zstd", "limit-zst", 1.10)
        ratio_target("db restore, zstd ≤ 0.8× the plan", s, "restore-db", "zstd", "plan", 0.8)
        ratio_target("db restore, parallel --jobs 2 ≤ 0.75× single-stream psql < plain.sql", s, "restore-db",
                     "parallel", "limit-plain", 0.75)
        ratio_target("db restore, parallel --jobs 2 ≤ 1.15× pg_restore -j2 (local custom format)", s, "restore-db",
                     "parallel", "limit-pgr", 1.15)
        ratio_target("chain restore ≤ 0.6× the plan's aws s3 cp; tar -xzf", s, "restore-chain", "recovery", "plan", 0.6)
        ratio_target("db backup, zstd ≤ 1.5× pg_dump > /dev/null (at 1 GB)", s, "backup-db", "zstd", "limit", 1.5,
                     judged=s == "1G")
        probe = (ix.doc.get("emulator_complete") or {}).get(s)
        a, b = ix.wall(s, "backup-db", "zstd"), ix.wall(s, "backup-db", "limit")
        if probe and a is not None and b:
            net = (a - probe["complete_s"]) / b
            rows.append({"target": "db backup, zstd, less moto's CompleteMultipartUpload (real S3 does not copy the parts)",
                         "size": s, "figure": f"{net:.2f}× ({a:.2f} s − {probe['complete_s']:.2f} s for "
                                             f"{probe['object_bytes'] / 1e6:.0f} MB in {probe['parts']} parts, vs {b:.2f} s)",
                         "value": net, "limit": 1.5, "met": None, "note": "for information"})
        peaks = [(r["rss_max_proc_mb"], r["group"], r["id"]) for r in ix.doc["runs"]
                 if r["size"] == s and r["role"] == "recovery" and "rss_max_proc_mb" in r]
        if peaks:
            top = max(peaks)
            rows.append({"target": "peak RSS of the recovery process ≤ 200 MB in every run", "size": s,
                         "figure": f"{top[0]:.0f} MB (max over all runs: {top[1]} {top[2]})", "value": top[0],
                         "limit": 200, "met": top[0] <= 200})
    if "250M" in ix.sizes and "1G" in ix.sizes:
        for group in GROUP_TITLES:
            for cid, runs in ix.competitors("1G", group):
                if not runs or runs[0]["role"] != "recovery":
                    continue
                rs, rb = med(ix.runs("250M", group, cid), "rss_max_proc_mb"), med(runs, "rss_max_proc_mb")
                if rs and rb:
                    g = rb / rs
                    rows.append({"target": f"memory flat: peak RSS at 1 GB within 10% of 250 MB ({group} {cid})",
                                 "size": "both", "figure": f"{rb:.0f} MB vs {rs:.0f} MB ({(g - 1) * 100:+.0f}%)",
                                 "value": g, "limit": 1.10, "met": g <= 1.10})
    return rows


def projections(ix: Index, objectives: dict[str, float]) -> list[str]:
    """Hours per TB of each restore path, from its s/GB at the largest size measured, beside the RTO."""
    lines: list[str] = []
    for label, (group, cid, component) in RESTORE_PATHS.items():
        sized = [(ix.data_mb(s, group), s) for s in ix.sizes if ix.wall(s, group, cid)]
        if not sized:
            why = next((_skip_reason(ix.runs(s, group, cid)) for s in ix.sizes if _skip_reason(ix.runs(s, group, cid))), None)
            lines.append(f"- {label}: not measured" + (f" (skipped: {why})" if why else ""))
            continue
        mb, s = max(sized)
        s_per_gb = (ix.wall(s, group, cid) or 0) / (mb / 1000)
        line = f"- {label}: {s_per_gb * 1000 / 3600:.1f} h/TB ({s_per_gb:.1f} s/GB at {s})"
        rto = objectives.get(component)
        if rto:
            line += (f"; the {RTO_NAMES.get(component, component)} RTO of {rto:.0f} min holds up to "
                     f"{rto * 60 / s_per_gb:,.0f} GB")
        lines.append(line)
    return lines


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
          "- **Versions:** " + "; ".join(f"{k} `{v}`" for k, v in m.get("versions", {}).items()),
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
    objectives = doc.get("objectives") or stack_objectives()
    L += ["", "**Projected restore time** (the wall time per GB of data at the largest size measured, scaled "
          "linearly to 1 TB; RTOs from Pulumi.production.yaml `xai-dr:objectives`; a real restore also waits "
          "on the network and the server, so read these as this machine's figures):", "",
          *projections(ix, objectives)]
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
