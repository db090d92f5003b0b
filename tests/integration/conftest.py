"""Integration fixtures: one emulator and one pipeline per session, clean usage and aggregates per test.

Endpoints: with AWS_ENDPOINT_URL_* set (e.g. LocalStack from docker-compose.yml) the tests use them, and delete the
session's tables and queues when they finish; otherwise the embedded emulator is started in memory on test ports of
its own, so a developer's `costkeeper run` and its data are left alone.

The integration-testing guide's fixtures (docs/integration-testing.md) are here too, under its names:
`dynamodb_bridge`, `test_org_credentials`, `integration_auth_headers`, `integration_test_client` and
`sample_usage_data`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.credentials import Principal
from catalog.store import CatalogStore
from infra import emulator
from infra.resource_setup import clear_usage, delete_resources, ensure_resources
from infra.seed import SEED_APP_ID, SEED_ORG_ID, seed
from runtime.aws import ENDPOINT_VARIABLES, AwsSettings, open_async_clients
from tests.integration.guide import Deferred, DynamoDBBridge
from tests.integration.harness import REPO, Pipeline, api_client, drop_resources, pipeline_env, wait_idle
from tests.integration.own_api import OwnApis


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
            # Stopped at the end of the session: nothing to keep, and memory is faster than the disk.
            in_memory=True,
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
    else:
        # A long-lived LocalStack outlives the session: leave nothing of it behind (side prefixes start with it).
        delete_resources(settings, report=lambda m: None)


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


@pytest.fixture
def own_api(pipeline: Pipeline) -> Iterator[OwnApis]:
    """Starts API processes with settings of a test's own (tight limits, an ops token) on the session's tables."""
    apis = OwnApis(pipeline)
    yield apis
    apis.close()


# -- the integration-testing guide's fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def seeded_secrets(aws_settings: AwsSettings) -> dict[str, str]:
    """The guide's test org and app, seeded into the session's tables once: client id -> secret."""
    seeded = asyncio.run(seed(aws_settings, report=lambda m: None))
    secrets_by_client = {c.client_id: c.client_secret for c in seeded if c.client_secret}
    assert len(secrets_by_client) == 2, "the session's tables are fresh, so the seed must create the org and app"
    return secrets_by_client


@pytest.fixture
def dynamodb_bridge(aws_settings: AwsSettings) -> DynamoDBBridge:
    """The session's DynamoDB: its endpoint, region and table names, and a scan through aioboto3."""
    return DynamoDBBridge(aws_settings)


@pytest.fixture
def test_org_credentials(aws_settings: AwsSettings, seeded_secrets: dict[str, str]) -> Deferred[dict[str, str]]:
    """Awaited: the seeded org's and app's ids and credentials, once the config table confirms that they work."""

    async def from_db() -> dict[str, str]:
        org, app = Principal(SEED_ORG_ID), Principal(SEED_ORG_ID, SEED_APP_ID)
        async with open_async_clients(aws_settings) as clients:
            catalog = CatalogStore(clients.dynamodb, aws_settings.names.config_table, cache_ttl_s=0)
            for principal in (org, app):
                assert await catalog.authenticate(principal, seeded_secrets[principal.client_id]), principal
        return {
            "org_id": SEED_ORG_ID,
            "app_id": SEED_APP_ID,
            "org_client_id": org.client_id,
            "org_client_secret": seeded_secrets[org.client_id],
            "app_client_id": app.client_id,
            "app_client_secret": seeded_secrets[app.client_id],
        }

    return Deferred(from_db)


@pytest.fixture
def integration_auth_headers(
    pipeline: Pipeline, test_org_credentials: Deferred[dict[str, str]]
) -> Deferred[dict[str, str]]:
    """Awaited: an Authorization header with an access token the running API issued to the seeded app."""

    async def issue() -> dict[str, str]:
        creds = await test_org_credentials
        async with httpx.AsyncClient(base_url=pipeline.base_url, timeout=30) as client:
            r = await client.post(
                "/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": creds["app_client_id"],
                    "client_secret": creds["app_client_secret"],
                },
            )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return Deferred(issue)


@pytest.fixture
def integration_test_client(
    http: httpx.Client, pipeline: Pipeline, aws_settings: AwsSettings
) -> Iterator[httpx.Client]:
    """A client of the running API whose accepted usage submissions return once the pipeline has settled them.

    The pipeline is asynchronous (API -> queue -> worker -> usage table -> stream -> aggregator), so a test that
    checks the database right after a 202 would race the worker. This client waits, after each accepted usage POST,
    until the queue is empty and the aggregator has applied every stream record. Usage and aggregates were cleared
    before the test (the `http` fixture), configuration was not.
    """

    def settle(response: httpx.Response) -> None:
        if response.request.method == "POST" and response.is_success and "/usage" in response.request.url.path:
            # The guide's tests call this client from inside their event loop, where asyncio.run cannot start one.
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(wait_idle, aws_settings).result()

    with api_client(pipeline.base_url, event_hooks={"response": [settle]}) as client:
        yield client


@pytest.fixture
def sample_usage_data() -> dict[str, Any]:
    """One usage event for the seeded app: tokens only, its cost is computed by the service."""
    return {
        "request_id": str(uuid.uuid4()),
        "model_label": "premium",
        "input_tokens": 1000,
        "output_tokens": 500,
        "timestamp": datetime.now(UTC).isoformat(),
    }
