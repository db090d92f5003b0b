"""aggregator/aggregates.py and catalog.model.org_local_day: an instant's org-local day, and aggregate keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.aggregates import AggregateKey, app_prefix, day_partition, org_local_day, parse_sort_key
from tests.unit.factories import ORG_ID


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        # New York, winter (EST, -5): the day turns at 05:00 UTC.
        ("2024-01-15T04:59:59", "America/New_York", date(2024, 1, 14)),
        ("2024-01-15T05:00:00", "America/New_York", date(2024, 1, 15)),
        # Summer (EDT, -4): at 04:00 UTC.
        ("2024-06-15T03:59:59", "America/New_York", date(2024, 6, 14)),
        ("2024-06-15T04:00:00", "America/New_York", date(2024, 6, 15)),
        # Spring forward, 2024-03-10 02:00 EST -> 03:00 EDT: a 23-hour day from 05:00 UTC to 04:00 UTC next day.
        ("2024-03-10T04:59:59", "America/New_York", date(2024, 3, 9)),
        ("2024-03-10T05:00:00", "America/New_York", date(2024, 3, 10)),
        ("2024-03-10T06:59:59", "America/New_York", date(2024, 3, 10)),  # 01:59:59 EST
        ("2024-03-10T07:00:00", "America/New_York", date(2024, 3, 10)),  # 03:00:00 EDT
        ("2024-03-11T03:59:59", "America/New_York", date(2024, 3, 10)),
        ("2024-03-11T04:00:00", "America/New_York", date(2024, 3, 11)),
        # Fall back, 2024-11-03 02:00 EDT -> 01:00 EST: a 25-hour day from 04:00 UTC to 05:00 UTC next day.
        ("2024-11-03T03:59:59", "America/New_York", date(2024, 11, 2)),
        ("2024-11-03T04:00:00", "America/New_York", date(2024, 11, 3)),
        ("2024-11-03T05:30:00", "America/New_York", date(2024, 11, 3)),  # 01:30 EDT
        ("2024-11-03T06:30:00", "America/New_York", date(2024, 11, 3)),  # 01:30 EST, the repeated hour
        ("2024-11-04T04:59:59", "America/New_York", date(2024, 11, 3)),  # 23:59:59 EST
        ("2024-11-04T05:00:00", "America/New_York", date(2024, 11, 4)),
        # Kiritimati, +14: the first place on Earth to start a day.
        ("2024-01-01T09:59:59", "Pacific/Kiritimati", date(2024, 1, 1)),
        ("2024-01-01T10:00:00", "Pacific/Kiritimati", date(2024, 1, 2)),
        # Pago Pago, -11: among the last.
        ("2024-01-01T10:59:59", "Pacific/Pago_Pago", date(2023, 12, 31)),
        ("2024-01-01T11:00:00", "Pacific/Pago_Pago", date(2024, 1, 1)),
        # Kiritimati moved from -10 to +14 and skipped 1994-12-31 entirely.
        ("1994-12-31T09:59:59", "Pacific/Kiritimati", date(1994, 12, 30)),
        ("1994-12-31T10:00:00", "Pacific/Kiritimati", date(1995, 1, 1)),
        # Half-hour offset (India, +5:30) and UTC itself.
        ("2024-06-14T18:29:59", "Asia/Kolkata", date(2024, 6, 14)),
        ("2024-06-14T18:30:00", "Asia/Kolkata", date(2024, 6, 15)),
        ("2024-06-14T23:59:59", "UTC", date(2024, 6, 14)),
    ],
)
def test_org_local_day(instant: str, zone: str, expected: date) -> None:
    assert org_local_day(utc(instant), zone) == expected


def test_one_instant_is_three_days_at_once() -> None:
    # 10:30 UTC on Jan 1: Jan 2 in Kiritimati, Jan 1 in London, Dec 31 in Pago Pago.
    instant = utc("2024-01-01T10:30:00")
    assert org_local_day(instant, "Pacific/Kiritimati") == date(2024, 1, 2)
    assert org_local_day(instant, "Europe/London") == date(2024, 1, 1)
    assert org_local_day(instant, "Pacific/Pago_Pago") == date(2023, 12, 31)


def test_the_offset_the_timestamp_was_written_with_does_not_matter() -> None:
    # 23:30 at +05:30 is 18:00 UTC: still the 14th in UTC, although the client wrote the 14th's evening in India.
    written_in_india = datetime(2024, 6, 14, 23, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert org_local_day(written_in_india, "UTC") == date(2024, 6, 14)
    # 00:30 +05:30 on the 15th is 19:00 UTC on the 14th.
    early = datetime(2024, 6, 15, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert org_local_day(early, "UTC") == date(2024, 6, 14)
    assert org_local_day(early, "Asia/Kolkata") == date(2024, 6, 15)


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        org_local_day(datetime(2024, 6, 15, 12, 0), "UTC")


instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC))
zones = st.sampled_from(
    ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
)


@given(instants, zones, zones)
def test_day_depends_only_on_the_instant(instant: datetime, zone: str, written_in: str) -> None:
    assert org_local_day(instant.astimezone(ZoneInfo(written_in)), zone) == org_local_day(instant, zone)


@given(instants, instants, zones)
def test_days_never_run_backwards_and_stay_within_a_day_of_utc(a: datetime, b: datetime, zone: str) -> None:
    first, second = sorted([a, b])
    assert org_local_day(first, zone) <= org_local_day(second, zone)
    # No offset exceeds 14 hours, so the local date is the UTC date or a neighbour.
    assert abs((org_local_day(a, zone) - a.date()).days) <= 1


def test_item_key_and_sort_key_round_trip() -> None:
    k = AggregateKey(ORG_ID, "2024-06-15", "chat-bot_2", "claude-3-5-sonnet")
    item = k.item_key()
    assert item == {
        "pk": {"S": f"ORG#{ORG_ID}#DAY#2024-06-15"},
        "sk": {"S": "APP#chat-bot_2#MODEL#claude-3-5-sonnet"},
    }
    assert item["pk"]["S"] == day_partition(ORG_ID, "2024-06-15")
    assert item["sk"]["S"].startswith(app_prefix("chat-bot_2"))
    assert parse_sort_key(item["sk"]["S"]) == ("chat-bot_2", "claude-3-5-sonnet")


def test_app_prefix_does_not_match_an_app_whose_id_extends_another() -> None:
    # begins_with(sk, app_prefix("chat")) must not return the aggregates of app "chatbot".
    chatbot_sk = AggregateKey(ORG_ID, "2024-06-15", "chatbot", "m").item_key()["sk"]["S"]
    assert not chatbot_sk.startswith(app_prefix("chat"))


def test_keys_order_by_org_then_day() -> None:
    later = AggregateKey(ORG_ID, "2024-06-16", "a", "m")
    earlier = AggregateKey(ORG_ID, "2024-06-15", "z", "z")
    assert sorted([later, earlier]) == [earlier, later]
