"""The integration harness: a real emulator (or LocalStack via AWS_ENDPOINT_URL_*), real processes, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from boto3.dynamodb.types import TypeDeserializer

from aggregator.usage_record import UsageRecord
from catalog.token_counts import TokenCounts
from infra.processes import PipelineProcess, child_environment, wait_for_http
from infra.resource_setup import ensure_resources, scan_items
from ingest_api.pipeline_status import PipelineStatus, pipeline_status
from runtime.aws import AwsSettings, open_async_clients
from runtime.resources import ResourceNames, table_specs

# The API refuses secrets shorter than 32 bytes: the test's are as strong as production's.
ADMIN_KEY = "test-admin-" + secrets.token_urlsafe(32)
JWT_SECRET = secrets.token_urlsafe(48)
REPO = Path(__file__).resolve().parents[2]
GENEROUS_RATE_LIMITS = (
    "CK_RATE_AUTH_PER_CLIENT",
    "CK_RATE_AUTH_PER_ADDRESS",
    "CK_RATE_ADMIN_FAILURES_PER_ADDRESS",
    "CK_RATE_CLAIMS_PER_ADDRESS",
    "CK_RATE_USAGE_PER_CLIENT",
    "CK_RATE_READS_PER_CLIENT",
)

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(check: Callable[[], T | None], timeout_s: float = 10.0, interval_s: float = 0.05) -> T:
    """Poll until check returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s; last value: {last!r}")


def status(settings: AwsSettings) -> PipelineStatus:
    async def read() -> PipelineStatus:
        async with open_async_clients(settings) as clients:
            return await pipeline_status(clients, settings.names)

    return asyncio.run(read())


def wait_idle(settings: AwsSettings, timeout_s: float = 30.0) -> None:
    """Until the queue is empty and the aggregator has applied every stream record.

    One event loop and one set of clients for the whole wait: every test waits for this before it starts.
    """

    async def wait() -> None:
        deadline = time.monotonic() + timeout_s
        async with open_async_clients(settings) as clients:
            while True:
                s = await pipeline_status(clients, settings.names)
                if s.queue.total == 0 and s.pending_records == 0:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"pipeline not idle within {timeout_s}s; last status: {s!r}")
                await asyncio.sleep(0.05)

    asyncio.run(wait())


@dataclass
class Pipeline:
    settings: AwsSettings
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, PipelineProcess] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *names: str) -> None:
        # The API last: the others start up while the harness waits for its health check.
        for name in names or ("worker", "aggregator", "api"):
            env = {**self.env, "CK_API_PORT": str(self.port)}
            process = PipelineProcess(name, env, self.log_dir / f"{name}.log")
            process.start()
            self.processes[name] = process
            if name == "api":
                wait_for_http(f"{self.base_url}/health", 60, process)

    def stop(self, *names: str) -> None:
        for name in names or tuple(self.processes):
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop()

    def kill(self, name: str) -> None:
        self.processes.pop(name).kill()

    def check_alive(self) -> None:
        dead = {n: p.returncode() for n, p in self.processes.items() if not p.alive()}
        assert not dead, f"pipeline processes exited: {dead} (logs in {self.log_dir})"


@contextmanager
def side_pipeline(
    aws_settings: AwsSettings, log_dir: Path, name: str, processes: tuple[str, ...], **env: str
) -> Iterator[Pipeline]:
    """Processes of a deployment of their own (every table and queue under a fresh prefix beside the session's),
    for a test that needs a pipeline in a state the session's must not be in (lagging, sweeping, degraded)."""
    settings = replace(aws_settings, names=ResourceNames(f"{aws_settings.names.prefix}{name}-{uuid.uuid4().hex[:4]}-"))
    ensure_resources(settings, report=lambda m: None)
    pipeline = Pipeline(settings, pipeline_env(settings, **env), log_dir / settings.names.prefix.rstrip("-"))
    pipeline.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        pipeline.start(*processes)
        yield pipeline
    finally:
        pipeline.stop()
        drop_resources(settings)


def drop_resources(settings: AwsSettings, keep: ResourceNames | None = None) -> None:
    """Delete the tables and queues whose names start with settings' prefix (but for keep's own).

    Side deployments go when their test is done: besides keeping a shared LocalStack small, DynamoDB Local 3.3.0
    stops adding an index to an existing table (it stays CREATING) once seven or more tables have TTL enabled.
    """
    ddb, sqs = settings.dynamodb(), settings.sqs()
    kept = set() if keep is None else {spec.name for spec in table_specs(keep)}
    kept |= set() if keep is None else {keep.usage_queue, keep.dead_letter_queue}
    tables: list[str] = []
    for page in ddb.get_paginator("list_tables").paginate():
        tables += page.get("TableNames", [])
    for name in tables:
        if name.startswith(settings.names.prefix) and name not in kept:
            with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
                ddb.delete_table(TableName=name)
    for url in sqs.list_queues(QueueNamePrefix=settings.names.prefix).get("QueueUrls", []):
        if url.rsplit("/", 1)[-1] not in kept:
            with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                sqs.delete_queue(QueueUrl=url)


def usage_items(settings: AwsSettings, org_id: str) -> list[dict[str, Any]]:
    """An org's usage items as plain values, read straight from the table."""
    d = TypeDeserializer()
    items = [
        {k: d.deserialize(v) for k, v in i.items()} for i in scan_items(settings.dynamodb(), settings.names.usage_table)
    ]
    return [i for i in items if i.get("org_id") == org_id]


