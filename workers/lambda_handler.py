"""The worker as a Lambda function: an SQS event source mapping with ReportBatchItemFailures.

Each record of the batch is settled like the long-running consumer settles a message (settle.py): written, or its
bad part forwarded to the dead-letter queue. Only records that failed for a reason a retry can cure are reported in
batchItemFailures; the mapping deletes every other record. Before reporting one, the handler sets its visibility to
the back-off of its delivery count (backoff.py), as the consumer does, so an outage is ridden out for most of an
hour; after maxReceiveCount receives the queue's redrive policy moves it to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from catalog.store import CatalogStore
from runtime.aws import open_async_clients
from runtime.lambda_container import ContainerState
from workers.backoff import retry_delay_s
from workers.processor import UsageWriter
from workers.settings import WorkerSettings
from workers.settle import MessageSettler

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger("worker")


@dataclass(frozen=True)
class QueueTarget:
    settler: MessageSettler
    sqs: SQSClient
    queue_url: str
    settings: WorkerSettings


async def _open(stack: AsyncExitStack) -> QueueTarget:
    settings = WorkerSettings.from_env()
    clients = await stack.enter_async_context(open_async_clients(settings.aws))
    queue_url = (await clients.sqs.get_queue_url(QueueName=settings.aws.names.usage_queue))["QueueUrl"]
    dlq_url = (await clients.sqs.get_queue_url(QueueName=settings.aws.names.dead_letter_queue))["QueueUrl"]
    catalog = CatalogStore(clients.dynamodb, settings.aws.names.config_table, settings.catalog_cache_ttl_s)
    settler = MessageSettler(clients.sqs, UsageWriter(settings, clients.dynamodb, catalog), dlq_url)
    return QueueTarget(settler, clients.sqs, queue_url, settings)


container: ContainerState[QueueTarget] = ContainerState(_open)


async def _back_off(target: QueueTarget, records: list[dict[str, Any]]) -> None:
    entries: list[Any] = [
        {
            "Id": str(i),
            "ReceiptHandle": r["receiptHandle"],
            "VisibilityTimeout": retry_delay_s(
                int(r.get("attributes", {}).get("ApproximateReceiveCount", "1")),
                target.settings.retry_base_s,
                target.settings.retry_max_s,
            ),
        }
        for i, r in enumerate(records)
    ]
    try:
        for start in range(0, len(entries), 10):
            await target.sqs.change_message_visibility_batch(
                QueueUrl=target.queue_url, Entries=entries[start : start + 10]
            )
    except Exception:
        # The queue's own visibility timeout applies instead: a shorter wait, nothing lost.
        log.exception("could not set the retry back-off of %d record(s)", len(records))


async def settle_records(target: QueueTarget, records: list[dict[str, Any]]) -> dict[str, Any]:
    settler = target.settler
    settlements = await asyncio.gather(*(settler.settle(r["messageId"], r["body"]) for r in records))
    retried = [record for record, result in zip(records, settlements, strict=True) if not result.settled]
    if retried:
        await _back_off(target, retried)
    failures = [{"itemIdentifier": record["messageId"]} for record in retried]
    log.info(
        "%d records: %d events written, %d duplicates, %d rejected events, %d poison, %d to retry",
        len(records),
        sum(s.written for s in settlements),
        sum(s.duplicates for s in settlements),
        sum(s.rejected_events for s in settlements),
        sum(s.poison for s in settlements),
        len(failures),
    )
    return {"batchItemFailures": failures}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records: list[dict[str, Any]] = event.get("Records", [])

    async def work(target: QueueTarget) -> dict[str, Any]:
        return await settle_records(target, records)

    return container.run(work)
