"""The offline plan: a stable, readable text rendering of what a stack registers.

It is what a reviewer reads in a pull request without credentials: one block per resource
(type, name, region) with its inputs flattened to `path: value` lines, IAM and bucket
policies expanded, and secret values redacted. Resources are sorted by name so the file
changes only when the program does.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from offline import ACCOUNT, StackRun

# Inputs that carry generated credentials. Mocked values are fake, but the plan shows the
# same redaction a real preview would.
REDACT = {"secretString", "masterPassword", "authToken", "result"}
POLICY_KEYS = {"policy", "assumeRolePolicy"}


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        if not value:
            yield prefix, "{}"
        for k in sorted(value):
            yield from _flatten(f"{prefix}.{k}" if prefix else k, value[k])
    elif isinstance(value, list):
        if not value:
            yield prefix, "[]"
        for i, v in enumerate(value):
            yield from _flatten(f"{prefix}[{i}]", v)
    else:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        yield prefix, json.dumps(value)


def _props(inputs: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key in sorted(inputs):
        value = inputs[key]
        if key in REDACT:
            yield key, "[secret]"
        elif key in POLICY_KEYS and isinstance(value, str):
            try:
                yield from _flatten(key, json.loads(value))
            except ValueError:
                yield key, json.dumps(value)
        elif key == "__defaults" or key.startswith("__"):
            continue
        else:
            yield from _flatten(key, value)


def render(run: StackRun) -> str:
    lines = [
        f"# Offline plan of stack '{run.stack}' (project {run.project})",
        "# Rendered by scripts/plan under Pulumi mocks: every resource the program registers, with its inputs.",
        "# Regenerate with `make plan` (scripts/plan --update) and commit the diff with the change.",
        "",
    ]
    for r in sorted(run.resources, key=lambda r: (r.name, r.type)):
        if r.type.startswith("xai:"):
            continue  # component resources carry no inputs of their own
        lines.append(f"{r.type}  {r.name}  [{r.region}]")
        if r.account != ACCOUNT:
            lines.append(f"    (in account {r.account}, through a provider pinned to it)")
        if r.protect:
            lines.append("    (protected: `pulumi destroy` refuses to delete it)")
        if r.ignore_changes:
            lines.append(f"    (ignores changes to: {', '.join(r.ignore_changes)})")
        lines.extend(f"    {path}: {value}" for path, value in _props(r.inputs))
        lines.append("")
    lines.append("outputs:")
    lines.extend(f"    {path}: {value}" for path, value in _flatten("", run.outputs))
    return "\n".join(lines) + "\n"
