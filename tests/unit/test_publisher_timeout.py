"""ingest_api/publisher.py::UsagePublisher.publish: a request waits at most timeout_s for SQS, then hears
QueueUnavailable (the API's 503), and what was never sent is withdrawn rather than sent after the client gave up.

The SQS client is a stand-in whose SendMessageBatch hangs until released, as an endpoint does in an outage while the
SDK retries; the integration test (tests/integration/test_faults.py) shows the same against a stopped moto server.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest_api.publisher import QueueBacklogFull, QueueUnavailable, UsagePublisher
from tests.unit.factories import ORG_ID
from workers.message import UsageEvent, encoded_size


def event() -> UsageEvent:
    return UsageEvent(
        org_id=ORG_ID,
        app_id="chatbot",
        request_id=str(uuid.uuid4()),
        model_label="standard",
        input_tokens=1_000,
        timestamp=datetime(2024, 6, 15, 12, 0, tzinfo=UTC),
        accepted_at=datetime(2024, 6, 15, 12, 0, 1, tzinfo=UTC),
    )


class StalledQueue:
    """SendMessageBatch that answers only once released, then acknowledges every entry."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.batches: list[list[Any]] = []

    async def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> dict[str, Any]:
        self.batches.append(Entries)
        await self.released.wait()
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_a_stalled_queue_is_answered_within_the_timeout_and_unsent_requests_are_withdrawn() -> None:
    async def run() -> None:
        sqs = StalledQueue()
        publisher = UsagePublisher(sqs, "queue-url", max_inflight=1, timeout_s=0.2)  # type: ignore[arg-type]
        publisher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.create_task(publisher.publish([event()]))
        await asyncio.sleep(0.05)  # the first request is in the one send slot; the next ones wait behind it
        waiting = [asyncio.create_task(publisher.publish([event()])) for _ in range(3)]
        outcomes = await asyncio.gather(first, *waiting, return_exceptions=True)
        elapsed_s = loop.time() - started

        assert all(isinstance(o, QueueUnavailable) for o in outcomes), outcomes
        assert elapsed_s < 1.0
        assert publisher.stats.timeouts == 4
        assert publisher.pending_events == 0  # the three never sent are gone, not queued behind the outage
        # The queue comes back: the send in flight completes (its client retries anyway), nothing else is sent.
        sqs.released.set()
        await publisher.close()
        assert [len(entries) for entries in sqs.batches] == [1]

    asyncio.run(run())


def test_a_queue_that_answers_in_time_is_waited_for() -> None:
    async def run() -> None:
        sqs = StalledQueue()
        publisher = UsagePublisher(sqs, "queue-url", max_inflight=1, timeout_s=5.0)  # type: ignore[arg-type]
        publisher.start()
        publishing = asyncio.create_task(publisher.publish([event(), event()]))
        await asyncio.sleep(0.1)
        assert not publishing.done()
        sqs.released.set()
        await publishing
        await publisher.close()
        assert publisher.stats.timeouts == 0
        assert publisher.stats.events == 2

    asyncio.run(run())


@pytest.mark.parametrize("timeout_s", [0.05, 0.3])
def test_the_wait_ends_near_the_timeout(timeout_s: float) -> None:
    async def run() -> float:
        publisher = UsagePublisher(StalledQueue(), "queue-url", max_inflight=1, timeout_s=timeout_s)  # type: ignore[arg-type]
        publisher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(QueueUnavailable, match="did not acknowledge"):
            await publisher.publish([event()])
        return loop.time() - started

    waited_s = asyncio.run(run())
    assert timeout_s <= waited_s < timeout_s + 0.5


def test_past_the_pending_bound_a_request_is_refused_without_waiting() -> None:
    async def run() -> None:
        sqs = StalledQueue()
        # A timeout no test would sit out: the refusals below return without it.
        publisher = UsagePublisher(sqs, "q", max_inflight=1, timeout_s=3600, max_pending_events=5)  # type: ignore[arg-type]
        publisher.start()
        in_flight = asyncio.create_task(publisher.publish([event()]))
        await asyncio.sleep(0.05)  # taken into the one (stalled) send: in flight, no longer pending
        waiting = [asyncio.create_task(publisher.publish([event(), event()])) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert publisher.pending_events == 4
        with pytest.raises(QueueBacklogFull):
            await publisher.publish([event(), event()])  # 4 + 2 > 5
        one_more = asyncio.create_task(publisher.publish([event()]))  # 4 + 1 fits
        await asyncio.sleep(0.05)
        assert publisher.pending_events == 5 and publisher.stats.backlog_full == 1
        sqs.released.set()
        await asyncio.gather(in_flight, *waiting, one_more)
        assert publisher.pending_events == 0
        await publisher.close()
        assert publisher.stats.events == 6

    asyncio.run(run())


def test_the_pending_bound_counts_bytes_too() -> None:
    async def run() -> None:
        size = encoded_size(event())
        publisher = UsagePublisher(StalledQueue(), "q", 1, 3600, max_pending_bytes=size * 3 // 2)  # type: ignore[arg-type]
        # Not started: nothing is taken, everything published waits.
        first = asyncio.create_task(publisher.publish([event()]))
        await asyncio.sleep(0)
        with pytest.raises(QueueBacklogFull):
            await publisher.publish([event()])
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(run())


def test_withdrawn_requests_free_their_room_and_do_not_pile_up() -> None:
    async def run() -> None:
        sqs = StalledQueue()
        publisher = UsagePublisher(sqs, "q", max_inflight=1, timeout_s=0.05, max_pending_events=10)  # type: ignore[arg-type]
        publisher.start()
        stuck = asyncio.create_task(publisher.publish([event()]))  # holds the only send slot
        await asyncio.sleep(0.01)
        # Far more requests than the bound, in waves: each wave times out and makes room for the next.
        for _ in range(20):
            wave = [asyncio.create_task(publisher.publish([event()])) for _ in range(10)]
            outcomes = await asyncio.gather(*wave, return_exceptions=True)
            assert all(isinstance(o, QueueUnavailable) and not isinstance(o, QueueBacklogFull) for o in outcomes)
            assert publisher.pending_events == 0
            assert len(publisher._pending) <= 10  # withdrawn ones are compacted away, not kept
        await asyncio.gather(stuck, return_exceptions=True)
        sqs.released.set()
        await publisher.close()
        assert [len(entries) for entries in sqs.batches] == [1]

    asyncio.run(run())
