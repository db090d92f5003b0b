"""The Lambda handlers, called in-process with events built from the real emulator's queue and stream.

Each test gets a deployment of its own (all six tables and both queues under a fresh prefix, from runtime/resources.py)
that no pipeline process reads: the session's worker and aggregator follow the session prefix only, so nothing but
the handler under test consumes these messages or applies these stream records, and every aggregate a test reads was
written by the handler alone. The handlers find the deployment from CK_RESOURCE_PREFIX, as in Lambda.

The tests play the event source mappings: for SQS they receive real messages, wrap them in Lambda's SQS event shape,
then delete what the handler did not report (as the mapping does); for DynamoDB Streams they read real records with
GetRecords and wrap them in Lambda's DynamoDB event shape. Events pass through JSON, as Lambda's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

import aggregator.lambda_handler
import workers.lambda_handler
from aggregator.aggregates import day_partition
from aggregator.commit import MAX_AGGREGATES_PER_TRANSACTION
from aggregator.usage_record import UsageRecord
from catalog.model import OrgSettings
from catalog.store import CatalogStore
from catalog.token_counts import TokenCounts
from infra.resource_setup import ensure_resources, scan_items
from runtime.aws import AwsSettings, open_async_clients
from runtime.resources import ResourceNames, table_specs
from tests.integration.harness import eventually, org_settings, price
from workers.message import UsageEvent, encode

pytestmark = pytest.mark.integration

PREMIUM = (3_000_000, 15_000_000)
STANDARD = (800_000, 4_000_000)
STREAM_RETENTION_S = 24 * 3600
_deserialize = TypeDeserializer().deserialize


def plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserialize(v) for k, v in item.items()}


@dataclass
class Deployment:
    settings: AwsSettings
    queue_url: str
    dlq_url: str
    queue_arn: str

    @property
    def names(self) -> ResourceNames:
        return self.settings.names


@pytest.fixture
def deployment(aws_settings: AwsSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    prefix = f"{aws_settings.names.prefix}lambda-{secrets.token_hex(2)}-"
    settings = replace(aws_settings, names=ResourceNames(prefix))
    ensure_resources(settings, report=lambda m: None)
    sqs = settings.sqs()
    queue_url = sqs.get_queue_url(QueueName=settings.names.usage_queue)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=settings.names.dead_letter_queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setenv("CK_RESOURCE_PREFIX", prefix)
    yield Deployment(settings, queue_url, dlq_url, queue_arn)
    # Each test starts cold: the next one opens clients for its own deployment.
    workers.lambda_handler.container.close()
    aggregator.lambda_handler.container.close()
    ddb = settings.dynamodb()
    for spec in table_specs(settings.names):
        with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
            ddb.delete_table(TableName=spec.name)
    for url in (queue_url, dlq_url):
        sqs.delete_queue(QueueUrl=url)


def provision_org(settings: AwsSettings) -> str:
    org_id = str(uuid.uuid4())

    async def put() -> None:
        async with open_async_clients(settings) as clients:
            catalog = CatalogStore(clients.dynamodb, settings.names.config_table, cache_ttl_s=0)
            await catalog.put_org(org_id, OrgSettings.model_validate(org_settings()))

    asyncio.run(put())
    return org_id


def event(org_id: str, label: str, input_tokens: int, output_tokens: int, when: datetime | None = None) -> UsageEvent:
    now = datetime.now(UTC)
    return UsageEvent(
        org_id=org_id,
        app_id="app-one",
        request_id=str(uuid.uuid4()),
        model_label=label,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        timestamp=when or now,
        accepted_at=now,
    )


# -- playing the SQS event source mapping ------------------------------------------------------------------------


def send(d: Deployment, bodies: list[str]) -> list[str]:
    sqs = d.settings.sqs()
    return [sqs.send_message(QueueUrl=d.queue_url, MessageBody=body)["MessageId"] for body in bodies]


def receive_sqs_event(d: Deployment, count: int) -> dict[str, Any]:
    """Exactly `count` messages received from the queue, as the SQS event Lambda would pass to the handler."""
    sqs = d.settings.sqs()
    messages: list[Any] = []

    def received() -> bool:
        page = sqs.receive_message(
            QueueUrl=d.queue_url,
            MaxNumberOfMessages=min(10, count - len(messages)),
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages.extend(page.get("Messages", []))
        return len(messages) >= count

    eventually(received, timeout_s=10)
    assert len(messages) == count
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": d.queue_arn,
            "awsRegion": d.settings.region,
        }
        for m in messages
    ]
    return dict(json.loads(json.dumps({"Records": records})))


def settle_like_the_mapping(d: Deployment, sqs_event: dict[str, Any], response: dict[str, Any]) -> None:
    """Delete what was not reported; reported records return to the queue (now, standing in for the timeout)."""
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    sqs = d.settings.sqs()
    for record in sqs_event["Records"]:
        if record["messageId"] in failed:
            sqs.change_message_visibility(
                QueueUrl=d.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=d.queue_url, ReceiptHandle=record["receiptHandle"])


def queue_depth(d: Deployment, url: str) -> int:
    attributes = d.settings.sqs().get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def dead_letters(d: Deployment, count: int) -> list[dict[str, Any]]:
    sqs = d.settings.sqs()
    found: list[dict[str, Any]] = []

    def received() -> bool:
        page = sqs.receive_message(
            QueueUrl=d.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        for m in page.get("Messages", []):
            attributes = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
            found.append({"body": m["Body"], **attributes})
        return len(found) >= count

    eventually(received, timeout_s=10)
    assert len(found) == count
    return found


def usage_items(d: Deployment, org_id: str) -> dict[str, dict[str, Any]]:
    items = (plain(i) for i in scan_items(d.settings.dynamodb(), d.names.usage_table))
    return {i["request_id"]: i for i in items if i["org_id"] == org_id}


# -- playing the DynamoDB Streams event source mapping ------------------------------------------------------------


def stream_event(d: Deployment, expected: int) -> dict[str, Any]:
    """The usage stream's records, read with GetRecords from TRIM_HORIZON, as one Lambda DynamoDB event.

    `expected` records must be there: the test wrote them, and an open shard can answer empty before it has them.
    """
    ddb = d.settings.dynamodb()
    streams = d.settings.streams()
    stream_arn = ddb.describe_table(TableName=d.names.usage_table)["Table"]["LatestStreamArn"]
    by_shard: dict[str, list[Any]] = {}

    def read_all() -> bool:
        by_shard.clear()
        for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            ).get("ShardIterator")
            records: list[Any] = []
            for _ in range(20):
                if iterator is None:
                    break
                page = streams.get_records(ShardIterator=iterator, Limit=1000)
                records.extend(page["Records"])
                iterator = page.get("NextShardIterator")
                if not page["Records"] and records:
                    break
            if records:
                by_shard[shard["ShardId"]] = records
        return sum(len(r) for r in by_shard.values()) >= expected

    eventually(read_all, timeout_s=10, interval_s=0.2)
    # A Lambda batch comes from one shard; a fresh table's stream has one.
    assert len(by_shard) == 1, f"records spread over shards {list(by_shard)}"
    [records] = by_shard.values()
    assert len(records) == expected
    lambda_records = [
        {
            "eventID": r["eventID"],
            "eventName": r["eventName"],
            "eventVersion": r["eventVersion"],
            "eventSource": "aws:dynamodb",
            "awsRegion": r["awsRegion"],
            "dynamodb": {
                **{k: v for k, v in r["dynamodb"].items() if k != "ApproximateCreationDateTime"},
                "ApproximateCreationDateTime": r["dynamodb"]["ApproximateCreationDateTime"].timestamp(),
            },
            "eventSourceARN": stream_arn,
        }
        for r in records
    ]
    return dict(json.loads(json.dumps({"Records": lambda_records})))


def write_usage(d: Deployment, records: list[UsageRecord]) -> None:
    ddb = d.settings.dynamodb()
    for record in records:
        ddb.put_item(TableName=d.names.usage_table, Item=record.to_item())


def usage_record(org_id: str, label: str, input_tokens: int, output_tokens: int, day: datetime) -> UsageRecord:
    p_in, p_out = PREMIUM if label == "premium" else STANDARD
    return UsageRecord(
        org_id=org_id,
        app_id="app-one",
        request_id=str(uuid.uuid4()),
        model_label=label,
        bedrock_model_id=f"model-{label}",
        timestamp=day,
        org_timezone="UTC",
        tokens=TokenCounts(input_tokens=input_tokens, output_tokens=output_tokens),
        cost_usd_micros=price(input_tokens, output_tokens, p_in, p_out),
        price_version=1,
        accepted_at_ms=int(time.time() * 1000),
        written_at_ms=int(time.time() * 1000),
    )


def aggregates(d: Deployment, org_id: str, day: str) -> dict[str, dict[str, Any]]:
    """The org's aggregate rows of one day by model label."""
    page = d.settings.dynamodb().query(
        TableName=d.names.aggregates_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": day_partition(org_id, day)}},
        ConsistentRead=True,
    )
    return {row["model_label"]: row for row in map(plain, page["Items"])}


