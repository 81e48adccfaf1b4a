"""The local deploy covers the whole program: a resource type added to infra/ without a handler in
recovery/local/deploy.py fails here, and `local up` refuses it with one line naming the type."""

from __future__ import annotations

import dataclasses

import pytest

from recovery.errors import LocalEnvError
from recovery.local import deploy

import infra_runs


@pytest.mark.parametrize("stack", ["production", "production-dr", "local", "local-dr"])
def test_every_type_the_program_registers_is_created_or_deliberately_skipped(stack: str) -> None:
    run = infra_runs.run(stack) if stack.startswith("production") else dict(zip(
        (deploy.PRIMARY, deploy.DR), deploy.program_runs({})))[stack]
    missing = sorted({r.type for r in run.resources
                      if r.type not in deploy.HANDLERS and not deploy.not_emulated(r.type)})
    assert missing == [], f"add a handler to recovery/local/deploy.py for {missing}"


def test_an_unknown_type_stops_the_deploy_with_one_line_before_creating_anything() -> None:
    primary, _ = deploy.program_runs({})
    queue = dataclasses.replace(primary.resources[-1], type="aws:sqs/queue:Queue", name="jobs")
    run = dataclasses.replace(primary, resources=[*primary.resources, queue])
    d = deploy.Deployment("https://127.0.0.1:9")  # nothing listens: any creation would fail differently
    with pytest.raises(LocalEnvError) as err:
        deploy.replay(d, run)
    assert err.value.line() == ("stack local registers aws:sqs/queue:Queue, which the local environment cannot "
                                "create - add a handler to recovery/local/deploy.py, or list it in NOT_EMULATED "
                                "with a reason")
    assert err.value.exit_code == 16 and d.created == []