def uncounted_usage_item(org_id: str, app_id: str, written_ago_ms: int) -> dict[str, Any]:
    """A usage item as the worker writes it, written_ago_ms ago: put straight into the usage table, it is a record
    the aggregator has yet to count (or never will, where none runs)."""
    now_ms = int(time.time() * 1000)
    return UsageRecord(
        org_id=org_id,
        app_id=app_id,
        request_id=str(uuid.uuid4()),
        model_label="premium",
        bedrock_model_id="anthropic.claude-sonnet",
        timestamp=datetime.now(UTC),
        org_timezone="UTC",
        tokens=TokenCounts(input_tokens=1000),
        cost_usd_micros=3000,
        price_version=1,
        accepted_at_ms=now_ms - written_ago_ms,
        written_at_ms=now_ms - written_ago_ms,
    ).to_item()


def pipeline_env(settings: AwsSettings, **extra: str) -> dict[str, str]:
    return child_environment(
        {
            "CK_RESOURCE_PREFIX": settings.names.prefix,
            "CK_JWT_SECRET": JWT_SECRET,
            "CK_ADMIN_API_KEY": ADMIN_KEY,
            # Short caches keep tests that change config or revoke tokens quick; behaviour is the same.
            "CK_CATALOG_CACHE_TTL_S": "0.5",
            # Price changes take effect after the worker's cache has seen them (production: 5 minutes).
            "CK_PRICE_CHANGE_NOTICE_S": "1",
            # Dead letters stay where tests put them unless a test sweeps them (test_dead_letters.py).
            "CK_WORKER_REDRIVE_INTERVAL_S": "0",
            # The aggregator's lag as model selection and /health see it is at most a second old.
            "CK_METRICS_REFRESH_S": "1",
            "CK_WORKER_WAIT_TIME_S": "2",
            "CK_WORKER_RETRY_BASE_S": "1",
            # Every test speaks from 127.0.0.1 and many use one client: the limits are tested by test_rate_limits.py
            # on an API of its own.
            **{variable: "1000000/minute" for variable in GENEROUS_RATE_LIMITS},
            # The window gathers records into fewer transactions under load, and an idle aggregator polls its shards
            # less often; tests wait on latency instead, and the commit is exactly-once whatever the timing.
            "CK_AGGREGATOR_BATCH_WINDOW_S": "0.05",
            "CK_AGGREGATOR_IDLE_POLL_S": "0.1",
            **extra,
        }
    )


# -- an API client that speaks for a test -----------------------------------------------------------------------


def price(
    input_tokens: int, output_tokens: int, p_in: int, p_out: int, cr: int = 0, p_cr: int = 0, cw: int = 0, p_cw: int = 0
) -> int:
    """Independent restatement of the pricing rule for expected values: round half up, once per request."""
    numerator = input_tokens * p_in + output_tokens * p_out + cr * p_cr + cw * p_cw
    return (numerator + 500_000) // 1_000_000


def org_settings(timezone: str = "UTC", scope: str = "ORG", quotas: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "name": "Test",
        "timezone": timezone,
        "quota_scope": scope,
        "models": {
            "premium": {
                "bedrock_model_id": "anthropic.claude-sonnet",
                "prices": {
                    "input_per_mtok_usd_micros": 3_000_000,
                    "output_per_mtok_usd_micros": 15_000_000,
                    "cache_read_per_mtok_usd_micros": 300_000,
                    "cache_write_per_mtok_usd_micros": 3_750_000,
                },
            },
            "standard": {
                "bedrock_model_id": "anthropic.claude-haiku",
                "prices": {"input_per_mtok_usd_micros": 800_000, "output_per_mtok_usd_micros": 4_000_000},
            },
            "economy": {
                "bedrock_model_id": "amazon.nova-micro",
                "prices": {"input_per_mtok_usd_micros": 35_000, "output_per_mtok_usd_micros": 140_000},
            },
        },
        "model_ordering": ["premium", "standard", "economy"],
        "daily_quotas_usd_micros": quotas
        if quotas is not None
        else {"premium": 1_000_000, "standard": 500_000, "economy": 100_000},
    }


@dataclass
class Tenant:
    http: httpx.Client
    org_id: str
    app_id: str
    org_secret: str
    app_secret: str

    @property
    def app_client_id(self) -> str:
        return f"org-{self.org_id}-app-{self.app_id}"

    @property
    def org_client_id(self) -> str:
        return f"org-{self.org_id}"

    def token(self, client_id: str | None = None, secret: str | None = None) -> str:
        r = self.http.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id or self.app_client_id,
                "client_secret": secret or self.app_secret,
            },
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def app_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def org_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(self.org_client_id, self.org_secret)}"}

    @property
    def app_path(self) -> str:
        return f"/api/v1/orgs/{self.org_id}/apps/{self.app_id}"


def usage(label: str = "premium", input_tokens: int = 1000, output_tokens: int = 500, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "model_label": label,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "timestamp": datetime.now(UTC).isoformat(),
        **extra,
    }


def provision(
    http: httpx.Client, org: dict[str, Any] | None = None, app: dict[str, Any] | None = None, app_id: str = "app-one"
) -> Tenant:
    org_id = str(uuid.uuid4())
    admin = {"X-API-Key": ADMIN_KEY}
    r = http.put(f"/api/v1/orgs/{org_id}", json=org or org_settings(), headers=admin)
    assert r.status_code == 201, r.text
    org_secret = r.json()["credentials"]["client_secret"]
    r = http.put(f"/api/v1/orgs/{org_id}/apps/{app_id}", json=app or {"name": "App"}, headers=admin)
    assert r.status_code == 201, r.text
    return Tenant(http, org_id, app_id, org_secret, r.json()["credentials"]["client_secret"])


@contextmanager
def api_client(base_url: str, event_hooks: dict[str, list[Callable[..., Any]]] | None = None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30, event_hooks=event_hooks) as client:
        yield client


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
