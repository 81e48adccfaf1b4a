"""Sizes and durations in the units an operator reads: one place, so every command prints them alike.

Here (not in recovery/commands/) because the engine's reporter uses them too, and the engine does
not import the CLI layer.
"""

from __future__ import annotations


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 kB', decimal units; '?' when unknown. A non-zero size never reads '0.0 MB'."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float | None) -> str:
    """12.3 -> '12.3s', 754 -> '12m34s', 93784 -> '1d02h'; '-' when unknown."""
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h" if d else f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"
