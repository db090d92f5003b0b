"""Nothing lost silently: what may keep usage out of the aggregates turns /health/deep degraded and is exported.

An API on a prefix of its own, no worker and no aggregator: the test makes each condition by hand (a dead letter, a
stream gap a reader recorded, records nobody counts) and reads /health/deep and /metrics.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.checkpoints import CheckpointStore
from aggregator.shards import list_shards, stream_arn_of
from runtime.aws import AwsSettings, open_async_clients
from tests.integration.harness import Pipeline, eventually, side_pipeline, uncounted_usage_item

pytestmark = pytest.mark.integration


@pytest.fixture
def watched(aws_settings: AwsSettings, log_dir: Path) -> Iterator[Pipeline]:
    with side_pipeline(
        aws_settings, log_dir, "hl", ("api",), CK_METRICS_REFRESH_S="0.2", CK_SELECTION_MAX_LAG_S="2"
    ) as pipeline:
        yield pipeline


def health(base_url: str) -> dict[str, Any]:
    r = httpx.get(f"{base_url}/health/deep", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def degraded_gauges(base_url: str) -> dict[str, float]:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ck_pipeline_degraded":
                found[sample.labels["reason"]] = sample.value
            elif sample.name == "ck_stream_gaps":
                found["gaps"] = sample.value
    return found


def record_gap(settings: AwsSettings) -> None:
    async def record() -> None:
        async with open_async_clients(settings) as clients:
            arn = await stream_arn_of(clients.dynamodb, settings.names.usage_table)
            [shard] = await list_shards(clients.streams, arn)
            await CheckpointStore(clients.dynamodb, settings.names.checkpoints_table).record_gap(arn, shard["ShardId"])

    asyncio.run(record())


def test_dead_letters_stream_gaps_and_lag_turn_health_degraded_and_show_in_the_metrics(watched: Pipeline) -> None:
    settings = watched.settings
    base = watched.base_url
    eventually(lambda: health(base)["status"] == "ok", timeout_s=15)
    assert degraded_gauges(base) == {
        "aggregator_lag": 0,
        "dead_letters": 0,
        "stream_gap": 0,
        "status_unknown": 0,
        "gaps": 0,
    }

    sqs = settings.sqs()
    dlq_url = sqs.get_queue_url(QueueName=settings.names.dead_letter_queue)["QueueUrl"]
    sqs.send_message(QueueUrl=dlq_url, MessageBody="{}")

    def reasons(count: int) -> dict[str, Any] | None:
        body = health(base)
        return body if len(body["degraded"]) == count else None

    body = eventually(lambda: reasons(1), timeout_s=15)
    assert (body["status"], body["degraded"]) == ("degraded", ["dead_letters"])

    # A usage item nobody counts (no aggregator) written a minute ago: lag past the bound. And a reader found
    # records trimmed before it counted them: a gap.
    uncounted = uncounted_usage_item(str(uuid.uuid4()), "app-one", written_ago_ms=60_000)
    settings.dynamodb().put_item(TableName=settings.names.usage_table, Item=uncounted)
    record_gap(settings)
    body = eventually(lambda: reasons(3), timeout_s=15)
    assert body["status"] == "degraded"
    assert set(body["degraded"]) == {"aggregator_lag", "dead_letters", "stream_gap"}
    gauges = degraded_gauges(base)
    assert (gauges["dead_letters"], gauges["stream_gap"], gauges["gaps"]) == (1, 1, 1)
