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
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

import aggregator.lambda_handler
import workers.lambda_handler
from aggregator.aggregates import day_partition
from aggregator.usage_record import UsageRecord
from catalog.model import OrgSettings
from catalog.store import CatalogStore
from catalog.token_counts import TokenCounts
from infra.processes import PipelineProcess
from infra.resource_setup import ensure_resources, scan_items
from runtime.aws import AwsSettings, open_async_clients
from runtime.resources import ResourceNames, table_specs
from runtime.stats_file import read_stats
from tests.integration.harness import eventually, org_settings, pipeline_env, price
from workers.message import UsageEvent, encode

pytestmark = pytest.mark.integration

PREMIUM = (3_000_000, 15_000_000)
STANDARD = (800_000, 4_000_000)
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


def stream_arn(d: Deployment) -> str:
    return str(d.settings.dynamodb().describe_table(TableName=d.names.usage_table)["Table"]["LatestStreamArn"])


def stream_event(d: Deployment, expected: int) -> dict[str, Any]:
    """The usage stream's records, read with GetRecords from TRIM_HORIZON, as one Lambda DynamoDB event.

    `expected` records must be there: the test wrote them, and an open shard can answer empty before it has them. The
    event is the one a mapping with a tumbling window delivers: it names the shard (`shardId`) and a window.
    """
    streams = d.settings.streams()
    arn = stream_arn(d)
    by_shard: dict[str, list[Any]] = {}

    def read_all() -> bool:
        by_shard.clear()
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
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
    [(shard_id, records)] = by_shard.items()
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
            "eventSourceARN": arn,
        }
        for r in records
    ]
    window_start = datetime.now(UTC).replace(second=0, microsecond=0)
    window = {"start": window_start.isoformat(), "end": (window_start + timedelta(minutes=1)).isoformat()}
    shaped = {
        "Records": lambda_records,
        "shardId": shard_id,
        "eventSourceARN": arn,
        "window": window,
        "state": {},
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }
    return dict(json.loads(json.dumps(shaped)))


def batch(event: dict[str, Any], start: int, end: int | None = None) -> dict[str, Any]:
    """The same event cut to records[start:end]: a batch with other bounds, as a retry or a new mapping may bring."""
    return {**event, "Records": event["Records"][start:end]}


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


def test_a_transient_failure_is_reported_and_the_redelivered_record_is_written_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 1 s back-off after a first delivery, far below the queue's 30 s visibility timeout: the record comes back
    # within seconds only if the handler set its visibility itself.
    monkeypatch.setenv("CK_WORKER_RETRY_BASE_S", "1")
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
    # The mapping deletes what was not reported, and leaves the reported record as the handler left it.
    sqs = deployment.settings.sqs()
    for record in first["Records"]:
        if record["messageId"] != retried_id:
            sqs.delete_message(QueueUrl=deployment.queue_url, ReceiptHandle=record["receiptHandle"])
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


def test_an_event_queued_before_its_label_was_removed_still_prices_with_its_price_then(
    deployment: Deployment,
) -> None:
    org_id = provision_org(deployment.settings)
    queued = event(org_id, "standard", 10_000, 1_000)
    send(deployment, [encode([queued])])
    # The admin removes the label while the event waits on the queue.
    without_standard = org_settings()
    del without_standard["models"]["standard"]
    without_standard["model_ordering"].remove("standard")
    del without_standard["daily_quotas_usd_micros"]["standard"]

    async def remove_label() -> int:
        async with open_async_clients(deployment.settings) as clients:
            catalog = CatalogStore(clients.dynamodb, deployment.settings.names.config_table, cache_ttl_s=0)
            org, _ = await catalog.put_org(org_id, OrgSettings.model_validate(without_standard))
            return org.price_version

    assert asyncio.run(remove_label()) == 2
    sqs_event = receive_sqs_event(deployment, 1)
    assert workers.lambda_handler.handler(sqs_event, None) == {"batchItemFailures": []}
    [item] = usage_items(deployment, org_id).values()
    # Priced from the price history, as the label was priced when the call was made: not a dead letter.
    assert (item["price_version"], item["cost_usd_micros"]) == (1, price(10_000, 1_000, *STANDARD))
    assert queue_depth(deployment, deployment.dlq_url) == 0


