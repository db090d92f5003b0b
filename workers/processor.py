"""Pricing the events of one message and writing one usage item per request_id.

The write is an insert conditional on the key being absent (insert.py: 25 per request): a redelivered message, a
retried batch or a client that posts the same request_id twice all end with exactly one item, and so with one count
in the aggregates.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from aggregator.usage_record import UsageRecord
from catalog.store import CatalogStore
from workers.insert import MAX_STATEMENTS_PER_BATCH, BatchInserter
from workers.message import UsageEvent, UsageMessage
from workers.pricing import Rejected, price_event
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


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
        self._inserter = BatchInserter(ddb, settings.aws.names.usage_table)
        self._slots = asyncio.Semaphore(settings.write_concurrency)
        # When a write last succeeded and last failed (monotonic seconds): whether an outage is over.
        self._last_ok_at: float | None = None
        self._last_failed_at: float | None = None

    def writes_healthy(self) -> bool:
        """A write has succeeded since the last one that failed."""
        if self._last_ok_at is None:
            return False
        return self._last_failed_at is None or self._last_ok_at > self._last_failed_at

    @property
    def write_requests(self) -> int:
        """DynamoDB requests made to write usage items so far."""
        return self._inserter.requests

    async def price(self, event: UsageEvent) -> UsageRecord | Rejected:
        org = await self._catalog.get_org(event.org_id)
        if org is None:
            return Rejected(event, "UNKNOWN_ORG")
        # Only a label that is not the org's can be one of the app's inference profiles: read the app for those alone.
        app = None
        if event.model_label not in org.settings.models:
            app = await self._catalog.get_app(event.org_id, event.app_id)
        # Stamped again when the item is written (_write); this one only keeps the record complete meanwhile.
        return price_event(org, app, event, int(time.time() * 1000))

    async def process(self, message: UsageMessage) -> MessageOutcome:
        """Raises on any error worth retrying; the whole message is then redelivered, which is safe."""
        outcome = MessageOutcome()
        priced = [await self.price(event) for event in message.events]
        outcome.rejected = [p for p in priced if isinstance(p, Rejected)]
        # A message may carry one request twice (a client's retry grouped with its original): the first wins, as it
        # would against an item already in the table. Keys are per app, so other tenants' ids never collide.
        first: dict[tuple[str, str, str], UsageRecord] = {}
        for record in (p for p in priced if isinstance(p, UsageRecord)):
            first.setdefault((record.org_id, record.app_id, record.request_id), record)
        records = list(first.values())
        batches = [records[i : i + MAX_STATEMENTS_PER_BATCH] for i in range(0, len(records), MAX_STATEMENTS_PER_BATCH)]
        # Let every batch finish before reporting a failure, so a retry starts from a settled state.
        results = await asyncio.gather(*(self._write(batch) for batch in batches), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        outcome.written = sum(sum(inserted) for inserted in results if not isinstance(inserted, BaseException))
        outcome.duplicates = len(priced) - len(outcome.rejected) - outcome.written
        return outcome

    async def _write(self, records: list[UsageRecord]) -> list[bool]:
        async with self._slots:
            # Stamped when the request goes out, not when the message was priced: batches of a big message wait
            # their turn here, and written_at_ms is what the aggregator measures its own lag from.
            now_s = time.time()
            expires_at = int(now_s) + self._settings.usage_retention_days * 86400
            items = [replace(r, written_at_ms=int(now_s * 1000)).to_item(expires_at) for r in records]
            try:
                inserted = await self._inserter.insert(items)
            except Exception:
                self._last_failed_at = time.monotonic()
                raise
            self._last_ok_at = time.monotonic()
            return inserted
