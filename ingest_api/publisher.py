"""Enqueueing usage with group commit.

A request's events join a shared pending list and the request waits until SQS has acknowledged the message holding
them, so a 202 always means durably queued. Sends go out as soon as a send slot is free; while all slots are busy,
the requests that arrive meanwhile gather into the next SendMessageBatch. Under load this packs hundreds of events
into each SQS request without adding latency when traffic is light.

What waits is bounded in events and bytes: when SQS stalls, requests past the bound are refused at once
(QueueBacklogFull, nothing queued) instead of each holding its events and a connection for the whole timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from ingest_api.packing import MAX_ENTRIES_PER_BATCH, pack
from workers.message import MAX_EVENTS_PER_MESSAGE, MAX_MESSAGE_BYTES, UsageEvent, encode, encoded_size

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger("ingest_api.publisher")


# The most requests one batch can take (each carries at least one event): how far ahead a batch looks.
_LOOKAHEAD = MAX_ENTRIES_PER_BATCH * MAX_EVENTS_PER_MESSAGE


class QueueUnavailable(RuntimeError):
    pass


class QueueBacklogFull(QueueUnavailable):
    """As many events wait for the queue as the publisher holds: refused without waiting, nothing of it queued."""


# Identity, not value, equality: two requests may carry equal events, and a timed-out one must withdraw only itself.
@dataclass(eq=False)
class _Pending:
    events: list[UsageEvent]
    size: int
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # Taken into a send; or gave up waiting before one took it (skipped and dropped when a batch reaches it).
    taken: bool = False
    withdrawn: bool = False


@dataclass
class PublisherStats:
    sqs_requests: int = 0
    messages: int = 0
    events: int = 0
    failures: int = 0
    timeouts: int = 0
    backlog_full: int = 0


class UsagePublisher:
    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        max_inflight: int,
        timeout_s: float = 5.0,
        max_pending_events: int = 20_000,
        max_pending_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_inflight)
        self._max_pending_events = max_pending_events
        self._max_pending_bytes = max_pending_bytes
        self._pending: deque[_Pending] = deque()
        # What the live (not withdrawn) pending requests hold, and how many withdrawn ones the deque still carries.
        self._pending_events = 0
        self._pending_bytes = 0
        self._withdrawn = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._sends: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.stats = PublisherStats()

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="usage-publisher")

    async def close(self) -> None:
        """Send everything still pending, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._runner is not None:
            await self._runner
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)

    async def publish(self, events: list[UsageEvent]) -> None:
        """Returns once every event is on the queue; raises QueueUnavailable otherwise, at the latest after timeout_s.

        The bound matters in an outage: the SDK's own retries with back-off take up to ~15 s per SendMessageBatch,
        and a client should hear 503 and retry rather than hang. A send already in flight is not recalled, so the
        events may still arrive; the client's retry with the same request_ids is then a duplicate the worker skips.
        """
        if self._closing:
            raise QueueUnavailable("the API is shutting down")
        pending = _Pending(events, sum(encoded_size(e) for e in events))
        if pending.size > MAX_MESSAGE_BYTES or len(events) > MAX_EVENTS_PER_MESSAGE:
            raise ValueError("a request's events must fit one queue message")
        if (
            self._pending_events + len(events) > self._max_pending_events
            or self._pending_bytes + pending.size > self._max_pending_bytes
        ):
            self.stats.backlog_full += 1
            raise QueueBacklogFull(
                f"{self._pending_events} events ({self._pending_bytes} bytes) already wait for the queue"
            )
        self._pending.append(pending)
        self._pending_events += len(events)
        self._pending_bytes += pending.size
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), self._timeout_s)
        except TimeoutError as exc:
            self.stats.timeouts += 1
            # Not yet taken into a send, so it never will be: the queue does not fill up behind an outage.
            self._withdraw(pending)
            raise QueueUnavailable(f"the queue did not acknowledge within {self._timeout_s}s") from exc

    def _withdraw(self, pending: _Pending) -> None:
        if pending.taken or pending.withdrawn:
            return
        pending.withdrawn = True
        self._pending_events -= len(pending.events)
        self._pending_bytes -= pending.size
        self._withdrawn += 1
        if self._withdrawn > len(self._pending) // 2:
            # Compact now and then, so withdrawn requests never outnumber live ones: O(1) per withdrawal, amortised.
            self._pending = deque(p for p in self._pending if not p.withdrawn)
            self._withdrawn = 0

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending_events:
                await self._slots.acquire()
                batch = self._take_batch()
                if not batch:
                    # Whatever was waiting for this slot timed out meanwhile: there is nothing to send.
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._send(batch))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            if self._closing and not self._pending_events:
                return

    def _take_batch(self) -> list[list[_Pending]]:
        live = list(islice((p for p in self._pending if not p.withdrawn), _LOOKAHEAD))
        messages = pack(live)
        taken = sum(len(m) for m in messages)
        # The taken requests are the first `taken` live ones: pop up to them, dropping withdrawn ones on the way.
        while taken:
            head = self._pending.popleft()
            if head.withdrawn:
                self._withdrawn -= 1
                continue
            head.taken = True
            self._pending_events -= len(head.events)
            self._pending_bytes -= head.size
            taken -= 1
        while self._pending and self._pending[0].withdrawn:
            self._pending.popleft()
            self._withdrawn -= 1
        return messages

    @property
    def pending_events(self) -> int:
        return self._pending_events

    async def _send(self, messages: list[list[_Pending]]) -> None:
        try:
            entries: list[Any] = [
                {"Id": str(i), "MessageBody": encode([e for p in group for e in p.events])}
                for i, group in enumerate(messages)
            ]
            try:
                response = await self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except Exception as exc:
                self.stats.failures += 1
                log.exception("SendMessageBatch failed")
                self._fail([p for group in messages for p in group], exc)
                return
            self.stats.sqs_requests += 1
            failed = {f["Id"]: f for f in response.get("Failed", [])}
            for i, group in enumerate(messages):
                if str(i) in failed:
                    self.stats.failures += 1
                    self._fail(group, QueueUnavailable(failed[str(i)].get("Message", "send failed")))
                    continue
                self.stats.messages += 1
                for pending in group:
                    self.stats.events += len(pending.events)
                    if not pending.done.done():
                        pending.done.set_result(None)
        finally:
            self._slots.release()

    @staticmethod
    def _fail(group: list[_Pending], exc: BaseException) -> None:
        for pending in group:
            if not pending.done.done():
                pending.done.set_exception(QueueUnavailable(str(exc)))
        # Nobody may be awaiting a future whose request was cancelled; mark its exception as seen.
        for pending in group:
            with contextlib.suppress(BaseException):
                pending.done.exception()
