"""`recovery list`: the catalogue as rows (only backups with a manifest exist)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recovery.aws import client
from recovery.catalog import KINDS, Catalog, check_bucket, utc_now
from recovery.stack import StackOutputs


@dataclass
class Row:
    kind: str
    name: str
    key: str
    time: str
    age_minutes: float
    stored_bytes: int
    raw_bytes: int
    format: str
    sha256: str
    verified: bool | None
    verified_at: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_backups(outputs: StackOutputs, kind: str | None = None, *, s3: Any = None) -> list[Row]:
    s3 = s3 or client("s3", outputs.region)
    check_bucket(s3, outputs.backup_bucket_name)
    now = utc_now()
    rows = []
    for e in Catalog(s3, outputs.backup_bucket_name).entries(kind):
        m = e.manifest
        rows.append(Row(m.kind, m.name, m.key, m.ended_at, round((now - m.time).total_seconds() / 60, 1),
                        m.stored_bytes, m.raw_bytes, m.format, m.sha256, e.verified,
                        (e.verification or {}).get("at")))
    order = {k: i for i, k in enumerate(KINDS)}
    rows.sort(key=lambda r: (order.get(r.kind, 9), r.time))
    return rows
