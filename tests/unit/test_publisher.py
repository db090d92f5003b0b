"""ingest_api/packing.py: packing pending requests into one SendMessageBatch, as the publisher takes them.

`Queue` stands in for the publisher's pending list and takes batch after batch the way UsagePublisher does. Nothing is
sent; sending is covered by the integration tests. The last tests drive UsagePublisher itself, built with sqs=None.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_api.packing import MAX_BATCH_BYTES, MAX_ENTRIES_PER_BATCH, PackingLimits, pack
from ingest_api.publisher import QueueUnavailable, UsagePublisher
from tests.unit.factories import ORG_ID
from workers.message import MAX_EVENTS_PER_MESSAGE, MAX_MESSAGE_BYTES, UsageEvent, encode, encoded_size

T = TypeVar("T")
SQS_MAX_BODY_BYTES = 256 * 1024
KIB = 1024

EVENT = UsageEvent(
    org_id=ORG_ID,
    app_id="chatbot",
    request_id=str(uuid.uuid4()),
    model_label="standard",
    input_tokens=1_000,
    timestamp=datetime(2024, 6, 15, 12, 0, tzinfo=UTC),
    accepted_at=datetime(2024, 6, 15, 12, 0, 1, tzinfo=UTC),
)


def in_loop(body: Callable[[], T]) -> T:
    async def run() -> T:
        return body()

    return asyncio.run(run())


def publisher() -> UsagePublisher:
    return UsagePublisher(sqs=None, queue_url="unused", max_inflight=1)  # type: ignore[arg-type]


# Identity, not value, equality, as the publisher's own pending requests: equal requests are still two requests.
@dataclass(eq=False)
class Request:
    events: list[UsageEvent]
    size: int


class Queue:
    """Pending requests, taken batch by batch as UsagePublisher takes them."""

    def __init__(self, batch_limit: int = MAX_BATCH_BYTES) -> None:
        self.pending: list[Request] = []
        self.limits = PackingLimits(max_batch_bytes=batch_limit)

    def take_batch(self) -> list[list[Request]]:
        batch = pack(self.pending, self.limits)
        del self.pending[: sum(len(m) for m in batch)]
        return batch


def pending(n_events: int, size: int | None = None) -> Request:
    """A request of n events; size defaults to the real estimate, or is set to exercise the byte limits.

    Real events are ~250 bytes and at most 500 go in a message, so with real sizes the byte limits never bind; the
    packer trusts `size`, which is what the byte-limit tests set.
    """
    events = [EVENT] * n_events
    return Request(events, sum(encoded_size(e) for e in events) if size is None else size)


def drain(pub: Queue) -> list[list[list[Request]]]:
    batches = []
    while pub.pending:
        batch = pub.take_batch()
        assert batch, "a call with work pending must make progress"
        batches.append(batch)
    return batches


def check_limits(batch: list[list[Request]], batch_limit: int = MAX_BATCH_BYTES) -> None:
    assert 1 <= len(batch) <= MAX_ENTRIES_PER_BATCH
    assert sum(p.size for message in batch for p in message) <= batch_limit
    for message in batch:
        assert message
        assert sum(p.size for p in message) <= MAX_MESSAGE_BYTES
        assert sum(len(p.events) for p in message) <= MAX_EVENTS_PER_MESSAGE


def test_one_small_request_is_one_message() -> None:
    def body() -> None:
        pub = Queue()
        p = pending(3)
        pub.pending.append(p)
        assert pub.take_batch() == [[p]]
        assert pub.pending == []
        assert pub.take_batch() == []

    in_loop(body)


def test_small_requests_share_one_message_in_arrival_order() -> None:
    def body() -> None:
        pub = Queue()
        ps = [pending(1) for _ in range(100)]
        pub.pending.extend(ps)
        batch = pub.take_batch()
        assert batch == [ps]
        # The packed message is a real, valid SQS body.
        assert len(encode([e for p in batch[0] for e in p.events]).encode()) <= SQS_MAX_BODY_BYTES

    in_loop(body)


def test_events_per_message_limit() -> None:
    def body() -> None:
        pub = Queue()
        ps = [pending(200, size=KIB) for _ in range(5)]
        pub.pending.extend(ps)
        # 200 + 200 fit in 500; a third 200 would not.
        assert pub.take_batch() == [ps[0:2], ps[2:4], ps[4:5]]

    in_loop(body)


def test_a_request_of_exactly_max_events_fills_a_message() -> None:
    def body() -> None:
        pub = Queue()
        ps = [pending(n, size=KIB) for n in (1, MAX_EVENTS_PER_MESSAGE, MAX_EVENTS_PER_MESSAGE - 1, 1)]
        pub.pending.extend(ps)
        assert pub.take_batch() == [[ps[0]], [ps[1]], [ps[2], ps[3]]]

    in_loop(body)


def test_full_messages_of_real_events_go_one_per_batch() -> None:
    def body() -> None:
        pub = Queue()
        # 500 real events estimate at ~150 KB: two would exceed the batch byte limit, so each batch carries one.
        ps = [pending(MAX_EVENTS_PER_MESSAGE) for _ in range(3)]
        assert MAX_BATCH_BYTES < 2 * ps[0].size <= 2 * MAX_MESSAGE_BYTES
        pub.pending.extend(ps)
        assert drain(pub) == [[[p]] for p in ps]

    in_loop(body)


def test_message_bytes_limit() -> None:
    # With the batch limit equal to the message limit the batch limit always binds first; raise it (SQS now takes
    # 1 MiB batches) to see the per-message byte limit split messages on its own.
    def body() -> None:
        pub = Queue(1024 * KIB)
        ps = [pending(1, 130 * KIB), pending(1, 100 * KIB), pending(1, 20 * KIB), pending(1, 200 * KIB)]
        pub.pending.extend(ps)
        # 130 + 100 = 230 KiB; +20 would be 250 > 240: new message; 20 + 200 = 220 fits.
        assert pub.take_batch() == [ps[0:2], ps[2:4]]

    in_loop(body)


def test_batch_bytes_are_counted_across_messages() -> None:
    def body() -> None:
        pub = Queue(300 * KIB)
        ps = [pending(1, 200 * KIB), pending(1, 90 * KIB), pending(1, 20 * KIB)]
        pub.pending.extend(ps)
        # 200 + 90 = 290 KiB: two messages (290 > 240) in one batch; +20 would pass the 300 KiB batch limit.
        assert pub.take_batch() == [[ps[0]], [ps[1]]]
        assert pub.pending == [ps[2]]

    in_loop(body)


def test_batch_bytes_limit_holds_back_the_rest_in_order() -> None:
    def body() -> None:
        pub = Queue()
        ps = [pending(1, 60 * KIB) for _ in range(6)]
        pub.pending.extend(ps)
        # Four 60 KiB requests are exactly 240 KiB: the whole batch; the other two wait for the next one.
        assert pub.take_batch() == [ps[0:4]]
        assert pub.take_batch() == [ps[4:6]]

    in_loop(body)


def test_a_request_of_exactly_the_limit_goes_alone() -> None:
    def body() -> None:
        pub = Queue()
        ps = [pending(1, 1), pending(1, MAX_MESSAGE_BYTES), pending(1, 1)]
        pub.pending.extend(ps)
        assert pub.take_batch() == [[ps[0]]]
        assert pub.take_batch() == [[ps[1]]]
        assert pub.take_batch() == [[ps[2]]]

    in_loop(body)


def test_at_most_ten_entries_per_batch() -> None:
    def body() -> None:
        pub = Queue()
        ps = [pending(MAX_EVENTS_PER_MESSAGE, size=KIB) for _ in range(25)]
        pub.pending.extend(ps)
        batches = drain(pub)
        assert [len(b) for b in batches] == [10, 10, 5]
        assert [m for b in batches for m in b] == [[p] for p in ps]

    in_loop(body)


def test_the_tenth_message_is_still_filled() -> None:
    def body() -> None:
        pub = Queue()
        # Nine full messages, then small requests: the tenth message takes as many as fit, the rest wait.
        ps = [pending(MAX_EVENTS_PER_MESSAGE, size=KIB) for _ in range(9)] + [pending(100, size=KIB) for _ in range(8)]
        pub.pending.extend(ps)
        batch = pub.take_batch()
        assert len(batch) == 10
        assert batch[9] == ps[9:14]
        assert pub.pending == ps[14:]

    in_loop(body)


def test_publish_rejects_a_request_that_cannot_fit_one_message() -> None:
    async def run() -> None:
        pub = publisher()
        with pytest.raises(ValueError, match="fit one queue message"):
            await pub.publish([EVENT] * (MAX_EVENTS_PER_MESSAGE + 1))
        assert pub.pending_events == 0

    asyncio.run(run())


def test_publish_after_close_is_refused() -> None:
    async def run() -> None:
        pub = publisher()
        await pub.close()  # never started: nothing to flush
        with pytest.raises(QueueUnavailable):
            await pub.publish([EVENT])

    asyncio.run(run())


requests = st.lists(
    st.tuples(st.integers(1, MAX_EVENTS_PER_MESSAGE), st.integers(1, MAX_MESSAGE_BYTES)), min_size=1, max_size=60
)


@settings(max_examples=80, deadline=None)
@given(requests, st.sampled_from([MAX_BATCH_BYTES, 1024 * KIB]))
def test_packing_properties(shape: list[tuple[int, int]], batch_limit: int) -> None:
    # Also with SQS's newer 1 MiB batch limit, where the per-message byte limit binds on its own.
    def body() -> None:
        pub = Queue(batch_limit)
        ps = [pending(n, size) for n, size in shape]
        pub.pending.extend(ps)
        taken: list[Request] = []
        while pub.pending:
            batch = pub.take_batch()
            check_limits(batch, batch_limit)
            taken.extend(p for message in batch for p in message)
            if pub.pending:
                nxt = pub.pending[0]
                last = batch[-1]
                total = sum(p.size for message in batch for p in message)
                fits_last = (
                    sum(p.size for p in last) + nxt.size <= MAX_MESSAGE_BYTES
                    and sum(len(p.events) for p in last) + len(nxt.events) <= MAX_EVENTS_PER_MESSAGE
                )
                # A batch stops early only at a limit: the batch bytes, or ten messages with the last one full.
                assert total + nxt.size > batch_limit or (len(batch) == MAX_ENTRIES_PER_BATCH and not fits_last)
        # Every request exactly once, in arrival order.
        assert len(taken) == len(ps)
        assert all(a is b for a, b in zip(taken, ps, strict=True))

    in_loop(body)
