"""aggregator/apply.py: a shard's records count once per aggregate, through any batch bounds, replays and readers.

Against an in-memory DynamoDB (tests/unit/fake_dynamodb.py); tests/integration/test_replay.py drives the Lambda
handler and the long-running aggregator with real stream records from DynamoDB Local.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.aggregates import AggregateKey, AggregateState, Totals
from aggregator.apply import AggregateApplier
from aggregator.rollup import OutOfOrderRecords, key_runs, rollup
from aggregator.stream_record import StreamRecord, decode_all
from tests.unit.factories import insert, modify, remove, usage, with_changes

T = TypeVar("T")
TABLE = "aggregates"
SHARD = "shardId-0001"
LABELS = ("premium", "standard", "economy")


def run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    return asyncio.run(wrapper())


def traffic(n: int, labels: Sequence[str] = LABELS) -> list[StreamRecord]:
    """n INSERTs of one shard, in shard order, spread over a few aggregate keys."""
    return decode_all(
        [
            insert(usage(model_label=labels[i % len(labels)], input_tokens=10 + i, cost_usd_micros=100 + i))
            for i in range(n)
        ]
    )


def counted(ddb: Any) -> dict[AggregateKey, Totals]:
    found: dict[AggregateKey, Totals] = {}
    for (table, _, _), item in ddb.items.items():
        if table == TABLE:
            key = AggregateKey(item["org_id"]["S"], item["day"]["S"], item["app_id"]["S"], item["model_label"]["S"])
            totals = AggregateState.from_item(item).totals
            if not totals.is_zero():
                found[key] = totals
    return found


@pytest.fixture
def ddb() -> Any:
    from tests.unit.fake_dynamodb import FakeDynamoDB

    return FakeDynamoDB()


@pytest.fixture
def applier(ddb: Any) -> AggregateApplier:
    return AggregateApplier(ddb, TABLE)


def test_a_batch_delivered_twice_counts_once(ddb: Any, applier: AggregateApplier) -> None:
    records = traffic(30)
    first = run(applier.apply(SHARD, records))
    again = run(applier.apply(SHARD, records))
    assert counted(ddb) == rollup(records)
    assert (first.aggregate_writes, first.records_counted, first.records_skipped) == (3, 30, 0)
    assert (again.aggregate_writes, again.records_counted, again.records_skipped) == (0, 0, 30)


def test_overlapping_batches_count_each_record_once(ddb: Any, applier: AggregateApplier) -> None:
    records = traffic(100)
    run(applier.apply(SHARD, records[:60]))
    outcome = run(applier.apply(SHARD, records[30:]))
    assert counted(ddb) == rollup(records)
    assert (outcome.records_counted, outcome.records_skipped) == (40, 30)


def test_a_full_replay_after_differently_bounded_batches_counts_nothing(ddb: Any, applier: AggregateApplier) -> None:
    records = traffic(90)
    for start in range(0, 90, 7):
        run(applier.apply(SHARD, records[start : start + 7]))
    replay = run(applier.apply(SHARD, records))
    assert counted(ddb) == rollup(records)
    assert replay.records_counted == 0


def test_shards_are_guarded_apart(ddb: Any, applier: AggregateApplier) -> None:
    # The same key gets records from two shards (two partitions of the usage table): positions of one shard say
    # nothing about the other's.
    ours, theirs = traffic(20), traffic(20)
    run(applier.apply("shardId-0002", theirs))
    run(applier.apply(SHARD, ours))
    run(applier.apply(SHARD, ours))
    total = rollup(ours)
    for key, t in rollup(theirs).items():
        total.setdefault(key, Totals()).merge(t)
    assert counted(ddb) == total


def test_a_run_partly_counted_by_another_reader_is_cut_to_what_is_left(ddb: Any, applier: AggregateApplier) -> None:
    records = traffic(10, labels=["premium"])
    other = AggregateApplier(ddb, TABLE)
    # The other reader counted the first six: our update of all ten is refused, cut to the last four, and retried.
    done = run(other.apply(SHARD, records[:6]))
    assert done.records_counted == 6
    outcome = run(applier.apply(SHARD, records))
    assert counted(ddb) == rollup(records)
    assert (outcome.refused_updates, outcome.records_counted, outcome.records_skipped) == (1, 4, 6)


def test_a_failed_update_propagates_and_the_retry_counts_once(ddb: Any, applier: AggregateApplier) -> None:
    records = traffic(30)
    ddb.fail_next_updates = 1
    with pytest.raises(ClientError, match="ServiceUnavailable"):
        run(applier.apply(SHARD, records))
    # The other keys were counted; the retry of the batch counts the failed one and skips them.
    assert len(counted(ddb)) == 2
    run(applier.apply(SHARD, records))
    assert counted(ddb) == rollup(records)


def test_records_out_of_shard_order_are_refused_before_anything_is_counted(ddb: Any, applier: AggregateApplier) -> None:
    records = traffic(5)
    with pytest.raises(OutOfOrderRecords):
        run(applier.apply(SHARD, [records[1], records[0]]))
    with pytest.raises(OutOfOrderRecords):
        run(applier.apply(SHARD, [records[0], records[0]]))
    assert counted(ddb) == {}


def test_a_key_whose_records_cancel_out_still_moves_past_them(ddb: Any, applier: AggregateApplier) -> None:
    a = usage(model_label="premium", cost_usd_micros=500)
    b = with_changes(a, model_label="standard")
    # INSERT a (premium +500), MODIFY a -> b (premium -500, standard +500): premium nets to zero in this batch.
    records = decode_all([insert(a), modify(a, b)])
    run(applier.apply(SHARD, records))
    # A later batch that starts at the MODIFY must not take the 500 off premium again.
    run(applier.apply(SHARD, records[1:]))
    assert counted(ddb) == rollup(records)
    assert [k.model_label for k in counted(ddb)] == ["standard"]


def test_removals_and_foreign_items_touch_no_aggregate(ddb: Any, applier: AggregateApplier) -> None:
    r = usage()
    later = "9" * 30  # after every sequence number the factories hand out
    junk: Mapping[str, Any] = {
        "eventName": "INSERT",
        "dynamodb": {"NewImage": {"pk": {"S": "x"}}, "SequenceNumber": later},
    }
    records = decode_all([remove(r), junk])
    outcome = run(applier.apply(SHARD, records))
    assert outcome.aggregate_writes == 0
    assert ddb.items == {}


def test_key_runs_follow_each_key_in_shard_order() -> None:
    records = traffic(7)
    runs = key_runs(records)
    assert [r.key.model_label for r in runs] == sorted(LABELS)
    for key_run in runs:
        positions = [s.position for s in key_run.steps]
        assert positions == sorted(positions)
        assert key_run.after(positions[0]).steps == key_run.steps[1:]
        assert key_run.after(positions[-1]).steps == ()
        assert key_run.after(None) == key_run


# --- any interleaving of two readers with any batch bounds ---------------------------------------------------------


@st.composite
def cuts(draw: st.DrawFn, n: int) -> list[tuple[int, int]]:
    """Batches a reader delivers: each starts at or before where the last one ended (a retry or overlap)."""
    batches: list[tuple[int, int]] = []
    done = 0
    while done < n:
        start = draw(st.integers(max(0, done - 10), done))
        end = draw(st.integers(done + 1, min(n, done + 25)))
        batches.append((start, end))
        done = end
    return batches


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_two_readers_with_any_bounds_in_any_interleaving_count_each_record_once(data: st.DataObject) -> None:
    from tests.unit.fake_dynamodb import FakeDynamoDB

    ddb = FakeDynamoDB()
    records = traffic(60, labels=["premium", "standard"]) + decode_all(
        [insert(usage(timestamp=usage().timestamp + timedelta(days=1)))]
    )
    first, second = AggregateApplier(ddb, TABLE), AggregateApplier(ddb, TABLE)  # type: ignore[arg-type]
    plans = [data.draw(cuts(len(records))), data.draw(cuts(len(records)))]
    readers = [first, second]
    while any(plans):
        turn = data.draw(st.sampled_from([i for i, p in enumerate(plans) if p]))
        start, end = plans[turn].pop(0)
        run(readers[turn].apply(SHARD, records[start:end]))
    assert counted(ddb) == rollup(records)
