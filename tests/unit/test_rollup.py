"""aggregator/rollup.py: stream records -> per-key deltas, and the per-key runs one guarded update counts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aggregator import rollup as decoded_rollup
from aggregator.aggregates import COUNTERS, AggregateKey, Totals
from aggregator.stream_record import Change, decode, decode_all
from aggregator.usage_record import UsageRecord
from tests.unit.factories import ORG_ID, OTHER_ORG_ID, insert, modify, remove, usage, with_changes

NOON = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


# The records below are raw stream records, as GetRecords and Lambda deliver them; the readers decode each once
# (aggregator/stream_record.py) and roll up the decoded ones. These helpers do the same.
def rollup(records: list[Mapping[str, Any]]) -> dict[AggregateKey, Totals]:
    return decoded_rollup.rollup(decode_all(records))


def changes(record: Mapping[str, Any]) -> list[Change]:
    return list(decode(record).changes)


def malformed(records: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if decode(r).malformed]


def totals_of(record: UsageRecord, sign: int = 1) -> Totals:
    return Totals.of(
        cost_usd_micros=sign * record.cost_usd_micros,
        **{name: sign * count for name, count in record.tokens.counts().items()},
        request_count=sign,
    )


def key(
    label: str = "standard", day: str = "2024-06-15", app_id: str = "chatbot", org_id: str = ORG_ID
) -> AggregateKey:
    return AggregateKey(org_id, day, app_id, label)


# --- rollup -------------------------------------------------------------------------------------------------------


def test_insert_adds_every_counter_and_one_request() -> None:
    a = usage(input_tokens=10, output_tokens=20, cache_read_tokens=30, cache_write_tokens=40, cost_usd_micros=77)
    assert rollup([insert(a)]) == {key(): totals_of(a)}


def test_inserts_on_one_key_sum() -> None:
    a = usage(input_tokens=10, output_tokens=1, cost_usd_micros=5)
    b = usage(input_tokens=7, output_tokens=3, cache_read_tokens=2, cost_usd_micros=11)
    assert rollup([insert(a), insert(b)]) == {
        key(): Totals.of(
            cost_usd_micros=16,
            input_tokens=17,
            output_tokens=4,
            cache_read_tokens=2,
            cache_write_tokens=0,
            request_count=2,
        )
    }


def test_inserts_on_different_keys_stay_apart() -> None:
    records = [
        usage(),
        usage(model_label="premium"),
        usage(app_id="search"),
        usage(org_id=OTHER_ORG_ID),
        usage(timestamp=NOON + timedelta(days=1)),
    ]
    deltas = rollup([insert(r) for r in records])
    assert deltas == {
        key(): totals_of(records[0]),
        key(label="premium"): totals_of(records[1]),
        key(app_id="search"): totals_of(records[2]),
        key(org_id=OTHER_ORG_ID): totals_of(records[3]),
        key(day="2024-06-16"): totals_of(records[4]),
    }


def test_insert_is_keyed_by_org_local_day() -> None:
    # 02:00 UTC on the 15th is still the 14th in New York.
    r = usage(timestamp=datetime(2024, 6, 15, 2, 0, tzinfo=UTC), org_timezone="America/New_York")
    assert list(rollup([insert(r)])) == [key(day="2024-06-14")]


def test_modify_moves_the_difference_on_the_same_key() -> None:
    old = usage(input_tokens=100, output_tokens=50, cache_read_tokens=5, cost_usd_micros=900)
    new = with_changes(old, input_tokens=120, output_tokens=40, cache_read_tokens=5, cost_usd_micros=1000)
    assert rollup([modify(old, new)]) == {
        key(): Totals.of(
            cost_usd_micros=100,
            input_tokens=20,
            output_tokens=-10,
            cache_read_tokens=0,
            cache_write_tokens=0,
            request_count=0,
        )
    }


def test_modify_after_insert_leaves_the_new_values() -> None:
    old = usage(input_tokens=100, cost_usd_micros=900)
    new = with_changes(old, input_tokens=150, cost_usd_micros=1_350)
    assert rollup([insert(old), modify(old, new)]) == {key(): totals_of(new)}


def test_modify_that_changes_the_label_moves_the_request_between_keys() -> None:
    old = usage(model_label="premium", cost_usd_micros=5_000)
    new = with_changes(old, model_label="economy", cost_usd_micros=500)
    assert rollup([modify(old, new)]) == {
        key(label="premium"): totals_of(old, -1),
        key(label="economy"): totals_of(new),
    }


def test_modify_that_changes_the_day_moves_the_request_between_days() -> None:
    old = usage(timestamp=NOON)
    new = with_changes(old, timestamp=NOON - timedelta(days=1))
    assert rollup([modify(old, new)]) == {
        key(day="2024-06-15"): totals_of(old, -1),
        key(day="2024-06-14"): totals_of(new),
    }


def test_modify_of_the_org_time_zone_alone_can_change_the_day() -> None:
    # 23:30 UTC is the 15th in UTC but the 16th in Tokyo.
    old = usage(timestamp=datetime(2024, 6, 15, 23, 30, tzinfo=UTC))
    new = with_changes(old, org_timezone="Asia/Tokyo")
    assert rollup([modify(old, new)]) == {
        key(day="2024-06-15"): totals_of(old, -1),
        key(day="2024-06-16"): totals_of(new),
    }


def test_insert_then_modify_to_another_label_leaves_only_the_new_label() -> None:
    old = usage(model_label="premium")
    new = with_changes(old, model_label="economy")
    # The premium key nets to zero and is dropped, not written as a zero delta.
    assert rollup([insert(old), modify(old, new)]) == {key(label="economy"): totals_of(new)}


def test_modify_that_changes_nothing_counted_is_dropped() -> None:
    old = usage()
    new = with_changes(old, written_at_ms=old.written_at_ms + 5_000, price_version=old.price_version + 1)
    assert rollup([modify(old, new)]) == {}


def test_modify_without_old_image_is_ignored() -> None:
    # A NEW_IMAGE-only stream view cannot say what to subtract; guessing would double count.
    record = modify(usage(), usage())
    del record["dynamodb"]["OldImage"]
    assert changes(record) == []
    assert rollup([record]) == {}


def test_remove_is_ignored() -> None:
    r = usage()
    assert changes(remove(r)) == []
    assert rollup([remove(r)]) == {}
    # TTL expiry of an item already counted must not rewrite history.
    assert rollup([insert(r), remove(r)]) == {key(): totals_of(r)}


def test_unknown_events_and_records_without_images_are_ignored() -> None:
    r = usage()
    assert rollup([{"eventName": "INSERT", "dynamodb": {"Keys": r.to_item()}}, {"eventName": "TTL"}, {}]) == {}


def test_deltas_that_cancel_are_dropped() -> None:
    a = usage(input_tokens=10, cost_usd_micros=30)
    b = with_changes(a, input_tokens=20, cost_usd_micros=60)
    # a -> b -> a: the key nets to exactly the one insert.
    assert rollup([insert(a), modify(a, b), modify(b, a)]) == {key(): totals_of(a)}
    # Without the insert everything cancels.
    assert rollup([modify(a, b), modify(b, a)]) == {}


def test_totals_item_round_trip_and_merge() -> None:
    t = Totals.of(**{name: i + 1 for i, name in enumerate(COUNTERS)})
    item = {name: {"N": str(value)} for name, value in t.as_dict().items()}
    assert Totals.from_item(item) == t
    # Missing attributes (an aggregate item written before a counter existed) read as zero.
    assert Totals.from_item({"cost_usd_micros": {"N": "9"}}) == Totals.of(cost_usd_micros=9)
    merged = Totals.of(**dict.fromkeys(COUNTERS, 1))
    merged.merge(t)
    assert merged == Totals.of(**{name: i + 2 for i, name in enumerate(COUNTERS)})
    assert Totals().is_zero()
    assert not Totals.of(request_count=-1).is_zero()


label_pool = st.sampled_from(["l1", "l2", "l3", "l4", "l5"])
app_pool = st.sampled_from(["chatbot", "search"])
day_pool = st.integers(min_value=0, max_value=2)


@st.composite
def usage_records(draw: st.DrawFn) -> UsageRecord:
    return usage(
        model_label=draw(label_pool),
        app_id=draw(app_pool),
        timestamp=NOON + timedelta(days=draw(day_pool)),
        input_tokens=draw(st.integers(0, 1_000)),
        cost_usd_micros=draw(st.integers(0, 10_000)),
    )


@st.composite
def stream_records(draw: st.DrawFn) -> Mapping[str, Any]:
    event = draw(st.sampled_from(["INSERT", "INSERT", "MODIFY", "REMOVE"]))
    if event == "INSERT":
        return insert(draw(usage_records()))
    if event == "MODIFY":
        return modify(draw(usage_records()), draw(usage_records()))
    return remove(draw(usage_records()))


@given(st.lists(stream_records(), max_size=40))
def test_key_runs_split_the_rollup_by_key_in_stream_order(records: list[Mapping[str, Any]]) -> None:
    decoded = decode_all(records)
    runs = decoded_rollup.key_runs(decoded)
    assert [r.key for r in runs] == sorted({u.aggregate_key for r in decoded for _, u in r.changes})
    for run in runs:
        assert [s.position for s in run.steps] == sorted(s.position for s in run.steps)
    # Each key's run adds up to that key's delta (a run that nets to zero is kept: its guard must move).
    assert {r.key: r.totals() for r in runs if not r.totals().is_zero()} == rollup(records)


def test_an_item_that_is_not_a_usage_record_is_skipped_and_reported() -> None:
    # A hand-written item in the usage table must not stall the shard: it contributes nothing, every time.
    good = insert(usage(cost_usd_micros=7))
    junk: dict[str, Any] = {"eventName": "INSERT", "dynamodb": {"NewImage": {"pk": {"S": "x"}}, "SequenceNumber": "2"}}
    assert changes(junk) == []
    assert malformed([good, junk]) == [junk]
    totals = rollup([good, junk])
    assert [t.cost_usd_micros for t in totals.values()] == [7]
    fixed = {
        "eventName": "MODIFY",
        "dynamodb": {
            "OldImage": junk["dynamodb"]["NewImage"],
            "NewImage": good["dynamodb"]["NewImage"],
            "SequenceNumber": "3",
        },
    }
    assert [sign for sign, _ in changes(fixed)] == [1]