# -- aggregator ----------------------------------------------------------------------------------------------------

ANSWER: dict[str, Any] = {"state": {}, "batchItemFailures": []}


def checkpoint_of(d: Deployment, shard_id: str) -> dict[str, Any]:
    [item] = [c for c in checkpoints(d) if c["shard_id"] == shard_id]
    return item


def checkpoints(d: Deployment) -> list[dict[str, Any]]:
    return [plain(i) for i in scan_items(d.settings.dynamodb(), d.names.checkpoints_table)]


def assert_exact(d: Deployment, records: list[UsageRecord]) -> None:
    """Every aggregate equals the sum of exactly the usage records of its key, and no other aggregate exists."""
    expected: dict[tuple[str, str, str, str], list[UsageRecord]] = {}
    for r in records:
        k = r.aggregate_key
        expected.setdefault((k.org_id, k.day, k.app_id, k.model_label), []).append(r)
    rows = {(row["org_id"], row["day"], row["app_id"], row["model_label"]): row for row in all_aggregates(d)}
    assert set(rows) == set(expected)
    for key, contributing in expected.items():
        assert totals_of(rows[key]) == expected_totals(contributing), key


def test_aggregator_handler_applied_twice_to_the_same_batch_counts_once(deployment: Deployment) -> None:
    org_id = str(uuid.uuid4())
    today = datetime.now(UTC)
    records = [usage_record(org_id, "premium", 100 * i, 10 * i, today) for i in range(1, 4)] + [
        usage_record(org_id, "standard", 1000 + i, 50, today) for i in range(2)
    ]
    write_usage(deployment, records)
    event = stream_event(deployment, len(records))

    assert aggregator.lambda_handler.handler(event, None) == ANSWER
    assert aggregator.lambda_handler.handler(event, None) == ANSWER  # Lambda's retry of the same batch

    day = today.date().isoformat()
    rows = aggregates(deployment, org_id, day)
    assert set(rows) == {"premium", "standard"}
    for label in rows:
        assert totals_of(rows[label]) == expected_totals([r for r in records if r.model_label == label])
    # Each aggregate remembers the last record of the shard it counted; the shard's checkpoint is past the batch.
    last = event["Records"][-1]["dynamodb"]["SequenceNumber"]
    assert rows["standard"][f"applied#{event['shardId']}"] == last.rjust(40, "0")
    checkpoint = checkpoint_of(deployment, event["shardId"])
    assert checkpoint["sequence_number"] == last
    assert checkpoint["stream_arn"] == event["eventSourceARN"]


def test_overlapping_and_differently_bounded_batches_then_a_full_replay_count_each_record_once(
    deployment: Deployment,
) -> None:
    org_id = str(uuid.uuid4())
    today = datetime.now(UTC)
    labels = ["premium", "standard"]
    records = [usage_record(org_id, labels[i % 2], 10 + i, 1 + i % 7, today) for i in range(120)]
    write_usage(deployment, records)
    event = stream_event(deployment, len(records))

    # A batch fails after counting some keys and is retried as it was; then Lambda's batches shift: a BatchSize
    # change, a bisection, a batch cut at other records than the first attempt.
    done = 0
    for start, end in [(0, 40), (0, 40), (25, 70), (60, 61), (50, 95), (95, 120), (90, 120)]:
        assert aggregator.lambda_handler.handler(batch(event, start, end), None) == ANSWER
        done = max(done, end)
        assert_exact(deployment, records[:done])
    assert done == len(records)
    # A new mapping from TRIM_HORIZON (the function redeployed with a new event source) reads it all again.
    aggregator.lambda_handler.handler(event, None)
    assert_exact(deployment, records)
    assert (
        checkpoint_of(deployment, event["shardId"])["sequence_number"]
        == event["Records"][-1]["dynamodb"]["SequenceNumber"]
    )


