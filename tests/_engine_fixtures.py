"""Fixtures for the runbook engine, service control and node client tests (imported explicitly)."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from recovery.local.node_api_stub import NodeApiStub
from recovery.engine.journal import Journal, StepRecord
from recovery.engine.steps import Plan

REPO = Path(__file__).resolve().parent.parent
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def engine_moto() -> Iterator[str]:
    """A real moto server over HTTP; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(engine_moto: str) -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=engine_moto,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"journals-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def node() -> Iterator[NodeApiStub]:
    with NodeApiStub() as stub:
        yield stub


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


PYTHON = sys.executable


class RecordingReporter:
    """A Reporter that keeps everything the engine says and answers prompts from a script."""

    def __init__(self, interactive: bool = False, answers: list[str] | None = None) -> None:
        self.interactive = interactive
        self.answers = list(answers or [])
        self.prompts: list[str] = []
        self.messages: list[str] = []
        self.plans: list[Plan] = []
        self.started: list[str] = []
        self.finished: list[tuple[str, str]] = []
        self.summaries: list[Journal] = []

    def plan(self, plan: Plan) -> None:
        self.plans.append(plan)

    def message(self, text: str) -> None:
        self.messages.append(text)

    def step_started(self, index: int, total: int, record: StepRecord) -> None:
        self.started.append(record.name)

    def step_finished(self, index: int, total: int, record: StepRecord) -> None:
        self.finished.append((record.name, record.status))

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)

    def summary(self, journal: Journal) -> None:
        self.summaries.append(journal)
