"""SQS stalls (its server stopped with SIGSTOP: connections open, nothing answered) while clients keep posting: past
the publisher's bound each request is refused at once with a 503, the API's memory stays bounded, and when SQS
answers again so does the API."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra import emulator
from runtime.aws import AwsSettings
from tests.integration.harness import Pipeline, api_client, eventually, pipeline_env, provision, usage
from tests.integration.memory import MB, PeakResident, resident_bytes
from tests.integration.test_faults import create_resources, fault_log_dir, own_emulator  # noqa: F401 - a fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_PENDING_EVENTS = 300
EVENTS_PER_REQUEST = 100
REQUESTS = 150
MEMORY_BOUND_BYTES = 100 * MB


@pytest.fixture
def stall_pipeline(own_emulator: emulator.EmulatorConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:  # noqa: F811
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, os.environ.get(name, "test"))
    env = {**own_emulator.environment(), "CK_RESOURCE_PREFIX": f"ckstall-{secrets.token_hex(3)}-"}
    settings = AwsSettings.from_env(env)
    create_resources(settings)
    env = pipeline_env(
        settings,
        **own_emulator.environment(),
        # One send in flight, so what waits behind it is the pending bound's alone.
        CK_PUBLISHER_MAX_INFLIGHT="1",
        CK_PUBLISHER_MAX_PENDING_EVENTS=str(MAX_PENDING_EVENTS),
        CK_PUBLISH_TIMEOUT_S="5",
    )
    pipeline = Pipeline(settings, env, fault_log_dir(settings))
    try:
        yield pipeline
    finally:
        pipeline.stop()


def test_an_sqs_stall_is_answered_503_at_once_past_the_pending_bound_with_memory_bounded(
    stall_pipeline: Pipeline,
    own_emulator: emulator.EmulatorConfig,  # noqa: F811
) -> None:
    pipeline = stall_pipeline
    pipeline.start("api")
    pid = pipeline.processes["api"].pid
    moto = emulator.server_pid(own_emulator, "moto-sqs")
    assert pid is not None and moto is not None
    with api_client(pipeline.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        batch_path = f"{tenant.app_path}/usage/batch"
        r = http.post(batch_path, json={"items": [usage()]}, headers=headers)
        assert r.status_code == 207 and r.json()["accepted"] == 1, r.text
        idle = resident_bytes(pid)

        def post(_: int) -> tuple[str, float]:
            started = time.monotonic()
            r = http.post(batch_path, json={"items": [usage() for _ in range(EVENTS_PER_REQUEST)]}, headers=headers)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1"
            return r.json()["error"]["code"], time.monotonic() - started

        os.kill(moto, signal.SIGSTOP)
        try:
            with PeakResident(pid) as memory, ThreadPoolExecutor(50) as pool:
                answers = list(pool.map(post, range(REQUESTS)))
        finally:
            os.kill(moto, signal.SIGCONT)

        codes = Counter(code for code, _ in answers)
        waited = sorted(s for code, s in answers if code == "QUEUE_UNAVAILABLE")
        refused = sorted(s for code, s in answers if code == "QUEUE_BACKLOG_FULL")
        grew = memory.peak - idle
        print(
            f"SQS stalled: {dict(codes)}; refused at once in {refused[len(refused) // 2]:.3f}s median, "
            f"{refused[-1]:.3f}s max; waited for the publish timeout: {len(waited)}; "
            f"API VmRSS idle {idle / MB:.1f} MB, peak {memory.peak / MB:.1f} MB (+{grew / MB:.1f} MB)"
        )
        assert set(codes) <= {"QUEUE_UNAVAILABLE", "QUEUE_BACKLOG_FULL"}
        # Only what fits the bound (and the one send in flight) waits; everything else is refused without waiting.
        assert codes["QUEUE_UNAVAILABLE"] <= MAX_PENDING_EVENTS // EVENTS_PER_REQUEST + 10
        assert codes["QUEUE_BACKLOG_FULL"] >= REQUESTS - MAX_PENDING_EVENTS // EVENTS_PER_REQUEST - 10
        assert grew < MEMORY_BOUND_BYTES
        pipeline.check_alive()

        def accepted_again() -> bool:
            r = http.post(batch_path, json={"items": [usage()]}, headers=headers)
            return r.status_code == 207 and r.json()["accepted"] == 1

        # SQS answers again: so does the API, once the SDK's stalled calls have given up or gone through.
        eventually(accepted_again, timeout_s=90, interval_s=1.0)