def test_a_replay_with_later_records_counts_only_the_later_ones_on_every_key(deployment: Deployment) -> None:
    org_id = str(uuid.uuid4())
    # One record per org-local day: 150 aggregate keys in one batch, more than one transaction could ever hold.
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    records = [usage_record(org_id, "premium", 10 + i, 1, start + timedelta(days=i)) for i in range(150)]
    write_usage(deployment, records)
    first = stream_event(deployment, len(records))
    aggregator.lambda_handler.handler(batch(first, 0, 99), None)
    assert_exact(deployment, records[:99])

    later = [usage_record(org_id, "premium", 5000 + i, 7, start + timedelta(days=2 * i)) for i in range(60)]
    write_usage(deployment, later)
    everything = stream_event(deployment, len(records) + len(later))
    # The retry brings the whole first batch and the later records at once.
    aggregator.lambda_handler.handler(everything, None)
    assert_exact(deployment, records + later)
    aggregator.lambda_handler.handler(batch(everything, 120), None)
    assert_exact(deployment, records + later)


def test_an_event_without_its_shard_is_refused_and_counts_nothing(deployment: Deployment) -> None:
    org_id = str(uuid.uuid4())
    records = [usage_record(org_id, "premium", 100, 10, datetime.now(UTC))]
    write_usage(deployment, records)
    event = stream_event(deployment, 1)
    # A mapping without a tumbling window: Lambda's event names no shard. Refusing it keeps the batch on the stream
    # (and the mapping's IteratorAge growing) instead of counting under a guessed guard.
    with pytest.raises(aggregator.lambda_handler.ShardNotNamed):
        aggregator.lambda_handler.handler({"Records": event["Records"]}, None)
    assert all_aggregates(deployment) == []
    # A window's last invocation can carry no records at all: nothing to do, and the answer Lambda needs.
    assert aggregator.lambda_handler.handler({**event, "Records": [], "isFinalInvokeForWindow": True}, None) == ANSWER


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


def test_the_lambda_and_the_long_running_aggregator_on_one_stream_count_each_record_once(
    deployment: Deployment, log_dir: Path
) -> None:
    org_id = str(uuid.uuid4())
    today = datetime.now(UTC)
    labels = ["premium", "standard", "economy"]
    records = [usage_record(org_id, labels[i % 3], 100 + i, 3 + i % 11, today) for i in range(300)]
    write_usage(deployment, records)
    stats_file = log_dir / f"both-modes-{secrets.token_hex(3)}.json"
    consumer = PipelineProcess(
        "aggregator",
        pipeline_env(
            deployment.settings, CK_AGGREGATOR_RECORDS_PER_READ="40", CK_AGGREGATOR_STATS_FILE=str(stats_file)
        ),
        log_dir / "aggregator-both-modes.log",
    )
    consumer.start()
    try:
        # The consumer has counted some of the shard when a Lambda mapping starts on it from TRIM_HORIZON, in
        # batches of 37 against the consumer's 40, while more usage arrives for both.
        eventually(lambda: checkpoints(deployment), timeout_s=30, interval_s=0.2)
        for round_ in range(3):
            event = stream_event(deployment, len(records))
            for start in range(0, len(records), 37):
                assert aggregator.lambda_handler.handler(batch(event, start, start + 37), None) == ANSWER
            more = [usage_record(org_id, labels[i % 3], 7 * i, round_ + 1, today) for i in range(60)]
            write_usage(deployment, more)
            records += more
        assert consumer.alive()

        def consumer_done() -> bool:
            checkpoint = checkpoints(deployment)
            last = stream_event(deployment, len(records))["Records"][-1]["dynamodb"]["SequenceNumber"]
            return bool(checkpoint) and checkpoint[0]["sequence_number"] == last

        # The last 60 records are the consumer's alone; then the Lambda reads everything once more.
        eventually(consumer_done, timeout_s=60, interval_s=0.5)
        aggregator.lambda_handler.handler(stream_event(deployment, len(records)), None)
    finally:
        consumer.stop()
    assert_exact(deployment, records)
    stats = read_stats(stats_file)
    # The consumer read at least the records only it was given, without an error.
    read = stats["records_read"]
    assert isinstance(read, int) and read >= 60
    assert stats["errors"] == 0
