"""The SQS consumer: long polling, batches of 10, per-message outcomes, dead letters, graceful shutdown.

Per message (settle.py decides): written (or duplicate) -> deleted; poison or partly unpriceable -> the bad part
forwarded to the dead-letter queue, then deleted; any other error -> left on the queue with an exponential visibility
back-off, until the queue's redrive policy (maxReceiveCount) moves it to the dead-letter queue. Nothing is deleted
before it is either written or forwarded. While a batch is being written its messages are kept invisible (a
heartbeat extends their visibility timeout), so a slow batch is not delivered a second time meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime.resources import QUEUE_VISIBILITY_TIMEOUT_S
from workers.backoff import retry_delay_s
from workers.processor import UsageWriter
from workers.settings import WorkerSettings
from workers.settle import MessageSettler

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
    # Messages settled and deleted: once the worker has stopped, every message it received but did not delete (or
    # retry) is one it left half done.
    messages_deleted: int = 0
    # Every SQS request this process made; the counters below break the non-receive ones down.
    sqs_requests: int = 0
    delete_batches: int = 0
    visibility_changes: int = 0
    visibility_extensions: int = 0
    dead_letter_sends: int = 0


class Worker:
    def __init__(
        self, settings: WorkerSettings, sqs: SQSClient, writer: UsageWriter, queue_url: str, dlq_url: str
    ) -> None:
        self._settings = settings
        self._sqs = sqs
        self._settler = MessageSettler(sqs, writer, dlq_url)
        self._queue_url = queue_url
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()
        self._visibility_timeout_s = QUEUE_VISIBILITY_TIMEOUT_S

    async def _queue_visibility_timeout(self) -> int:
        """The queue's own timeout (operators and tests change it); the deployed default if it cannot be read."""
        try:
            response = await self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["VisibilityTimeout"]
            )
            self.stats.sqs_requests += 1
            return int(response["Attributes"]["VisibilityTimeout"])
        except Exception:
            log.warning("could not read the queue's visibility timeout; assuming %ds", QUEUE_VISIBILITY_TIMEOUT_S)
            return QUEUE_VISIBILITY_TIMEOUT_S

    async def run(self) -> None:
        self._visibility_timeout_s = await self._queue_visibility_timeout()
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
        heartbeat = asyncio.create_task(self._keep_invisible(messages))
        try:
            done = await asyncio.gather(*(self._handle(m) for m in messages))
        finally:
            heartbeat.cancel()
        to_delete = [m for m, ok in zip(messages, done, strict=True) if ok]
        to_retry = [m for m, ok in zip(messages, done, strict=True) if not ok]
        if to_delete:
            await self._delete(to_delete)
        if to_retry:
            self.stats.retried_messages += len(to_retry)
            await self._back_off(to_retry)

    async def _handle(self, message: dict[str, Any]) -> bool:
        """True when the message is settled and may be deleted."""
        result = await self._settler.settle(message["MessageId"], message["Body"])
        self.stats.events_written += result.written
        self.stats.duplicates += result.duplicates
        self.stats.rejected_events += result.rejected_events
        self.stats.poison_messages += int(result.poison)
        self.stats.sqs_requests += result.dead_letter_sends
        self.stats.dead_letter_sends += result.dead_letter_sends
        return result.settled

    async def _keep_invisible(self, messages: list[dict[str, Any]]) -> None:
        """Every half timeout, extend the batch's visibility by a whole one, until cancelled.

        Without this, a batch that takes longer than the timeout to write (thousands of events on a slow table)
        reappears on the queue and is written a second time by another poller: harmless, but all wasted work.
        """
        timeout_s = self._visibility_timeout_s
        entries: list[Any] = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": timeout_s}
            for i, m in enumerate(messages)
        ]
        while True:
            await asyncio.sleep(max(timeout_s / 2, 1.0))
            try:
                await self._sqs.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
                self.stats.sqs_requests += 1
                self.stats.visibility_extensions += 1
            except Exception:
                log.exception("could not extend the visibility of a batch still being written")

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        response = await self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        self.stats.sqs_requests += 1
        self.stats.delete_batches += 1
        self.stats.messages_deleted += len(response.get("Successful", []))
        for failure in response.get("Failed", []):
            # The message comes back after its visibility timeout and is written again as a duplicate: harmless.
            log.warning("delete failed for entry %s: %s", failure.get("Id"), failure.get("Message"))

    async def _back_off(self, messages: list[dict[str, Any]]) -> None:
        entries: list[Any] = []
        for i, m in enumerate(messages):
            receives = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            delay = retry_delay_s(receives, self._settings.retry_base_s, self._settings.retry_max_s)
            entries.append({"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": delay})
        try:
            await self._sqs.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
            self.stats.sqs_requests += 1
            self.stats.visibility_changes += 1
        except Exception:
            # The queue's own visibility timeout applies instead.
            log.exception("could not set retry back-off")


def describe_stats(stats: WorkerStats) -> str:
    return json.dumps(stats.__dict__)
