"""aggregator/drift.py: what an aggregate should hold at the cut, against what it holds. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from aggregator.aggregates import AggregateKey, AggregateState, Totals
from aggregator.drift import KeyReport, ShardRead, difference, plan
from aggregator.stream_record import decode, decode_all
from aggregator.usage_record import UsageRecord
from tests.unit.factories import ORG_ID, OTHER_ORG_ID, insert, modify, usage, with_changes

DAY = "2024-06-15"
SHARD = "shardId-1"
KEY = AggregateKey(ORG_ID, DAY, "chatbot", "standard")


def totals(*records: UsageRecord) -> Totals:
    total = Totals()
    for record in records:
        total.add(record)
    return total


def state(held: Totals, applied: Mapping[str, str] | None = None) -> AggregateState:
    return AggregateState(held, dict(applied or {}))


def one(reports: list[KeyReport], key: AggregateKey = KEY) -> KeyReport:
    [report] = [r for r in reports if r.key == key]
    return report


def test_an_aggregate_holding_every_counted_item_has_no_drift() -> None:
    items = [usage(cost_usd_micros=100 + i) for i in range(5)]
    records = decode_all([insert(u) for u in items])
    checkpoint = {SHARD: records[-1].position}
    report = one(plan(ORG_ID, DAY, {KEY: state(totals(*items))}, items, [ShardRead(SHARD, [])], checkpoint))
    assert not report.drifted
    assert report.pending == 0 and not report.unsettled


def test_records_after_the_cut_are_left_to_the_aggregator() -> None:
    counted, coming = [usage(cost_usd_micros=100) for _ in range(3)], [usage(cost_usd_micros=7) for _ in range(2)]
    records = decode_all([insert(u) for u in counted + coming])
    # The aggregate counted the first three (its applied position); the checkpoint is further back still.
    held = state(totals(*counted), {SHARD: records[2].position})
    reports = plan(ORG_ID, DAY, {KEY: held}, counted + coming, [ShardRead(SHARD, records)], {SHARD: None})
    report = one(reports)
    assert not report.drifted
    assert report.pending == 2


def test_a_deleted_aggregate_is_rebuilt_from_everything_at_or_before_the_checkpoint() -> None:
    items = [usage(cost_usd_micros=10 * i) for i in range(1, 6)]
    records = decode_all([insert(u) for u in items])
    # Counted long ago (the checkpoint is past them all), then the aggregate was deleted; one more is on its way.
    late = usage(cost_usd_micros=999)
    late_record = decode(insert(late))
    checkpoint = {SHARD: records[-1].position}
    reports = plan(ORG_ID, DAY, {}, [*items, late], [ShardRead(SHARD, [late_record])], checkpoint)
    report = one(reports)
    assert report.seen.exists is False
    assert report.expected == totals(*items)
    assert report.drift == totals(*items)
    # A repair also guards what it restores: no replay of those records may count them again.
    assert report.raise_to == {SHARD: records[-1].position}
    assert report.pending == 1


def test_an_aggregate_holding_too_much_drifts_negative() -> None:
    items = [usage(cost_usd_micros=50)]
    corrupted = totals(*items)
    corrupted.merge(Totals.of(cost_usd_micros=12_345, request_count=3))
    record = decode(insert(items[0]))
    report = one(plan(ORG_ID, DAY, {KEY: state(corrupted, {SHARD: record.position})}, items, [], {SHARD: None}))
    assert report.drift == Totals.of(cost_usd_micros=-12_345, request_count=-3)
    assert report.raise_to == {}  # nothing to raise: the aggregate's own position is the cut


def test_an_aggregate_behind_the_checkpoint_guards_its_records_and_needs_no_raise() -> None:
    mine, others = usage(cost_usd_micros=20), usage(app_id="other-app", cost_usd_micros=30)
    records = decode_all([insert(mine), insert(others)])
    # Its own record is under its applied position; the checkpoint is past another key's record.
    corrupted = totals(mine)
    corrupted.merge(Totals.of(cost_usd_micros=5))
    held = state(corrupted, {SHARD: records[0].position})
    report = one(
        plan(ORG_ID, DAY, {KEY: held}, [mine, others], [ShardRead(SHARD, records)], {SHARD: records[1].position})
    )
    assert report.drift == Totals.of(cost_usd_micros=-5)
    assert report.raise_to == {}


def test_a_record_of_the_key_at_or_before_the_cut_but_past_its_applied_position_is_guarded_by_the_repair() -> None:
    # Another reader (the Lambda, behind the long-running aggregator) had not counted the second record yet.
    items = [usage(cost_usd_micros=20), usage(cost_usd_micros=30)]
    records = decode_all([insert(u) for u in items])
    held = state(totals(items[0]), {SHARD: records[0].position})
    report = one(plan(ORG_ID, DAY, {KEY: held}, items, [ShardRead(SHARD, records)], {SHARD: records[1].position}))
    assert report.drift == totals(items[1])
    assert report.raise_to == {SHARD: records[1].position}


def test_an_item_the_index_does_not_show_yet_is_taken_from_its_stream_record() -> None:
    indexed, fresh = usage(cost_usd_micros=5), usage(cost_usd_micros=8)
    records = decode_all([insert(indexed), insert(fresh)])
    # The aggregator counted both; the index has only the first so far.
    held = state(totals(indexed, fresh), {SHARD: records[1].position})
    report = one(plan(ORG_ID, DAY, {KEY: held}, [indexed], [ShardRead(SHARD, records)], {SHARD: None}))
    assert not report.drifted


def test_a_hand_correction_in_flight_makes_its_keys_unsettled() -> None:
    before = usage(cost_usd_micros=40)
    after = with_changes(before, model_label="premium", cost_usd_micros=45)
    records = decode_all([insert(before), modify(before, after)])
    held = state(totals(before), {SHARD: records[0].position})
    reports = plan(ORG_ID, DAY, {KEY: held}, [after], [ShardRead(SHARD, records)], {SHARD: None})
    premium = AggregateKey(ORG_ID, DAY, "chatbot", "premium")
    assert one(reports).unsettled and one(reports, premium).unsettled


def test_other_orgs_and_days_are_not_this_days_business() -> None:
    ours = usage(cost_usd_micros=1)
    other_org = usage(org_id=OTHER_ORG_ID)
    other_day = usage(timestamp=ours.timestamp.replace(day=16))
    records = decode_all([insert(u) for u in (ours, other_org, other_day)])
    reports = plan(ORG_ID, DAY, {}, [ours], [ShardRead(SHARD, records)], {SHARD: None})
    assert [r.key for r in reports] == [KEY]
    assert one(reports).pending == 1


def test_each_shard_has_its_own_cut() -> None:
    a, b = usage(cost_usd_micros=3), usage(cost_usd_micros=4)
    in_one, in_two = decode(insert(a)), decode(insert(b))
    # Shard 1's record is counted (checkpoint past it); shard 2's is not (no checkpoint, not applied).
    reads = [ShardRead("shardId-1", [in_one]), ShardRead("shardId-2", [in_two])]
    report = one(plan(ORG_ID, DAY, {}, [a, b], reads, {"shardId-1": in_one.position, "shardId-2": None}))
    assert report.expected == totals(a)
    assert report.pending == 1
    assert report.raise_to == {"shardId-1": in_one.position}


def test_difference_is_counter_by_counter() -> None:
    a = Totals.of(cost_usd_micros=10, input_tokens=5, request_count=2)
    b = Totals.of(cost_usd_micros=3, output_tokens=1, request_count=2)
    assert difference(a, b) == Totals.of(cost_usd_micros=7, input_tokens=5, output_tokens=-1)
