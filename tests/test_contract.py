"""The contract between infra/ and recovery/: the outputs the Pulumi program exports (run under
mocks) are exactly the outputs recovery/stack.py requires, and they parse with the right types."""

from __future__ import annotations

import re

import pytest

from recovery.stack import _SPEC, DR_ONLY_OUTPUTS, LOCAL_ONLY_OUTPUTS, REQUIRED_OUTPUTS, parse_outputs

from conftest import ROOT

infra_runs = pytest.importorskip("infra_runs")


@pytest.mark.parametrize("stack", ["production", "production-dr"])
def test_infra_exports_exactly_what_recovery_reads(stack: str) -> None:
    exported = infra_runs.run(stack).outputs
    expected = REQUIRED_OUTPUTS | (DR_ONLY_OUTPUTS if stack == "production-dr" else frozenset())
    assert set(exported) == expected
    parsed = parse_outputs(stack, exported)
    assert parsed.role == ("dr" if stack == "production-dr" else "primary")


def test_the_documented_contract_matches_the_reader() -> None:
    """The README's output table (names and JSON types) is the one the reader enforces."""
    doc = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z][a-z_]*)` \| (string|number|boolean|object|array of string) \|", doc, re.M))
    assert set(rows) == REQUIRED_OUTPUTS | DR_ONLY_OUTPUTS
    as_json = {"str": "string", "int": "number", "bool": "boolean", "object": "object", "list[str]": "array of string"}
    assert {n: as_json[kind] for n, (kind, _) in _SPEC.items() if n not in LOCAL_ONLY_OUTPUTS} == rows
