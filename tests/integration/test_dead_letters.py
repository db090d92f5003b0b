"""Dead letters come back by themselves once their cause has cleared; poison stays for an operator.

A pipeline of its own (API, worker, aggregator on a fresh prefix), with the worker sweeping its dead-letter queue every
second. Messages reach the dead-letter queue the two ways they do in production: forwarded by the worker (an event of
a label the org does not have yet) and moved by the queue's redrive policy after its deliveries ran out (no
error_code), here put there directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runtime.aws import AwsSettings
from tests.integration.harness import (
    ADMIN_KEY,
    Pipeline,
    api_client,
    eventually,
    org_settings,
    price,
    provision,
    side_pipeline,
    usage,
    wait_idle,
)
from workers.message import UsageEvent, encode

pytestmark = pytest.mark.integration


@pytest.fixture
def sweeping(aws_settings: AwsSettings, log_dir: Path) -> Iterator[Pipeline]:
    with side_pipeline(
        aws_settings, log_dir, "dlq", ("api", "worker", "aggregator"), CK_WORKER_REDRIVE_INTERVAL_S="1"
    ) as pipeline:
        yield pipeline


def queued(org_id: str, app_id: str, label: str, input_tokens: int) -> UsageEvent:
    now = datetime.now(UTC)
    return UsageEvent(
        org_id=org_id,
        app_id=app_id,
        request_id=str(uuid.uuid4()),
        model_label=label,
        input_tokens=input_tokens,
        timestamp=now,
        accepted_at=now,
    )


def dlq_depth(settings: AwsSettings) -> int:
    sqs = settings.sqs()
    url = sqs.get_queue_url(QueueName=settings.names.dead_letter_queue)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_dead_letters_are_redriven_once_their_cause_clears_and_poison_stays(sweeping: Pipeline) -> None:
    settings = sweeping.settings
    sqs = settings.sqs()
    queue_url = sqs.get_queue_url(QueueName=settings.names.usage_queue)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=settings.names.dead_letter_queue)["QueueUrl"]
    with api_client(sweeping.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        # A label the org adds only later: the worker cannot price it yet and forwards it.
        early = queued(tenant.org_id, tenant.app_id, "nova", 2_000_000)
        sqs.send_message(QueueUrl=queue_url, MessageBody=encode([early]))
        # Moved by the redrive policy after an outage outlasted the back-off: no error_code.
        stranded = queued(tenant.org_id, tenant.app_id, "premium", 1_000)
        sqs.send_message(QueueUrl=dlq_url, MessageBody=encode([stranded]))
        sqs.send_message(QueueUrl=dlq_url, MessageBody="{not json")
        # Writes succeed (ordinary usage), so the outage is over: the stranded message goes back.
        posted = usage("premium", 500, 50)
        assert http.post(f"{tenant.app_path}/usage", json=posted, headers=headers).status_code == 202

        def premium_requests() -> int:
            body = http.get(f"{tenant.app_path}/aggregates/today", headers=headers).json()
            return int(next(m for m in body["models"] if m["model_label"] == "premium")["request_count"])

        eventually(lambda: premium_requests() == 2, timeout_s=30)

        # The label arrives: the forwarded event prices now, and comes back too.
        with_nova: dict[str, Any] = org_settings()
        with_nova["models"]["nova"] = {
            "bedrock_model_id": "amazon.nova-lite",
            "prices": {"input_per_mtok_usd_micros": 60_000, "output_per_mtok_usd_micros": 240_000},
        }
        r = http.put(f"/api/v1/orgs/{tenant.org_id}", json=with_nova, headers={"X-API-Key": ADMIN_KEY})
        assert r.status_code == 200, r.text

        def nova_cost() -> int:
            body = http.get(f"{tenant.app_path}/aggregates/today", headers=headers).json()
            return sum(int(m["cost_usd_micros"]) for m in body["models"] if m["model_label"] == "nova")

        eventually(lambda: nova_cost() == price(2_000_000, 0, 60_000, 240_000), timeout_s=30)
        wait_idle(settings)
        body = http.get(f"{tenant.app_path}/aggregates/today", headers=headers).json()
        premium = next(m for m in body["models"] if m["model_label"] == "premium")
        assert premium["cost_usd_micros"] == price(1_000, 0, 3_000_000, 15_000_000) + price(
            500, 50, 3_000_000, 15_000_000
        )
        # Only the poison is left, for an operator.
        assert dlq_depth(settings) == 1
        # (Read once the worker, whose sweeps keep looking at it, has stopped.)
        sweeping.stop("worker")
        letters = eventually(
            lambda: sqs.receive_message(
                QueueUrl=dlq_url, WaitTimeSeconds=1, VisibilityTimeout=30, MessageAttributeNames=["All"]
            ).get("Messages"),
            timeout_s=10,
        )
        [letter] = letters
        assert letter["Body"] == "{not json"
        assert letter["MessageAttributes"]["error_code"]["StringValue"] == "POISON_MESSAGE"
