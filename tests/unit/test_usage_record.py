"""aggregator/usage_record.py: the usage item contract between worker and aggregator."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.aggregates import AggregateKey
from aggregator.rollup import rollup
from aggregator.stream_record import decode_all
from aggregator.usage_record import UnreadableUsageItem, UsageRecord, usage_key
from catalog.model import is_slug
from tests.unit.factories import ORG_ID, OTHER_ORG_ID, usage

REQUEST_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_item_round_trips_through_a_stream_image() -> None:
    record = usage(
        timestamp=datetime(2024, 6, 15, 23, 59, 59, 123456, tzinfo=UTC),
        input_tokens=10**9,
        output_tokens=7,
        cache_read_tokens=3,
        cache_write_tokens=2,
        cost_usd_micros=10**15,
        price_version=42,
    )
    assert UsageRecord.from_image(record.to_item()) == record


def test_round_trip_keeps_the_clients_offset_and_the_instant() -> None:
    written_at = datetime(2024, 6, 15, 8, 0, tzinfo=timezone(timedelta(hours=-7)))
    back = UsageRecord.from_image(usage(timestamp=written_at).to_item())
    assert back.timestamp == written_at
    assert back.timestamp.utcoffset() == timedelta(hours=-7)


def test_item_is_plain_attribute_values() -> None:
    record = usage(input_tokens=1_000, cost_usd_micros=6_000)
    item = record.to_item()
    assert item["pk"] == usage_key(record.org_id, record.app_id, record.request_id)["pk"]
    assert item["input_tokens"] == {"N": "1000"}
    assert item["cost_usd_micros"] == {"N": "6000"}
    assert item["timestamp"] == {"S": record.timestamp.isoformat()}
    assert all(len(value) == 1 and next(iter(value)) in {"S", "N"} for value in item.values())


def test_expiry_is_written_only_when_given_and_ignored_on_read() -> None:
    record = usage()
    assert "expires_at" not in record.to_item()
    item = record.to_item(expires_at_s=1_720_000_000)
    assert item["expires_at"] == {"N": "1720000000"}
    assert UsageRecord.from_image(item) == record


def test_usage_key_is_scoped_by_org_and_app() -> None:
    same_request = {
        usage_key(ORG_ID, "chatbot", REQUEST_ID)["pk"]["S"],
        usage_key(ORG_ID, "search", REQUEST_ID)["pk"]["S"],
        usage_key(OTHER_ORG_ID, "chatbot", REQUEST_ID)["pk"]["S"],
    }
    # One request id reused by three tenants is three items: none can claim (and so suppress) another's.
    assert len(same_request) == 3
    assert usage_key(ORG_ID, "chatbot", REQUEST_ID) == {"pk": {"S": f"{ORG_ID}#chatbot#{REQUEST_ID}"}}


slugs = st.from_regex(r"\A[a-z0-9](?:[a-z0-9_-]{0,10}[a-z0-9])?\Z").filter(is_slug)


@given(slugs, slugs, st.uuids(), st.uuids())
def test_usage_keys_of_valid_ids_are_unambiguous(app_a: str, app_b: str, req_a: object, req_b: object) -> None:
    # Valid app ids and request ids carry no '#', so two different (app, request) pairs never share a key.
    a = usage_key(ORG_ID, app_a, str(req_a))
    b = usage_key(ORG_ID, app_b, str(req_b))
    assert (a == b) == ((app_a, str(req_a)) == (app_b, str(req_b)))


def test_aggregate_key_uses_the_org_time_zone_not_the_timestamp_offset() -> None:
    # 20:00 at -07:00 is 03:00 UTC next day; a Tokyo org counts it on Tokyo's date (12:00 on the 16th).
    record = usage(
        timestamp=datetime(2024, 6, 15, 20, 0, tzinfo=timezone(timedelta(hours=-7))),
        org_timezone="Asia/Tokyo",
        app_id="search",
        model_label="economy",
    )
    assert record.aggregate_key == AggregateKey(ORG_ID, "2024-06-16", "search", "economy")
    assert replace(record, org_timezone="America/Los_Angeles").aggregate_key.day == "2024-06-15"


def test_from_image_rejects_a_missing_attribute() -> None:
    item = usage().to_item()
    del item["cost_usd_micros"]
    with pytest.raises(KeyError):
        UsageRecord.from_image(item)


def test_items_carry_their_schema_version() -> None:
    from aggregator.usage_record import READABLE_VERSIONS, SCHEMA_VERSION

    assert usage().to_item()["schema_version"] == {"N": str(SCHEMA_VERSION)}
    assert SCHEMA_VERSION in READABLE_VERSIONS and SCHEMA_VERSION - 1 in READABLE_VERSIONS


def test_an_item_of_the_previous_version_still_reads_and_counts() -> None:
    # Version 1: written before items had a schema_version, and (as if) before cache writes were a category.
    record = usage(input_tokens=1_000, cache_read_tokens=7, cost_usd_micros=6_000)
    item = record.to_item()
    del item["schema_version"]
    del item["cache_write_tokens"]
    back = UsageRecord.from_image(item)
    assert back.tokens.cache_write_tokens == 0
    assert back == record
    deltas = rollup(decode_all([insert_image(item)]))
    assert [t.as_dict()["cost_usd_micros"] for t in deltas.values()] == [6_000]
    assert [t.tokens["cache_read_tokens"] for t in deltas.values()] == [7]


def test_an_item_of_a_newer_version_is_not_read() -> None:
    # Readers deploy first; an item no reader knows is reported as malformed rather than half-counted.
    item = usage().to_item()
    item["schema_version"] = {"N": "99"}
    with pytest.raises(UnreadableUsageItem):
        UsageRecord.from_image(item)
    assert decode_all([insert_image(item)])[0].malformed


def insert_image(item: dict[str, Any]) -> dict[str, Any]:
    return {"eventName": "INSERT", "dynamodb": {"NewImage": item, "SequenceNumber": "1"}}


def test_items_are_indexed_by_org_local_day_in_buckets() -> None:
    from aggregator.usage_record import DAY_BUCKETS, DAY_INDEX_ATTRIBUTE, bucket_of, day_bucket

    # 23:30 in Los Angeles on the 15th is the 16th in UTC: the index key follows the org's day, as aggregates do.
    record = usage(
        timestamp=datetime(2024, 6, 16, 6, 30, tzinfo=UTC), org_timezone="America/Los_Angeles", request_id=REQUEST_ID
    )
    bucket = bucket_of(REQUEST_ID)
    assert 0 <= bucket < DAY_BUCKETS
    assert record.to_item()[DAY_INDEX_ATTRIBUTE] == {"S": day_bucket(ORG_ID, "2024-06-15", bucket)}
    # Stable across processes and versions (written into items, queried by another process): CRC-32 of the id.
    assert bucket == 4_104_489_504 % DAY_BUCKETS
    spread = {bucket_of(f"00000000-0000-4000-8000-{i:012d}") for i in range(500)}
    assert spread == set(range(DAY_BUCKETS))


def test_an_item_of_version_3_without_its_index_key_still_reads() -> None:
    record = usage()
    item = record.to_item()
    item["schema_version"] = {"N": "3"}
    del item["day_bucket"]
    assert UsageRecord.from_image(item) == record