def all_aggregates(d: Deployment) -> list[dict[str, Any]]:
    return [plain(i) for i in scan_items(d.settings.dynamodb(), d.names.aggregates_table)]


def markers(d: Deployment) -> list[dict[str, Any]]:
    return [plain(i) for i in scan_items(d.settings.dynamodb(), d.names.checkpoints_table)]


def expected_totals(records: list[UsageRecord]) -> dict[str, int]:
    return {
        "cost_usd_micros": sum(r.cost_usd_micros for r in records),
        "input_tokens": sum(r.tokens.input_tokens for r in records),
        "output_tokens": sum(r.tokens.output_tokens for r in records),
        "request_count": len(records),
    }


def totals_of(row: dict[str, Any]) -> dict[str, int]:
    return {name: int(row[name]) for name in ("cost_usd_micros", "input_tokens", "output_tokens", "request_count")}


# -- worker --------------------------------------------------------------------------------------------------------


def test_worker_handler_writes_each_event_once_even_when_the_batch_is_delivered_again(deployment: Deployment) -> None:
    org_id = provision_org(deployment.settings)
    messages = [[event(org_id, "premium", 1000 * i, 100 * i), event(org_id, "standard", 7 + i, 3)] for i in (1, 2, 3)]
    send(deployment, [encode(m) for m in messages])
    sqs_event = receive_sqs_event(deployment, 3)

    assert workers.lambda_handler.handler(sqs_event, None) == {"batchItemFailures": []}
    items = usage_items(deployment, org_id)
    sent = {e.request_id: e for m in messages for e in m}
    assert set(items) == set(sent)
    for request_id, e in sent.items():
        p_in, p_out = PREMIUM if e.model_label == "premium" else STANDARD
        assert items[request_id]["cost_usd_micros"] == price(e.input_tokens, e.output_tokens, p_in, p_out)

    # SQS delivers at least once: the same batch again changes nothing, not even the write time.
    assert workers.lambda_handler.handler(sqs_event, None) == {"batchItemFailures": []}
    again = usage_items(deployment, org_id)
    assert {k: v["written_at_ms"] for k, v in again.items()} == {k: v["written_at_ms"] for k, v in items.items()}


