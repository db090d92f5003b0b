"""Moving dead letters back to the usage queue by themselves, once what sent them there has cleared.

Accepted usage in the dead-letter queue is money not yet counted. The long-running worker sweeps it every
CK_WORKER_REDRIVE_INTERVAL_S and sends back (send first, then delete: nothing lost on a crash; a duplicate is
written once) each message whose cause is gone:

- no `error_code`: the queue's redrive policy moved it after maxReceiveCount failed deliveries (an outage outlasting
  the back-off). Sent back once this worker's writes succeed again (a write succeeded since the last failed one).
- UNKNOWN_ORG, UNKNOWN_MODEL_LABEL and the other pricing refusals: sent back once every event of it prices with the
  catalog as it is now (the org or label was restored, the tier priced).
- POISON_MESSAGE: never; no retry makes it valid. It stays for an operator (and the dead-letter alarm).

A message is sent back at most MAX_AUTO_REDRIVES times (counted in its `redrives` attribute, which the queue's
redrive policy keeps); after that it stays put for an operator. Under Lambda nothing sweeps: the dead-letter queue
alarm (infra/deploy/template.yaml) calls an operator, who runs `costkeeper redrive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aggregator.usage_record import UsageRecord
from workers.message import PoisonMessage, decode

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

    from workers.processor import UsageWriter

log = logging.getLogger("worker")

MAX_AUTO_REDRIVES = 3
REDRIVES_ATTRIBUTE = "redrives"
# Messages looked at per sweep: a large dead-letter queue is worked through over several sweeps.
MAX_PER_SWEEP = 100


@dataclass
class RedriveStats:
    sweeps: int = 0
    redriven: int = 0
    left_poison: int = 0
    left_unpriceable: int = 0
    left_unhealthy: int = 0
    left_exhausted: int = 0


class DeadLetterRedriver:
    def __init__(
        self,
        sqs: SQSClient,
        writer: UsageWriter,
        queue_url: str,
        dlq_url: str,
        interval_s: float,
        writes_healthy: Callable[[], bool],
    ) -> None:
        self._sqs = sqs
        self._writer = writer
        self._queue_url = queue_url
        self._dlq_url = dlq_url
        self._interval_s = interval_s
        self._writes_healthy = writes_healthy
        self.stats = RedriveStats()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self._interval_s)
            if stopping.is_set():
                return
            try:
                await self.sweep()
            except Exception:
                log.exception("dead-letter sweep failed; trying again next time")

    async def sweep(self) -> None:
        self.stats.sweeps += 1
        seen = 0
        while seen < MAX_PER_SWEEP:
            page = await self._sqs.receive_message(
                QueueUrl=self._dlq_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                # What is left stays out of the next receives of this sweep (and returns for the next sweep).
                VisibilityTimeout=max(int(self._interval_s), 1),
                MessageAttributeNames=["All"],
            )
            messages = page.get("Messages", [])
            if not messages:
                return
            seen += len(messages)
            for message in messages:
                if await self._redrivable(message):
                    await self._send_back(message)

    async def _redrivable(self, message: Any) -> bool:
        attributes = message.get("MessageAttributes", {})
        code = attributes.get("error_code", {}).get("StringValue")
        redrives = int(attributes.get(REDRIVES_ATTRIBUTE, {}).get("StringValue", "0"))
        if code == "POISON_MESSAGE":
            self.stats.left_poison += 1
            return False
        if redrives >= MAX_AUTO_REDRIVES:
            self.stats.left_exhausted += 1
            return False
        if code is None:
            if not self._writes_healthy():
                self.stats.left_unhealthy += 1
                return False
            return True
        try:
            usage = decode(message["Body"])
        except PoisonMessage:
            self.stats.left_poison += 1
            return False
        priced = [await self._writer.price(event) for event in usage.events]
        if all(isinstance(p, UsageRecord) for p in priced):
            return True
        self.stats.left_unpriceable += 1
        return False

    async def _send_back(self, message: Any) -> None:
        attributes = message.get("MessageAttributes", {})
        redrives = int(attributes.get(REDRIVES_ATTRIBUTE, {}).get("StringValue", "0")) + 1
        await self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=message["Body"],
            MessageAttributes={REDRIVES_ATTRIBUTE: {"DataType": "Number", "StringValue": str(redrives)}},
        )
        await self._sqs.delete_message(QueueUrl=self._dlq_url, ReceiptHandle=message["ReceiptHandle"])
        self.stats.redriven += 1
        code = attributes.get("error_code", {}).get("StringValue", "retries exhausted")
        log.info("dead letter %s (%s) sent back to the usage queue (redrive %d)", message["MessageId"], code, redrives)
