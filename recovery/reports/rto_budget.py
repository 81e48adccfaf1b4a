"""The RTO budget of a logical restore: how long loading a dump will take, said before it starts.

A logical restore goes through one ``psql`` stream, so its duration grows with the dump's size; past
some tens of GB it cannot meet the database's RTO, and the recovery must come from Aurora itself
(`restore pitr`, `restore snapshot`). The estimate is the dump's uncompressed size over the ingest
rate: the rate of the newest finished restore of at least ``MIN_MEASURED_BYTES`` on this host
(its ``restore-scratch`` step), else ``RECOVERY_RESTORE_MB_PER_S`` (default 50 MB/s, the rate
`make bench` measured for psql here). Smaller restores are not trusted: their fixed costs dominate.
"""

from __future__ import annotations

from typing import Any

from recovery import knobs
from recovery.catalog import Manifest
from recovery.engine.journal import JournalStore
from recovery.stack import StackOutputs
from recovery.units import human_bytes

MIN_MEASURED_BYTES = 64 * 1024 * 1024
LOOK_BACK = 20  # journals read, newest first: the figure should describe this host as it is now


def measured_rate(store: JournalStore | None, runbook: str, target: str) -> tuple[float, str]:
    """(bytes per second, where the figure comes from)."""
    for run_id in sorted(store.run_ids(runbook), reverse=True)[:LOOK_BACK] if store is not None else []:
        prev = store.load(runbook, run_id)
        if prev is None or not prev.finished or prev.target != target:
            continue
        rec = next((r for r in prev.steps if r.name == "restore-scratch"), None)
        raw = int((rec.detail or {}).get("raw_bytes") or 0) if rec else 0
        if rec and rec.duration_s and raw >= MIN_MEASURED_BYTES:
            return raw / rec.duration_s, f"measured by run {prev.run_id}"
    mb = knobs.value("RECOVERY_RESTORE_MB_PER_S")
    return mb * 1e6, "RECOVERY_RESTORE_MB_PER_S"


def estimate(outputs: StackOutputs, manifest: Manifest, store: JournalStore | None, runbook: str,
             target: str, component: str = "postgresql") -> dict[str, Any]:
    rate, source = measured_rate(store, runbook, target)
    seconds = manifest.raw_bytes / rate if rate > 0 else float("inf")
    rto = outputs.objective_s(component, "rto")
    over = rto is not None and seconds > rto
    doc: dict[str, Any] = {"raw_bytes": manifest.raw_bytes, "rate_mb_per_s": round(rate / 1e6, 3),
                           "rate_source": source, "estimate_s": round(seconds, 1), "rto_s": rto, "exceeds_rto": over}
    if over:
        doc["advice"] = (f"loading {human_bytes(manifest.raw_bytes)} at {human_bytes(rate)}/s takes about "
                         f"{seconds / 60:,.0f} min, over the {component} RTO of {rto / 60:g} min: prefer "
                         f"`recovery restore pitr --stack {outputs.stack}` (or a snapshot restore) for this size")
    return doc
