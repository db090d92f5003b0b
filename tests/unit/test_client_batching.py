"""Batching: at most 100 events per POST, a linger of at most 50 ms, a bounded buffer with a stated policy when full."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from costkeeper_client import AsyncCostKeeperClient, BufferFull, ClientClosed, ClientOptions, CostKeeperClient
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi, FakeTime


def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    """Poll a condition another thread makes true; the timeout only turns a hang into a failure."""
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_events_recorded_together_leave_in_batches_of_at_most_100() -> None:
    api = FakeApi()

    async def main() -> None:
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options()) as keeper:
            # No await suspends here, so the batcher first runs with all 250 waiting.
            for i in range(250):
                await keeper.record("premium", input_tokens=i)

    asyncio.run(main())
    assert [len(post.items) for post in api.posts] == [100, 100, 50]
    assert [item["input_tokens"] for post in api.posts for item in post.items] == list(range(250))


def test_a_smaller_batch_size_is_honoured() -> None:
    api = FakeApi()

    async def main() -> None:
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options(max_batch_items=7)) as keeper:
            for _ in range(20):
                await keeper.record("premium")

    asyncio.run(main())
    assert [len(post.items) for post in api.posts] == [7, 7, 6]


def test_a_partial_batch_leaves_after_the_linger_without_flush_or_close() -> None:
    api = FakeApi()
    clock = FakeTime()

    async def main() -> int:
        options = api.options(clock=clock.clock, sleep=clock.sleep)
        keeper = AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options)
        for _ in range(3):
            await keeper.record("premium")
        turns = 0
        while not api.posts:
            turns += 1
            assert turns < 10_000, "the partial batch never left"
            await asyncio.sleep(0)
        sent = len(api.posts[0].items)
        await keeper.aclose()
        return sent

    assert asyncio.run(main()) == 3
    # The only waits were lingers, none longer than 50 ms, and together no longer than the one linger.
    assert clock.sleeps_s
    assert max(clock.sleeps_s) <= 0.05
    assert sum(clock.sleeps_s) == pytest.approx(0.05)


def test_threads_recording_at_once_get_every_event_delivered_once_in_batches_of_at_most_100() -> None:
    api = FakeApi()
    ids: list[str] = []
    ids_lock = threading.Lock()

    def worker(keeper: CostKeeperClient) -> None:
        mine = [keeper.record("standard", output_tokens=1).request_id for _ in range(500)]
        with ids_lock:
            ids.extend(mine)

    with CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options()) as keeper:
        threads = [threading.Thread(target=worker, args=(keeper,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert max(len(post.items) for post in api.posts) <= 100
    assert sorted(api.posted_ids()) == sorted(ids)
    assert len(set(ids)) == 4_000
    assert keeper.stats().delivered == 4_000


@pytest.mark.parametrize(
    "bad",
    [{"linger_s": 0.051}, {"linger_s": -1}, {"max_batch_items": 101}, {"max_batch_items": 0}, {"when_full": "drop"}],
)
def test_options_outside_the_stated_limits_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each refusal has its own message
        ClientOptions(**bad)  # type: ignore[arg-type]


def test_a_full_buffer_raises_under_the_raise_policy_and_loses_nothing_recorded() -> None:
    api = FakeApi()
    api.gate.clear()  # the API does not answer yet: batches stay in flight

    async def main() -> AsyncCostKeeperClient:
        options = api.options(max_buffered_events=100, max_batch_items=10, when_full="raise")
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options) as keeper:
            for _ in range(100):
                await keeper.record("premium")
            with pytest.raises(BufferFull):
                await keeper.record("premium")
            api.gate.set()
            assert await keeper.flush()
        return keeper

    keeper = asyncio.run(main())
    stats = keeper.stats()
    assert (stats.recorded, stats.delivered, stats.failed) == (100, 100, 0)
    assert len(api.accepted) == 100


def test_a_full_buffer_blocks_the_recording_thread_until_deliveries_make_room() -> None:
    api = FakeApi()
    api.gate.clear()
    options = api.options(max_buffered_events=100, max_batch_items=10, when_full="block")
    done = threading.Event()
    with CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options) as keeper:

        def record_150() -> None:
            for _ in range(150):
                keeper.record("premium")
            done.set()

        thread = threading.Thread(target=record_150)
        thread.start()
        wait_until(lambda: keeper.stats().recorded == 100)
        # The 101st record waits for room; it does not fail and does not drop anything.
        assert not done.wait(0.2)
        assert keeper.stats().recorded == 100
        api.gate.set()
        thread.join()
    assert done.is_set()
    assert len(api.accepted) == 150


def test_blocking_gives_up_with_buffer_full_after_block_timeout() -> None:
    api = FakeApi()
    api.gate.clear()
    options = api.options(max_buffered_events=100, when_full="block", block_timeout_s=0.05, close_timeout_s=5)
    with CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options) as keeper:
        for _ in range(100):
            keeper.record("premium")
        with pytest.raises(BufferFull):
            keeper.record("premium")
        api.gate.set()
    assert len(api.accepted) == 100


def test_an_async_recorder_waits_for_room_without_blocking_the_loop() -> None:
    api = FakeApi()
    api.gate.clear()

    async def main() -> int:
        options = api.options(max_buffered_events=100, max_batch_items=10)
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options) as keeper:

            async def record_150() -> None:
                for _ in range(150):
                    await keeper.record("premium")

            task = asyncio.create_task(record_150())
            while keeper.stats().recorded < 100:  # noqa: ASYNC110 - a count, not an event, to wait for
                await asyncio.sleep(0)
            for _ in range(100):
                await asyncio.sleep(0)  # the loop keeps running: the recorder is waiting, not blocking it
            assert not task.done()
            api.gate.set()
            await task
        return len(api.accepted)

    assert asyncio.run(main()) == 150


def test_recording_after_close_is_refused() -> None:
    api = FakeApi()
    keeper = CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options())
    keeper.close()
    with pytest.raises(ClientClosed):
        keeper.record("premium")
