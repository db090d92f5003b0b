"""Creating the tables and queues of one deployment (`costkeeper init`), clearing their data (`clear`), and
deleting them (a test session's teardown on a long-lived LocalStack).

What the resources are is defined in runtime/resources.py; this is the operator's side that acts on them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from runtime.aws import AwsSettings
from runtime.resources import (
    DLQ_RETENTION_S,
    MAX_RECEIVE_COUNT,
    QUEUE_RETENTION_S,
    QUEUE_VISIBILITY_TIMEOUT_S,
    TTL_ATTRIBUTE,
    IndexSpec,
    ResourceNames,
    TableSpec,
    table_specs,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient


def _index(index: IndexSpec) -> dict[str, Any]:
    return {
        "IndexName": index.name,
        "KeySchema": [{"AttributeName": index.hash_key, "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"},
    }


def _create_table(ddb: DynamoDBClient, spec: TableSpec) -> None:
    attributes: list[Any] = [{"AttributeName": "pk", "AttributeType": "S"}]
    keys: list[Any] = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if spec.has_sort_key:
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
    attributes += [{"AttributeName": index.hash_key, "AttributeType": "S"} for index in spec.indexes]
    kwargs: dict[str, Any] = {
        "TableName": spec.name,
        "AttributeDefinitions": attributes,
        "KeySchema": keys,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.indexes:
        kwargs["GlobalSecondaryIndexes"] = [_index(index) for index in spec.indexes]
    if spec.stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ddb.create_table(**kwargs)


def _ensure_indexes(ddb: DynamoDBClient, spec: TableSpec, table: dict[str, Any]) -> dict[str, Any]:
    """Add any index a table made before it was defined lacks (one at a time, as DynamoDB requires)."""
    for index in spec.indexes:
        existing = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        if index.name not in existing:
            update: Any = {"Create": _index(index)}
            ddb.update_table(
                TableName=spec.name,
                AttributeDefinitions=[{"AttributeName": index.hash_key, "AttributeType": "S"}],
                GlobalSecondaryIndexUpdates=[update],
            )
        table = _wait_active(ddb, spec.name)
    return table


def _wait_active(ddb: DynamoDBClient, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Until the table and every index of it are ACTIVE (an index being added backfills first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        table = ddb.describe_table(TableName=name)["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table.get("TableStatus") == "ACTIVE" and all(i.get("IndexStatus") == "ACTIVE" for i in indexes):
            return dict(table)
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {name} not ACTIVE after {timeout_s}s")
        time.sleep(0.2)


def _ensure_table(ddb: DynamoDBClient, spec: TableSpec) -> str:
    try:
        ddb.describe_table(TableName=spec.name)
        outcome = "exists"
    except ddb.exceptions.ResourceNotFoundException:
        try:
            _create_table(ddb, spec)
            outcome = "created"
        except ddb.exceptions.ResourceInUseException:
            outcome = "exists"  # another init won the race
    table = _ensure_indexes(ddb, spec, _wait_active(ddb, spec.name))
    if spec.stream and not table.get("StreamSpecification", {}).get("StreamEnabled"):
        ddb.update_table(
            TableName=spec.name,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        _wait_active(ddb, spec.name)
    if spec.ttl:
        ttl = ddb.describe_time_to_live(TableName=spec.name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(
                TableName=spec.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
    return outcome


def _ensure_queues(sqs: SQSClient, names: ResourceNames) -> dict[str, str]:
    dlq_url = sqs.create_queue(
        QueueName=names.dead_letter_queue,
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes: dict[Any, str] = {
        "VisibilityTimeout": str(QUEUE_VISIBILITY_TIMEOUT_S),
        "MessageRetentionPeriod": str(QUEUE_RETENTION_S),
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
    }
    try:
        queue_url = sqs.get_queue_url(QueueName=names.usage_queue)["QueueUrl"]
        # Re-applying keeps an existing queue in line with this definition (CreateQueue would refuse instead).
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    except sqs.exceptions.QueueDoesNotExist:
        queue_url = sqs.create_queue(QueueName=names.usage_queue, Attributes=attributes)["QueueUrl"]
    return {names.usage_queue: queue_url, names.dead_letter_queue: dlq_url}


def ensure_resources(settings: AwsSettings, report: Callable[[str], None] = print) -> None:
    """Create whatever is missing; safe to run any number of times."""
    ddb = settings.dynamodb()
    for spec in table_specs(settings.names):
        outcome = _ensure_table(ddb, spec)
        report(f"table {spec.name}: {outcome}")
    ensure_queues(settings, report)


def ensure_queues(settings: AwsSettings, report: Callable[[str], None] = print) -> None:
    """The queues alone: what an emulator restart loses while the tables it keeps on disk are still there."""
    for name, url in _ensure_queues(settings.sqs(), settings.names).items():
        report(f"queue {name}: {url}")


def existing_tables(settings: AwsSettings) -> set[str]:
    """Every table at these endpoints, whatever its prefix (a shared LocalStack can hold more than a page of them)."""
    pages = settings.dynamodb().get_paginator("list_tables").paginate()
    return {name for page in pages for name in page.get("TableNames", [])}


def tables_exist(settings: AwsSettings) -> bool:
    """Whether `init` has run against these endpoints (every table of the prefix is there)."""
    present = existing_tables(settings)
    return all(spec.name in present for spec in table_specs(settings.names))


def scan_items(ddb: DynamoDBClient, table: str, projection: str | None = None) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {"TableName": table}
    if projection:
        kwargs["ProjectionExpression"] = projection
    while True:
        page = ddb.scan(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def delete_all_items(ddb: DynamoDBClient, table: str, has_sort_key: bool) -> int:
    projection = "pk, sk" if has_sort_key else "pk"
    batch: list[Any] = []
    deleted = 0

    def flush() -> None:
        request: dict[str, Any] = {table: batch.copy()}
        while request:
            unprocessed = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems", {})
            request = dict(unprocessed)
            if request:
                time.sleep(0.05)
        batch.clear()

    for item in scan_items(ddb, table, projection):
        batch.append({"DeleteRequest": {"Key": item}})
        deleted += 1
        if len(batch) == 25:
            flush()
    if batch:
        flush()
    return deleted


def clear_all(settings: AwsSettings, report: Callable[[str], None] = print) -> None:
    """Every table's items and every queued message; the tables and queues stay (`costkeeper clear`).

    Stream checkpoints stay too: they are the aggregator's position in the usage stream, not data, and without them
    an aggregator would apply the stream's last 24 hours again.
    """
    ddb = settings.dynamodb()
    names = settings.names
    for spec in table_specs(names):
        if spec.name != names.checkpoints_table:
            report(f"cleared {delete_all_items(ddb, spec.name, spec.has_sort_key)} items from {spec.name}")
    sqs = settings.sqs()
    for queue in (names.usage_queue, names.dead_letter_queue):
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        try:
            sqs.purge_queue(QueueUrl=url)
            report(f"purged queue {queue}")
        except sqs.exceptions.PurgeQueueInProgress:
            # AWS (and LocalStack) allow one purge a minute; the one under way empties the queue all the same.
            report(f"queue {queue}: a purge is already in progress")


def delete_resources(settings: AwsSettings, report: Callable[[str], None] = print) -> None:
    """Delete every table and queue whose name starts with the prefix (side prefixes built on it included)."""
    ddb = settings.dynamodb()
    prefix = settings.names.prefix
    for table in sorted(existing_tables(settings)):
        if table.startswith(prefix):
            ddb.delete_table(TableName=table)
            report(f"deleted table {table}")
    sqs = settings.sqs()
    for queues in sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix):
        for url in queues.get("QueueUrls", []):
            sqs.delete_queue(QueueUrl=url)
            report(f"deleted queue {url}")


def clear_usage(settings: AwsSettings, report: Callable[[str], None] = print) -> None:
    """Delete usage items and aggregates; configuration, credentials and stream checkpoints stay.

    The aggregator ignores REMOVE records, so deleting usage items does not take anything off the aggregates.
    """
    ddb = settings.dynamodb()
    names = settings.names
    for spec in table_specs(names):
        if spec.name in (names.usage_table, names.aggregates_table):
            report(f"cleared {delete_all_items(ddb, spec.name, spec.has_sort_key)} items from {spec.name}")
