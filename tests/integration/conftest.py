"""Integration fixtures: one emulator and one pipeline per session, clean usage and aggregates per test.

Endpoints: with AWS_ENDPOINT_URL_* set (e.g. LocalStack from docker-compose.yml) the tests use them; otherwise the
embedded emulator is started on test ports of its own, so a developer's `costkeeper run` is left alone.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra import emulator
from infra.resource_setup import clear_usage, ensure_resources
from runtime.aws import ENDPOINT_VARIABLES, AwsSettings
from tests.integration.harness import REPO, Pipeline, api_client, drop_resources, pipeline_env, wait_idle


@pytest.fixture(scope="session")
def aws_settings() -> Iterator[AwsSettings]:
    started: emulator.EmulatorConfig | None = None
    if not any(os.environ.get(v) for v in ENDPOINT_VARIABLES.values()):
        dynamodb_port = int(os.environ.get("CK_TEST_DYNAMODB_PORT", "18000"))
        started = emulator.EmulatorConfig(
            # Per port: concurrent test sessions on other ports keep their own pid files.
            run_dir=REPO / ".run" / f"test-{dynamodb_port}",
            cache_dir=emulator.default_cache_dir(),
            dynamodb_port=dynamodb_port,
            sqs_port=int(os.environ.get("CK_TEST_SQS_PORT", "19324")),
        )
        emulator.start(started, report=lambda m: print(m, flush=True))
        os.environ.update(started.environment())
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    # A prefix per session: runs never see each other's tables, even against a shared LocalStack.
    os.environ["CK_RESOURCE_PREFIX"] = f"cktest-{secrets.token_hex(3)}-"
    settings = AwsSettings.from_env()
    ensure_resources(settings, report=lambda m: None)
    yield settings
    if started is not None:
        emulator.stop(started, report=lambda m: None)


@pytest.fixture(scope="module", autouse=True)
def side_deployments_dropped(aws_settings: AwsSettings) -> Iterator[None]:
    """Tables and queues a module made beside the session's (under the session prefix) go when it is done."""
    yield
    drop_resources(aws_settings, keep=aws_settings.names)


@pytest.fixture(scope="session")
def log_dir(aws_settings: AwsSettings) -> Path:
    path = REPO / ".run" / "test-logs" / aws_settings.names.prefix.rstrip("-")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def pipeline(aws_settings: AwsSettings, log_dir: Path) -> Iterator[Pipeline]:
    running = Pipeline(aws_settings, pipeline_env(aws_settings), log_dir)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def http(pipeline: Pipeline, aws_settings: AwsSettings) -> Iterator[httpx.Client]:
    """A client of the running API; usage and aggregates are cleared first, once the pipeline is idle."""
    pipeline.check_alive()
    wait_idle(aws_settings)
    clear_usage(aws_settings, report=lambda m: None)
    with api_client(pipeline.base_url) as client:
        yield client
    pipeline.check_alive()


@pytest.fixture
def api(pipeline: Pipeline) -> Iterator[httpx.Client]:
    """A client of the running API with nothing cleared: for tests whose fresh orgs are all they read."""
    pipeline.check_alive()
    with api_client(pipeline.base_url) as client:
        yield client
    pipeline.check_alive()
