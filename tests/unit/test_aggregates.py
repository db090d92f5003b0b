"""aggregator/aggregates.py: the aggregate item's versions read alike, and its guarded update counts a run once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aggregator.aggregates import (
    SCHEMA_VERSION,
    AggregateKey,
    AggregateState,
    Guard,
    Totals,
    aggregate_correction,
    aggregate_update,
    applied_attribute,
)
from aggregator.apply import AggregateApplier
from aggregator.rollup import rollup
from aggregator.stream_record import decode_all, position
from tests.unit.factories import ORG_ID, insert, usage
from tests.unit.fake_dynamodb import ConditionalCheckFailedException, FakeDynamoDB

KEY = AggregateKey(ORG_ID, "2024-06-15", "chatbot", "standard")
TABLE = "aggregates"


def version_1_item() -> dict[str, Any]:
    """An aggregate as the aggregator wrote it before schema_version 2: counters only."""
    return {
        **KEY.item_key(),
        "org_id": {"S": KEY.org_id},
        "app_id": {"S": KEY.app_id},
        "model_label": {"S": KEY.model_label},
        "day": {"S": KEY.day},
        "cost_usd_micros": {"N": "12000"},
        "input_tokens": {"N": "2000"},
        "output_tokens": {"N": "400"},
        "request_count": {"N": "2"},
        "updated_at_ms": {"N": "1718452800000"},
    }


def test_a_version_1_aggregate_reads_as_its_counters_with_nothing_applied_under_a_guard() -> None:
    state = AggregateState.from_item(version_1_item())
    assert state.totals == Totals.of(cost_usd_micros=12000, input_tokens=2000, output_tokens=400, request_count=2)
    assert (state.exists, state.corrections, state.applied) == (True, 0, {})
    assert AggregateState.from_item(None) == AggregateState(Totals(), {}, exists=False)


def test_the_first_guarded_update_of_a_version_1_aggregate_adds_to_it_and_starts_guarding() -> None:
    ddb = FakeDynamoDB()
    pk, sk = KEY.item_key()["pk"]["S"], KEY.item_key()["sk"]["S"]
    ddb.items[(TABLE, pk, sk)] = version_1_item()
    records = decode_all([insert(usage(cost_usd_micros=500)), insert(usage(cost_usd_micros=700))])
    applier = AggregateApplier(ddb, TABLE)  # type: ignore[arg-type]
    asyncio.run(applier.apply("shardId-1", records))
    asyncio.run(applier.apply("shardId-1", records))
    state = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    expected = Totals.of(cost_usd_micros=12000, input_tokens=2000, output_tokens=400, request_count=2)
    expected.merge(rollup(records)[KEY])
    assert state.totals == expected
    assert state.applied == {"shardId-1": records[-1].position}
    assert ddb.items[(TABLE, pk, sk)]["schema_version"] == {"N": str(SCHEMA_VERSION)}


def test_a_guarded_update_names_its_shard_and_records() -> None:
    guard = Guard("shardId-9", position("100000000000000000005"), position("100000000000000000009"))
    update = aggregate_update(TABLE, KEY, Totals.of(cost_usd_micros=3, request_count=1), "1", guard)
    assert update["ConditionExpression"] == "attribute_not_exists(#applied) OR #applied < :first"
    assert update["ExpressionAttributeNames"]["#applied"] == applied_attribute("shardId-9") == "applied#shardId-9"
    assert update["ExpressionAttributeValues"][":last"] == {"S": "0" * 19 + "100000000000000000009"}
    assert update["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert "ConditionExpression" not in aggregate_update(TABLE, KEY, Totals(), "1")


def test_a_correction_adds_its_difference_around_what_the_aggregator_counts_after_it_was_computed() -> None:
    ddb = FakeDynamoDB()
    pk, sk = KEY.item_key()["pk"]["S"], KEY.item_key()["sk"]["S"]
    applier = AggregateApplier(ddb, TABLE)  # type: ignore[arg-type]
    records = decode_all([insert(usage(cost_usd_micros=c)) for c in (500, 300, 200)])
    asyncio.run(applier.apply("shardId-1", records[:1]))
    seen = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    # The aggregator counts on while the correction is computed; the correction takes 77 off what was seen.
    asyncio.run(applier.apply("shardId-1", records[1:]))
    delta = Totals.of(cost_usd_micros=-77, request_count=-1)
    asyncio.run(ddb.update_item(**aggregate_correction(TABLE, KEY, seen, delta, {}, "2")))
    after = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    assert after.totals == Totals.of(**{**rollup(records)[KEY].as_dict(), "cost_usd_micros": 923, "request_count": 2})
    assert (after.applied, after.corrections) == ({"shardId-1": records[-1].position}, 1)
    # Computed before that correction: refused, so one difference is never added twice.
    with pytest.raises(ConditionalCheckFailedException):
        asyncio.run(ddb.update_item(**aggregate_correction(TABLE, KEY, seen, delta, {}, "3")))
    assert AggregateState.from_item(ddb.items[(TABLE, pk, sk)]).totals == after.totals


def test_a_correction_that_raises_a_position_is_refused_once_that_position_moved() -> None:
    ddb = FakeDynamoDB()
    pk, sk = KEY.item_key()["pk"]["S"], KEY.item_key()["sk"]["S"]
    applier = AggregateApplier(ddb, TABLE)  # type: ignore[arg-type]
    records = decode_all([insert(usage(cost_usd_micros=c)) for c in (500, 300)])
    asyncio.run(applier.apply("shardId-1", records[:1]))
    seen = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    raise_to = {"shardId-1": records[1].position, "shardId-2": position("42")}
    asyncio.run(applier.apply("shardId-1", records[1:]))
    with pytest.raises(ConditionalCheckFailedException):
        asyncio.run(ddb.update_item(**aggregate_correction(TABLE, KEY, seen, Totals(), raise_to, "2")))
    # Read again, the same raise goes through and guards the shard it names.
    fresh = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    asyncio.run(ddb.update_item(**aggregate_correction(TABLE, KEY, fresh, Totals(), raise_to, "3")))
    assert AggregateState.from_item(ddb.items[(TABLE, pk, sk)]).applied == raise_to


def test_a_correction_of_a_deleted_aggregate_is_refused_once_the_aggregator_created_it_again() -> None:
    ddb = FakeDynamoDB()
    pk, sk = KEY.item_key()["pk"]["S"], KEY.item_key()["sk"]["S"]
    absent = AggregateState.from_item(None)
    asyncio.run(AggregateApplier(ddb, TABLE).apply("shardId-1", decode_all([insert(usage())])))  # type: ignore[arg-type]
    restore = Totals.of(cost_usd_micros=1_000, request_count=4)
    with pytest.raises(ConditionalCheckFailedException):
        asyncio.run(ddb.update_item(**aggregate_correction(TABLE, KEY, absent, restore, {"shardId-1": "9"}, "2")))
    del ddb.items[(TABLE, pk, sk)]
    asyncio.run(ddb.update_item(**aggregate_correction(TABLE, KEY, absent, restore, {"shardId-1": "9"}, "2")))
    restored = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    assert (restored.totals, restored.applied, restored.corrections) == (restore, {"shardId-1": "9"}, 1)