def test_poison_and_unpriceable_events_go_to_the_dead_letter_queue_and_are_not_failures(
    deployment: Deployment,
) -> None:
    org_id = provision_org(deployment.settings)
    good = event(org_id, "premium", 500, 50)
    unknown_label = event(org_id, "no-such-label", 1, 1)
    priced_beside_it = event(org_id, "standard", 10, 10)
    unknown_org = event(str(uuid.uuid4()), "premium", 1, 1)
    poison = '{"v": 1, "events": "not a list"}'
    send(deployment, [encode([good]), poison, encode([unknown_label, priced_beside_it]), encode([unknown_org])])
    sqs_event = receive_sqs_event(deployment, 4)

    response = workers.lambda_handler.handler(sqs_event, None)
    assert response == {"batchItemFailures": []}
    settle_like_the_mapping(deployment, sqs_event, response)

    letters = {d["error_code"]: d for d in dead_letters(deployment, 3)}
    assert set(letters) == {"POISON_MESSAGE", "UNKNOWN_MODEL_LABEL", "UNKNOWN_ORG"}
    assert letters["POISON_MESSAGE"]["body"] == poison
    # Only the unpriceable part of a message is forwarded; its priced neighbour is written.
    assert [e["request_id"] for e in json.loads(letters["UNKNOWN_MODEL_LABEL"]["body"])["events"]] == [
        unknown_label.request_id
    ]
    assert [e["request_id"] for e in json.loads(letters["UNKNOWN_ORG"]["body"])["events"]] == [unknown_org.request_id]
    by_id = {r["messageId"]: r["body"] for r in sqs_event["Records"]}
    assert by_id[letters["POISON_MESSAGE"]["source_message_id"]] == poison
    assert set(usage_items(deployment, org_id)) == {good.request_id, priced_beside_it.request_id}
    assert queue_depth(deployment, deployment.queue_url) == 0


