"""The worker as a Lambda function: an SQS event source mapping with ReportBatchItemFailures.

Each record of the batch is settled like the long-running consumer settles a message (settle.py): written, or its
bad part forwarded to the dead-letter queue. Only records that failed for a reason a retry can cure are reported in
batchItemFailures; the mapping deletes every other record. A reported record becomes visible again after the queue's
visibility timeout, and after maxReceiveCount receives the queue's redrive policy moves it to the dead-letter queue,
exactly as for the consumer.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from catalog.store import CatalogStore
from runtime.aws import open_async_clients
from runtime.lambda_container import ContainerState
from workers.processor import UsageWriter
from workers.settings import WorkerSettings
from workers.settle import MessageSettler

log = logging.getLogger("worker")


async def _open(stack: AsyncExitStack) -> MessageSettler:
    settings = WorkerSettings.from_env()
    clients = await stack.enter_async_context(open_async_clients(settings.aws))
    dlq_url = (await clients.sqs.get_queue_url(QueueName=settings.aws.names.dead_letter_queue))["QueueUrl"]
    catalog = CatalogStore(clients.dynamodb, settings.aws.names.config_table, settings.catalog_cache_ttl_s)
    return MessageSettler(clients.sqs, UsageWriter(settings, clients.dynamodb, catalog), dlq_url)


container: ContainerState[MessageSettler] = ContainerState(_open)


async def settle_records(settler: MessageSettler, records: list[dict[str, Any]]) -> dict[str, Any]:
    settlements = await asyncio.gather(*(settler.settle(r["messageId"], r["body"]) for r in records))
    failures = [
        {"itemIdentifier": record["messageId"]}
        for record, result in zip(records, settlements, strict=True)
        if not result.settled
    ]
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

    async def work(settler: MessageSettler) -> dict[str, Any]:
        return await settle_records(settler, records)

    return container.run(work)
