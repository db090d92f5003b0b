"""Pricing the events of one message and writing one usage item per request_id.

The write is a PutItem conditional on the key being absent: a redelivered message, a retried batch or a client that
posts the same request_id twice all end with exactly one item, and so with one count in the aggregates.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aggregator.usage_record import UsageRecord
from catalog.store import CatalogStore
from workers.message import UsageEvent, UsageMessage
from workers.pricing import cost_usd_micros
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class Rejected:
    """An event no retry can price: its org or model label is gone. It goes to the dead-letter queue."""

    event: UsageEvent
    reason: str


@dataclass
class MessageOutcome:
    written: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class UsageWriter:
    def __init__(self, settings: WorkerSettings, ddb: DynamoDBClient, catalog: CatalogStore) -> None:
        self._settings = settings
        self._ddb = ddb
        self._catalog = catalog
        self._table = settings.aws.names.usage_table
        self._slots = asyncio.Semaphore(settings.write_concurrency)

    async def price(self, event: UsageEvent) -> UsageRecord | Rejected:
        org = await self._catalog.get_org(event.org_id)
        if org is None:
            return Rejected(event, "UNKNOWN_ORG")
        spec = org.settings.models.get(event.model_label)
        if spec is None:
            return Rejected(event, "UNKNOWN_MODEL_LABEL")
        cost = cost_usd_micros(
            spec.prices,
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cache_read_tokens=event.cache_read_tokens,
            cache_write_tokens=event.cache_write_tokens,
        )
        return UsageRecord(
            org_id=event.org_id,
            app_id=event.app_id,
            request_id=event.request_id,
            model_label=event.model_label,
            bedrock_model_id=spec.bedrock_model_id,
            timestamp=event.timestamp,
            org_timezone=org.settings.timezone,
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cache_read_tokens=event.cache_read_tokens,
            cache_write_tokens=event.cache_write_tokens,
            cost_usd_micros=cost,
            price_version=org.price_version,
            accepted_at_ms=int(event.accepted_at.timestamp() * 1000),
            written_at_ms=int(time.time() * 1000),
        )

    async def write(self, record: UsageRecord) -> bool:
        """True if this call wrote the item, False if it was already there."""
        expires_at = int(time.time()) + self._settings.usage_retention_days * 86400
        async with self._slots:
            try:
                await self._ddb.put_item(
                    TableName=self._table,
                    Item=record.to_item(expires_at),
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except self._ddb.exceptions.ConditionalCheckFailedException:
                return False
        return True

    async def process(self, message: UsageMessage) -> MessageOutcome:
        """Raises on any error worth retrying; the whole message is then redelivered, which is safe."""
        outcome = MessageOutcome()
        priced = [await self.price(event) for event in message.events]
        records = [p for p in priced if isinstance(p, UsageRecord)]
        outcome.rejected = [p for p in priced if isinstance(p, Rejected)]
        # Let every write finish before reporting a failure, so a retry starts from a settled state.
        results = await asyncio.gather(*(self.write(r) for r in records), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        outcome.written = sum(1 for r in results if r is True)
        outcome.duplicates = len(results) - outcome.written
        return outcome