def test_a_transient_failure_is_reported_and_the_redelivered_record_is_written_once(deployment: Deployment) -> None:
    org_id = provision_org(deployment.settings)
    retried = event(org_id, "premium", 2000, 200)
    poison = "{not json"
    send(deployment, [encode([retried]), poison])
    first = receive_sqs_event(deployment, 2)
    retried_id = next(r["messageId"] for r in first["Records"] if r["body"] != poison)

    # The usage table is gone for a while (a real ResourceNotFoundException from the emulator): retryable.
    ddb = deployment.settings.dynamodb()
    ddb.delete_table(TableName=deployment.names.usage_table)
    ddb.get_waiter("table_not_exists").wait(TableName=deployment.names.usage_table)
    response = workers.lambda_handler.handler(first, None)
    # Only the retryable record is reported; the poison one is settled by forwarding, in the same batch.
    assert response == {"batchItemFailures": [{"itemIdentifier": retried_id}]}
    settle_like_the_mapping(deployment, first, response)
    [letter] = dead_letters(deployment, 1)
    assert letter["body"] == poison

    ensure_resources(deployment.settings, report=lambda m: None)
    second = receive_sqs_event(deployment, 1)
    [record] = second["Records"]
    assert record["messageId"] == retried_id
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    response = workers.lambda_handler.handler(second, None)
    assert response == {"batchItemFailures": []}
    settle_like_the_mapping(deployment, second, response)
    [item] = usage_items(deployment, org_id).values()
    assert item["request_id"] == retried.request_id
    assert item["cost_usd_micros"] == price(2000, 200, *PREMIUM)
    assert queue_depth(deployment, deployment.queue_url) == 0


# -- aggregator ----------------------------------------------------------------------------------------------------


