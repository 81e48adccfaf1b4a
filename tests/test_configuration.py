"""The one table of environment variables (docs/configuration.md) is the code's: no variable is read that
the table does not name, the table names none the code no longer reads, and each knob's default and
range are the ones recovery/knobs.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

from recovery.knobs import KNOBS, _num

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| `(RECOVERY_[A-Z_]+)` \| (\w+) \| ([^|]+) \| ([^|]+) \|", re.M)


def _table() -> dict[str, tuple[str, str, str]]:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    return {m[1]: (m[2], m[3].strip(), m[4].strip()) for m in ROW.finditer(doc)}


def _read_by_code() -> set[str]:
    names: set[str] = set()
    for p in (ROOT / "recovery").rglob("*.py"):
        names |= set(re.findall(r"\bRECOVERY_[A-Z][A-Z_]*[A-Z]\b", p.read_text()))
    return names


def test_every_variable_the_code_reads_is_in_the_table_and_no_other() -> None:
    table, code = set(_table()), _read_by_code()
    assert code - table == set(), f"read by the code but not documented in docs/configuration.md: {sorted(code - table)}"
    assert table - code == set(), f"documented but no longer read: {sorted(table - code)}"


def test_each_knob_row_gives_its_default_and_range() -> None:
    table = _table()
    for name, knob in KNOBS.items():
        kind, default, rng = table[name]
        assert kind == "knob", name
        assert default == _num(knob.default), name
        assert rng.replace(" ", "") == knob.range_text().replace(" ", ""), name
    assert {n for n, (k, _, _) in table.items() if k == "knob"} == set(KNOBS)
