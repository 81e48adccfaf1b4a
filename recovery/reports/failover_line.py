"""The one line a failover or failback ends with (printed, and the notification's text), from its report step."""

from __future__ import annotations

from typing import Any


def report_line(direction: str, rep: dict[str, Any]) -> str:
    def s(v: Any, unit: str = "s") -> str:
        return "unknown" if v is None else f"{v:g}{unit}" if isinstance(v, (int, float)) else str(v)

    if rep.get("rpo_blocks_lost") is not None:
        rpo = f"lag at promotion {s(rep.get('rpo_lag_at_promotion_s'))}, {s(rep.get('rpo_blocks_lost'), '')} blocks lost"
    else:
        rpo = (f"last replicated block {s(rep.get('rpo_last_replicated_height'), '')}, "
               f"{s(rep.get('rpo_window_s'))} before the failover began; what the old writer wrote after it is "
               f"counted {rep.get('rpo_counted_when')}")
    line = (f"{direction} ({rep.get('mode')}) done: {rep.get('writer')} is the writer; RTO {s(rep.get('rto_s'))}"
            f" (objective {s(rep.get('rto_objective_min'), ' min')}); RPO: {rpo}; newest replicated "
            f"backups: db {s(rep.get('newest_db_backup_age_s'))} old, chain {s(rep.get('newest_chain_backup_age_s'))} old"
            + ("; chain data restored from backup" if rep.get("chain_restored_from_backup") else ""))
    if rep.get("diverged_blocks"):
        line += (f"; the earlier failover lost {rep['diverged_blocks']} block(s) ({s(rep.get('diverged_seconds'))}),"
                 f" heights {rep['diverged_heights'][0]}-{rep['diverged_heights'][1]}, kept aside by the rejoin")
    return line
