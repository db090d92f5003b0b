"""The SQS consumer: long polling, batches of 10, per-message outcomes, dead letters, graceful shutdown.

Per message: written (or duplicate) -> deleted; poison or partly unpriceable -> the bad part forwarded to the
dead-letter queue, then deleted; any other error -> left on the queue with an exponential visibility back-off, until
the queue's redrive policy (maxReceiveCount) moves it to the dead-letter queue. Nothing is deleted before it is
either written or forwarded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.message import PoisonMessage, decode, encode
from workers.processor import UsageWriter
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger("worker")


@dataclass
class WorkerStats:
    receives: int = 0
    messages: int = 0
    events_written: int = 0
    duplicates: int = 0
    rejected_events: int = 0
    poison_messages: int = 0
    retried_messages: int = 0
    sqs_requests: int = 0


class Worker:
    def __init__(
        self, settings: WorkerSettings, sqs: SQSClient, writer: UsageWriter, queue_url: str, dlq_url: str
    ) -> None:
        self._settings = settings
        self._sqs = sqs
        self._writer = writer
        self._queue_url = queue_url
        self._dlq_url = dlq_url
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self._poll_loop(i) for i in range(self._settings.pollers)))

    async def _receive(self) -> list[dict[str, Any]] | None:
        """One long poll; None if shutdown began while waiting (the poll is abandoned, nothing is lost)."""
        receive = asyncio.create_task(
            self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self._settings.wait_time_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        )
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([receive, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not receive.done():
            # Messages this poll may already have taken stay invisible for the visibility timeout, then return.
            receive.cancel()
            return None
        self.stats.receives += 1
        self.stats.sqs_requests += 1
        return [dict(m) for m in receive.result().get("Messages", [])]

    async def _poll_loop(self, index: int) -> None:
        while not self.stopping.is_set():
            try:
                messages = await self._receive()
                if messages is None:
                    return
                if messages:
                    # Once received, a batch is always finished, even when shutdown begins meanwhile.
                    await asyncio.shield(self._handle_batch(messages))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("poller %d: receive failed; backing off", index)
                await asyncio.sleep(1.0)

    async def _handle_batch(self, messages: list[dict[str, Any]]) -> None:
        self.stats.messages += len(messages)
        done = await asyncio.gather(*(self._handle(m) for m in messages))
        to_delete = [m for m, ok in zip(messages, done, strict=True) if ok]
        to_retry = [m for m, ok in zip(messages, done, strict=True) if not ok]
        if to_delete:
            await self._delete(to_delete)
        if to_retry:
            self.stats.retried_messages += len(to_retry)
            await self._back_off(to_retry)

    async def _handle(self, message: dict[str, Any]) -> bool:
        """True when the message is settled and may be deleted."""
        try:
            usage = decode(message["Body"])
        except PoisonMessage as exc:
            self.stats.poison_messages += 1
            log.warning("poison message %s: %s", message["MessageId"], str(exc)[:200])
            return await self._dead_letter(message["Body"], "POISON_MESSAGE", str(exc), message["MessageId"])
        try:
            outcome = await self._writer.process(usage)
        except Exception:
            log.exception("message %s failed; it will be retried", message["MessageId"])
            return False
        self.stats.events_written += outcome.written
        self.stats.duplicates += outcome.duplicates
        if outcome.rejected:
            self.stats.rejected_events += len(outcome.rejected)
            reasons = sorted({r.reason for r in outcome.rejected})
            body = encode([r.event for r in outcome.rejected])
            return await self._dead_letter(body, ",".join(reasons), "events could not be priced", message["MessageId"])
        return True

    async def _dead_letter(self, body: str, code: str, detail: str, source_id: str) -> bool:
        try:
            await self._sqs.send_message(
                QueueUrl=self._dlq_url,
                MessageBody=body,
                MessageAttributes={
                    "error_code": {"DataType": "String", "StringValue": code},
                    "error_detail": {"DataType": "String", "StringValue": detail[:1000] or code},
                    "source_message_id": {"DataType": "String", "StringValue": source_id},
                },
            )
        except Exception:
            log.exception("could not forward message %s to the dead-letter queue; it will be retried", source_id)
            return False
        self.stats.sqs_requests += 1
        return True

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        response = await self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        self.stats.sqs_requests += 1
        for failure in response.get("Failed", []):
            # The message comes back after its visibility timeout and is written again as a duplicate: harmless.
            log.warning("delete failed for entry %s: %s", failure.get("Id"), failure.get("Message"))

    async def _back_off(self, messages: list[dict[str, Any]]) -> None:
        entries: list[Any] = []
        for i, m in enumerate(messages):
            receives = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            delay = min(self._settings.retry_base_s * 2 ** (receives - 1), self._settings.retry_max_s)
            entries.append({"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": delay})
        try:
            await self._sqs.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
            self.stats.sqs_requests += 1
        except Exception:
            # The queue's own visibility timeout applies instead.
            log.exception("could not set retry back-off")


def describe_stats(stats: WorkerStats) -> str:
    return json.dumps(stats.__dict__)