def test_aggregator_handler_applied_twice_to_the_same_batch_counts_once(deployment: Deployment) -> None:
    org_id = str(uuid.uuid4())
    today = datetime.now(UTC)
    records = [usage_record(org_id, "premium", 100 * i, 10 * i, today) for i in range(1, 4)] + [
        usage_record(org_id, "standard", 1000 + i, 50, today) for i in range(2)
    ]
    write_usage(deployment, records)
    batch = stream_event(deployment, len(records))

    before = time.time()
    aggregator.lambda_handler.handler(batch, None)
    aggregator.lambda_handler.handler(batch, None)  # Lambda's retry of the same batch

    day = today.date().isoformat()
    rows = aggregates(deployment, org_id, day)
    assert set(rows) == {"premium", "standard"}
    for label in rows:
        assert totals_of(rows[label]) == expected_totals([r for r in records if r.model_label == label])
    [marker] = markers(deployment)
    assert marker["first_sequence_number"] == batch["Records"][0]["dynamodb"]["SequenceNumber"]
    assert marker["last_sequence_number"] == batch["Records"][-1]["dynamodb"]["SequenceNumber"]
    assert marker["stream_arn"] == batch["Records"][0]["eventSourceARN"]
    # Kept beyond the stream's retention, so any retry of the batch still finds it; then expired by TTL.
    assert marker["expires_at"] > before + STREAM_RETENTION_S


def test_each_run_of_a_batch_and_each_later_batch_applies_exactly_once(deployment: Deployment) -> None:
    org_id = str(uuid.uuid4())
    # One record per org-local day: every record is an aggregate key of its own, so a batch of all of them is
    # committed in two runs, the first of exactly MAX_AGGREGATES_PER_TRANSACTION records.
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    records = [
        usage_record(org_id, "premium", 10 + i, 1, start + timedelta(days=i))
        for i in range(MAX_AGGREGATES_PER_TRANSACTION + 21)
    ]
    write_usage(deployment, records)
    full = stream_event(deployment, len(records))
    first_run = {"Records": full["Records"][:MAX_AGGREGATES_PER_TRANSACTION]}

    def counts_by_day() -> dict[str, int]:
        return {row["day"]: int(row["request_count"]) for row in all_aggregates(deployment)}

    # An earlier attempt committed the first run of the batch, then failed: the retry of the full batch skips that
    # run by its marker and applies the second.
    aggregator.lambda_handler.handler(first_run, None)
    assert counts_by_day() == {r.aggregate_key.day: 1 for r in records[:MAX_AGGREGATES_PER_TRANSACTION]}
    aggregator.lambda_handler.handler(full, None)
    once = {r.aggregate_key.day: 1 for r in records}
    assert counts_by_day() == once
    assert len(markers(deployment)) == 2
    aggregator.lambda_handler.handler(full, None)
    assert counts_by_day() == once

    # The next batch holds later records only: other sequence numbers, so it applies, on days counted already.
    later = [usage_record(org_id, "premium", 5000 + i, 7, start + timedelta(days=i)) for i in range(5)]
    write_usage(deployment, later)
    next_batch = {"Records": stream_event(deployment, len(records) + len(later))["Records"][len(records) :]}
    aggregator.lambda_handler.handler(next_batch, None)
    aggregator.lambda_handler.handler(next_batch, None)
    twice = {r.aggregate_key.day for r in later}
    assert counts_by_day() == {day: 2 if day in twice else 1 for day in once}
    for row in all_aggregates(deployment):
        contributing = [r for r in records + later if r.aggregate_key.day == row["day"]]
        assert totals_of(row) == expected_totals(contributing)
    assert len(markers(deployment)) == 3


def test_worker_then_aggregator_handlers_turn_queue_messages_into_exact_aggregates(deployment: Deployment) -> None:
    org_id = provision_org(deployment.settings)
    events = [event(org_id, "premium", 1234 + i, 567) for i in range(12)]
    send(deployment, [encode(events[:5]), encode(events[5:])])
    sqs_event = receive_sqs_event(deployment, 2)
    assert workers.lambda_handler.handler(sqs_event, None) == {"batchItemFailures": []}

    aggregator.lambda_handler.handler(stream_event(deployment, len(events)), None)
    day = events[0].timestamp.date().isoformat()
    row = aggregates(deployment, org_id, day)["premium"]
    assert int(row["request_count"]) == 12
    assert int(row["cost_usd_micros"]) == sum(price(1234 + i, 567, *PREMIUM) for i in range(12))
