"""`status` lines for the explorer and the monitoring: each service of the stack's services config
that names a ``health`` URL is asked over HTTP (200 healthy, anything else red with what it said).

The plan's objectives table has both components, so `status` always prints a line for each: a
services config that lists one without a health URL gives a "not checked" line (configure
``health`` for it), and one that does not list it (a DR site without an explorer) says so; both
are skips, which leave the status's level alone.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from recovery.errors import InputError
from recovery.services import ServicesConfig

GREEN, RED, SKIP = "green", "red", "skip"
COMPONENTS = {"explorer": "xai-explorer", "monitoring": "xai-monitoring"}


def probe(url: str, timeout_s: float = 3.0) -> tuple[int | None, dict[str, Any], str | None]:
    """(HTTP status, JSON body, error) of one GET; a refused connection gives (None, {}, why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, _body(resp.read()), None
    except urllib.error.HTTPError as exc:
        return exc.code, _body(exc.read()), None
    except (OSError, ValueError) as exc:
        return None, {}, str(getattr(exc, "reason", exc))


def _body(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
        return doc if isinstance(doc, dict) else {}
    except ValueError:
        return {}


def _summary(component: str, body: dict[str, Any]) -> str:
    if component == "explorer" and body.get("latest_height") is not None:
        return f"serves block {body['latest_height']} (index at {body.get('index_height')})"
    return str(body.get("status") or "answers")


def check(outputs: Any, timeout_s: float = 3.0) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(component, level, detail, data) for the explorer and the monitoring."""
    try:
        cfg = ServicesConfig.for_stack(outputs)
    except InputError as exc:
        return [(c, RED, f"services config unreadable: {exc.problem}", {}) for c in COMPONENTS]
    names = {s.name: s for s in cfg.services}
    lines = []
    for component, name in COMPONENTS.items():
        svc = names.get(name)
        if svc is None:
            lines.append((component, SKIP, f"not run at this site ({name} is not in {cfg.source})", {}))
            continue
        if not svc.health:
            lines.append((component, SKIP, f"not checked: give {name} a `health` URL in {cfg.source}", {}))
            continue
        code, body, err = probe(svc.health, timeout_s)
        data = {"url": svc.health, "http_status": code, **{k: body[k] for k in ("problems", "latest_height",
                                                                                  "index_height") if k in body}}
        if code == 200:
            lines.append((component, GREEN, f"{svc.health}: {_summary(component, body)}", data))
        elif code is None:
            lines.append((component, RED, f"{svc.health} not answering ({err}); start it: its `start` command in "
                          f"{cfg.source}, after the node", data))
        else:
            said = "; ".join(body.get("problems") or []) or body.get("error") or body.get("status") or f"HTTP {code}"
            lines.append((component, RED, f"{svc.health}: HTTP {code}: {said}", data))
    return lines
