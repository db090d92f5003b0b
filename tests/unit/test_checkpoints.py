"""aggregator/checkpoints.py: a shard's checkpoint only moves forward, whoever writes it.

Against an in-memory DynamoDB (tests/unit/fake_dynamodb.py); tests/integration runs the same against DynamoDB Local.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from aggregator.checkpoints import Checkpoint, CheckpointStore, checkpoint_key
from tests.unit.fake_dynamodb import FakeDynamoDB

T = TypeVar("T")
ARN = "arn:aws:dynamodb:us-east-1:1:table/usage/stream/1"
SHARD = "shardId-0001"


def run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    return asyncio.run(wrapper())


@pytest.fixture
def ddb() -> FakeDynamoDB:
    return FakeDynamoDB()


@pytest.fixture
def store(ddb: FakeDynamoDB) -> CheckpointStore:
    return CheckpointStore(ddb, "checkpoints")  # type: ignore[arg-type]


def test_a_shard_never_read_starts_from_the_trim_horizon(store: CheckpointStore) -> None:
    assert run(store.load(ARN, SHARD)) == Checkpoint(None)


def test_advancing_moves_the_checkpoint_forward(store: CheckpointStore) -> None:
    assert run(store.advance(ARN, SHARD, "100"))
    assert run(store.advance(ARN, SHARD, "200"))
    assert run(store.load(ARN, SHARD)) == Checkpoint("200")


@pytest.mark.parametrize("behind", ["200", "150", "99"])
def test_a_reader_behind_the_checkpoint_does_not_move_it_back(store: CheckpointStore, behind: str) -> None:
    # Two readers of one shard (both aggregator modes, or a rolling restart): the one behind leaves it be.
    run(store.advance(ARN, SHARD, "200"))
    assert not run(store.advance(ARN, SHARD, behind))
    assert run(store.load(ARN, SHARD)) == Checkpoint("200")


def test_positions_compare_as_numbers_not_as_strings(store: CheckpointStore) -> None:
    # Sequence numbers are 21 to 40 digits: "99..." (21 digits) is before "100..." (22 digits).
    short, long = "9" * 21, "1" + "0" * 21
    run(store.advance(ARN, SHARD, short))
    assert run(store.advance(ARN, SHARD, long))
    assert not run(store.advance(ARN, SHARD, short))
    assert run(store.load(ARN, SHARD)).sequence_number == long


def test_a_checkpoint_written_before_positions_existed_is_compared_and_rewritten(
    ddb: FakeDynamoDB, store: CheckpointStore
) -> None:
    ddb.items[("checkpoints", checkpoint_key(ARN, SHARD)["pk"]["S"], "")] = {
        **checkpoint_key(ARN, SHARD),
        "sequence_number": {"S": "500"},
    }
    assert not run(store.advance(ARN, SHARD, "400"))
    assert run(store.load(ARN, SHARD)) == Checkpoint("500")
    assert run(store.advance(ARN, SHARD, "600"))
    assert run(store.load(ARN, SHARD)) == Checkpoint("600")
    assert not run(store.advance(ARN, SHARD, "550"))


def test_a_finished_shard_stays_finished_at_its_position(store: CheckpointStore) -> None:
    run(store.advance(ARN, SHARD, "100"))
    run(store.mark_finished(ARN, SHARD))
    run(store.mark_finished(ARN, SHARD))  # the other reader gets there too
    assert run(store.load(ARN, SHARD)) == Checkpoint("100", finished=True)


def test_an_empty_shard_can_be_finished(store: CheckpointStore) -> None:
    run(store.mark_finished(ARN, SHARD))
    assert run(store.load(ARN, SHARD)) == Checkpoint(None, finished=True)


def test_shards_keep_separate_checkpoints(store: CheckpointStore) -> None:
    run(store.advance(ARN, SHARD, "100"))
    run(store.advance(ARN, "shardId-0002", "300"))
    assert run(store.load(ARN, SHARD)) == Checkpoint("100")
    assert run(store.load(ARN, "shardId-0002")) == Checkpoint("300")
