"""aggregator/commit.py: deltas committed atomically with a guard, so a replayed batch counts nothing twice.

Against an in-memory DynamoDB (tests/unit/fake_dynamodb.py); tests/integration runs the same against DynamoDB Local.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError

from aggregator.aggregates import AggregateKey, Totals
from aggregator.commit import BatchMarkers, Checkpoint, CheckpointMoved, CheckpointStore
from tests.unit.factories import ORG_ID
from tests.unit.fake_dynamodb import FakeDynamoDB

T = TypeVar("T")
ARN = "arn:aws:dynamodb:us-east-1:1:table/usage/stream/1"
SHARD = "shardId-0001"
AGGREGATES = "aggregates"
KEY = AggregateKey(ORG_ID, "2024-06-15", "chatbot", "standard")


def run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    return asyncio.run(wrapper())


def deltas(cost: int) -> dict[AggregateKey, Totals]:
    return {KEY: Totals.of(cost_usd_micros=cost, input_tokens=cost * 10, request_count=1)}


def spent(ddb: FakeDynamoDB) -> int:
    key = KEY.item_key()
    return ddb.counter(AGGREGATES, key["pk"]["S"], key["sk"]["S"], "cost_usd_micros")


@pytest.fixture
def ddb() -> FakeDynamoDB:
    return FakeDynamoDB()


@pytest.fixture
def store(ddb: FakeDynamoDB) -> CheckpointStore:
    return CheckpointStore(ddb, "checkpoints")  # type: ignore[arg-type]


def test_a_shard_never_committed_starts_from_the_trim_horizon(store: CheckpointStore) -> None:
    assert run(store.load(ARN, SHARD)) == Checkpoint(None)


def test_commits_advance_the_checkpoint_and_add_their_deltas(ddb: FakeDynamoDB, store: CheckpointStore) -> None:
    run(store.commit(ARN, SHARD, None, "100", deltas(5), AGGREGATES))
    run(store.commit(ARN, SHARD, "100", "200", deltas(7), AGGREGATES))
    assert run(store.load(ARN, SHARD)) == Checkpoint("200")
    assert spent(ddb) == 12


@pytest.mark.parametrize("stale", [None, "100"])
def test_a_replay_from_an_old_position_moves_nothing(ddb: FakeDynamoDB, store: CheckpointStore, stale: Any) -> None:
    # A crashed reader, or a second reader of the shard, comes back with the position it had: its batch was counted.
    run(store.commit(ARN, SHARD, None, "100", deltas(5), AGGREGATES))
    run(store.commit(ARN, SHARD, "100", "200", deltas(7), AGGREGATES))
    with pytest.raises(CheckpointMoved):
        run(store.commit(ARN, SHARD, stale, "200", deltas(7), AGGREGATES))
    assert spent(ddb) == 12
    assert run(store.load(ARN, SHARD)) == Checkpoint("200")


def test_a_failure_that_is_not_the_checkpoint_propagates_and_applies_nothing(
    ddb: FakeDynamoDB, store: CheckpointStore
) -> None:
    ddb.fail_next_transaction_at = 0  # the aggregate update, not the checkpoint
    with pytest.raises(ClientError, match="TransactionCanceled"):
        run(store.commit(ARN, SHARD, None, "100", deltas(5), AGGREGATES))
    assert spent(ddb) == 0
    assert run(store.load(ARN, SHARD)) == Checkpoint(None)
    # Read again from the (unmoved) checkpoint, the batch then commits once.
    run(store.commit(ARN, SHARD, None, "100", deltas(5), AGGREGATES))
    assert spent(ddb) == 5


def test_a_finished_shard_is_marked_at_its_position(store: CheckpointStore) -> None:
    run(store.commit(ARN, SHARD, None, "100", deltas(5), AGGREGATES))
    run(store.mark_finished(ARN, SHARD, "100"))
    assert run(store.load(ARN, SHARD)) == Checkpoint("100", finished=True)


def test_marking_finished_from_a_stale_position_is_refused(store: CheckpointStore) -> None:
    run(store.commit(ARN, SHARD, None, "100", deltas(5), AGGREGATES))
    with pytest.raises(CheckpointMoved):
        run(store.mark_finished(ARN, SHARD, "050"))
    assert not run(store.load(ARN, SHARD)).finished


def test_an_empty_shard_can_be_finished(store: CheckpointStore) -> None:
    run(store.mark_finished(ARN, SHARD, None))
    assert run(store.load(ARN, SHARD)) == Checkpoint(None, finished=True)


def test_shards_keep_separate_checkpoints(ddb: FakeDynamoDB, store: CheckpointStore) -> None:
    run(store.commit(ARN, SHARD, None, "100", deltas(5), AGGREGATES))
    run(store.commit(ARN, "shardId-0002", None, "300", deltas(1), AGGREGATES))
    assert run(store.load(ARN, SHARD)) == Checkpoint("100")
    assert run(store.load(ARN, "shardId-0002")) == Checkpoint("300")
    assert spent(ddb) == 6


def test_a_batch_marker_applies_a_run_once(ddb: FakeDynamoDB) -> None:
    markers = BatchMarkers(ddb, "checkpoints")  # type: ignore[arg-type]
    assert run(markers.commit(ARN, "100", "200", deltas(5), AGGREGATES))
    assert not run(markers.commit(ARN, "100", "200", deltas(5), AGGREGATES))
    assert spent(ddb) == 5
