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
    aggregate_reset,
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
    assert (state.exists, state.revision, state.applied) == (True, None, {})
    assert AggregateState.from_item(None) == AggregateState(Totals(), {}, None, exists=False)


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
    assert state.revision == 1
    assert ddb.items[(TABLE, pk, sk)]["schema_version"] == {"N": str(SCHEMA_VERSION)}


def test_a_guarded_update_names_its_shard_and_records() -> None:
    guard = Guard("shardId-9", position("100000000000000000005"), position("100000000000000000009"))
    update = aggregate_update(TABLE, KEY, Totals.of(cost_usd_micros=3, request_count=1), "1", guard)
    assert update["ConditionExpression"] == "attribute_not_exists(#applied) OR #applied < :first"
    assert update["ExpressionAttributeNames"]["#applied"] == applied_attribute("shardId-9") == "applied#shardId-9"
    assert update["ExpressionAttributeValues"][":last"] == {"S": "0" * 19 + "100000000000000000009"}
    assert update["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert "ConditionExpression" not in aggregate_update(TABLE, KEY, Totals(), "1")


def test_a_reset_applies_only_to_the_revision_it_was_computed_from() -> None:
    ddb = FakeDynamoDB()
    pk, sk = KEY.item_key()["pk"]["S"], KEY.item_key()["sk"]["S"]
    records = decode_all([insert(usage(cost_usd_micros=500))])
    asyncio.run(AggregateApplier(ddb, TABLE).apply("shardId-1", records))  # type: ignore[arg-type]
    seen = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    target = Totals.of(cost_usd_micros=900, request_count=3)
    cut = {"shardId-1": seen.applied["shardId-1"], "shardId-2": position("42")}
    asyncio.run(ddb.update_item(**aggregate_reset(TABLE, KEY, seen, target, cut, "2")))
    after = AggregateState.from_item(ddb.items[(TABLE, pk, sk)])
    assert (after.totals, after.applied, after.revision) == (target, cut, 2)
    # Computed from what is no longer there: refused.
    with pytest.raises(ConditionalCheckFailedException):
        asyncio.run(ddb.update_item(**aggregate_reset(TABLE, KEY, seen, Totals(), {}, "3")))
    assert AggregateState.from_item(ddb.items[(TABLE, pk, sk)]).totals == target
