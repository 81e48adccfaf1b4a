"""Last line of defence for secrets: every secret value read is registered, and log records and
error lines are scrubbed of them before they are written. Code must still never log secrets."""

from __future__ import annotations

import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"


def register(value: str | None) -> None:
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format/args pair: logging reports it; a filter never raises
            return True
        clean = scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True
