"""Settling one queue message: written, or its bad part forwarded to the dead-letter queue, or left for a retry.

Shared by the long-running consumer (consumer.py) and the Lambda handler (lambda_handler.py). They differ only in
how a settled message leaves the queue (DeleteMessageBatch there, the event source mapping here) and how a retry is
asked for (a visibility back-off there, a batch item failure here).

Poison bodies and events no retry can price are forwarded, not retried: redelivery cannot make them valid, and
holding them back would only delay their arrival in the dead-letter queue, where an operator can redrive them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers.message import PoisonMessage, decode, encode
from workers.processor import UsageWriter

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger("worker")


@dataclass(frozen=True)
class Settlement:
    # True: written or forwarded, so the message may leave the queue. False: it must be delivered again.
    settled: bool
    written: int = 0
    duplicates: int = 0
    rejected_events: int = 0
    poison: bool = False
    # SendMessage calls made to the dead-letter queue (successful or not), for request accounting.
    dead_letter_sends: int = 0


class MessageSettler:
    def __init__(self, sqs: SQSClient, writer: UsageWriter, dlq_url: str) -> None:
        self._sqs = sqs
        self._writer = writer
        self._dlq_url = dlq_url

    async def settle(self, message_id: str, body: str) -> Settlement:
        try:
            usage = decode(body)
        except PoisonMessage as exc:
            log.warning("poison message %s: %s", message_id, str(exc)[:200])
            forwarded = await self._dead_letter(body, "POISON_MESSAGE", str(exc), message_id)
            return Settlement(settled=forwarded, poison=True, dead_letter_sends=1)
        try:
            outcome = await self._writer.process(usage)
        except Exception:
            log.exception("message %s failed; it will be retried", message_id)
            return Settlement(settled=False)
        if not outcome.rejected:
            return Settlement(settled=True, written=outcome.written, duplicates=outcome.duplicates)
        reasons = sorted({r.reason for r in outcome.rejected})
        forwarded = await self._dead_letter(
            encode([r.event for r in outcome.rejected]), ",".join(reasons), "events could not be priced", message_id
        )
        # A retry after a failed forward writes the priced events again as duplicates: harmless.
        return Settlement(
            settled=forwarded,
            written=outcome.written,
            duplicates=outcome.duplicates,
            rejected_events=len(outcome.rejected),
            dead_letter_sends=1,
        )

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
        return True
