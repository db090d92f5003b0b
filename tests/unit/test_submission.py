"""ingest_api/submission.py::check_against: model label, clock skew and the org-local day window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_api.submission import Rejection, UsageSubmission, check_against, to_event
from tests.unit.factories import ORG_ID, app, org

REQUEST_ID = "0F8FAD5B-D9CB-469F-A165-70867728950E"
SKEW_S = 60
GRACE_S = 900
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def submission(timestamp: datetime, label: str = "standard") -> UsageSubmission:
    return UsageSubmission(request_id=REQUEST_ID, model_label=label, input_tokens=10, timestamp=timestamp)


def verdict(
    timestamp: datetime, now: datetime, zone: str = "UTC", grace_s: int = GRACE_S, label: str = "standard"
) -> str:
    """'ok' or the rejection code."""
    try:
        check_against(submission(timestamp, label), org(timezone=zone), app(), now, SKEW_S, grace_s)
    except Rejection as exc:
        return exc.code
    return "ok"


def test_unknown_label_is_rejected_and_names_the_known_ones() -> None:
    with pytest.raises(Rejection) as info:
        check_against(
            submission(utc("2024-06-15T12:00:00"), "gpt-4"), org(), app(), utc("2024-06-15T12:00:00"), 60, 900
        )
    assert info.value.code == "UNKNOWN_MODEL_LABEL"
    assert "premium, standard, economy" in info.value.message


def test_label_check_is_case_sensitive() -> None:
    assert verdict(utc("2024-06-15T12:00:00"), utc("2024-06-15T12:00:00"), label="Standard") == "UNKNOWN_MODEL_LABEL"


def test_now_and_the_recent_past_of_today_are_accepted() -> None:
    now = utc("2024-06-15T12:00:00")
    assert verdict(now, now) == "ok"
    assert verdict(utc("2024-06-15T00:00:00"), now) == "ok"


def test_future_within_skew_is_accepted_beyond_is_rejected() -> None:
    now = utc("2024-06-15T12:00:00")
    assert verdict(now + timedelta(seconds=SKEW_S), now) == "ok"
    assert verdict(now + timedelta(seconds=SKEW_S, microseconds=1), now) == "TIMESTAMP_IN_FUTURE"
    assert verdict(now + timedelta(days=1), now) == "TIMESTAMP_IN_FUTURE"


def test_future_check_compares_instants_not_wall_clocks() -> None:
    now = utc("2024-06-15T12:00:00")
    # 13:30 at +02:00 is 11:30 UTC: in the past although its wall clock is ahead.
    assert verdict(datetime(2024, 6, 15, 13, 30, tzinfo=timezone(timedelta(hours=2))), now) == "ok"
    # 08:30 at -04:00 is 12:30 UTC: in the future although its wall clock is behind.
    assert verdict(datetime(2024, 6, 15, 8, 30, tzinfo=timezone(timedelta(hours=-4))), now) == "TIMESTAMP_IN_FUTURE"


def test_previous_day_is_rejected_after_the_grace() -> None:
    now = utc("2024-06-15T12:00:00")
    assert verdict(utc("2024-06-14T23:59:59.999999"), now) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_previous_day_is_accepted_within_the_grace_after_midnight() -> None:
    now = utc("2024-06-15T00:10:00")
    assert verdict(utc("2024-06-14T23:59:00"), now) == "ok"
    # The whole previous day, not just its last minutes: a long call that started early still counts.
    assert verdict(utc("2024-06-14T00:00:00"), now) == "ok"
    # But not the day before it.
    assert verdict(utc("2024-06-13T23:59:59"), now) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_grace_ends_exactly_grace_seconds_after_midnight() -> None:
    yesterday = utc("2024-06-14T23:00:00")
    assert verdict(yesterday, utc("2024-06-15T00:00:00") + timedelta(seconds=GRACE_S - 1)) == "ok"
    assert verdict(yesterday, utc("2024-06-15T00:00:00") + timedelta(seconds=GRACE_S)) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_zero_grace_accepts_only_today() -> None:
    now = utc("2024-06-15T00:00:00")
    assert verdict(now, now, grace_s=0) == "ok"
    assert verdict(now - timedelta(microseconds=1), now, grace_s=0) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_rejection_message_names_the_org_local_day() -> None:
    with pytest.raises(Rejection) as info:
        check_against(
            submission(utc("2024-06-14T12:00:00")),
            org(timezone="Asia/Tokyo"),
            app(),
            utc("2024-06-15T12:00:00"),
            60,
            900,
        )
    assert "2024-06-15 in Asia/Tokyo" in info.value.message


# --- org time zones -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "midnight_utc"),
    [
        ("America/New_York", "2024-06-15T04:00:00"),  # EDT, -4
        ("Asia/Kolkata", "2024-06-14T18:30:00"),  # +5:30
        ("Pacific/Kiritimati", "2024-06-14T10:00:00"),  # +14
        ("Pacific/Pago_Pago", "2024-06-15T11:00:00"),  # -11
    ],
)
def test_day_window_follows_the_org_time_zone(zone: str, midnight_utc: str) -> None:
    midnight = utc(midnight_utc)  # org-local midnight starting 2024-06-15
    later = midnight + timedelta(hours=6)
    assert verdict(midnight, later, zone) == "ok"
    assert verdict(midnight - timedelta(microseconds=1), later, zone) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"
    # Within the grace after that midnight, the whole previous org-local day is accepted, and no more.
    early = midnight + timedelta(seconds=GRACE_S - 1)
    assert verdict(midnight - timedelta(hours=24), early, zone) == "ok"
    assert verdict(midnight - timedelta(hours=24, microseconds=1), early, zone) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_same_utc_instant_is_today_in_one_org_and_yesterday_in_another() -> None:
    now = utc("2024-06-15T12:00:00")  # 02:00 on the 16th in Kiritimati, 01:00 on the 15th in Pago Pago
    event = utc("2024-06-15T10:30:00")  # 00:30 on the 16th in Kiritimati, 23:30 on the 14th in Pago Pago
    assert verdict(event, now, "Pacific/Kiritimati") == "ok"
    assert verdict(event, now, "UTC") == "ok"
    assert verdict(event, now, "Pacific/Pago_Pago") == "TIMESTAMP_OUTSIDE_DAY_WINDOW"
    assert verdict(event, now, "Pacific/Pago_Pago", grace_s=3600 + 1) == "ok"


def test_previous_day_after_spring_forward_starts_at_the_standard_time_midnight() -> None:
    # 2024-03-10 in New York has 23 hours: from 05:00 UTC (EST) to 04:00 UTC on the 11th (EDT).
    now = utc("2024-03-11T04:30:00")  # 00:30 EDT on the 11th, within a one-hour grace
    assert verdict(utc("2024-03-10T05:00:00"), now, "America/New_York", 3600) == "ok"
    assert verdict(utc("2024-03-10T04:59:59"), now, "America/New_York", 3600) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_previous_day_on_spring_forward_day() -> None:
    now = utc("2024-03-10T05:30:00")  # 00:30 EST on the 10th
    assert verdict(utc("2024-03-09T05:00:00"), now, "America/New_York", 3600) == "ok"
    assert verdict(utc("2024-03-09T04:59:59"), now, "America/New_York", 3600) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_previous_day_after_fall_back_starts_at_the_daylight_time_midnight() -> None:
    # 2024-11-03 in New York has 25 hours: from 04:00 UTC (EDT) to 05:00 UTC on the 4th (EST).
    now = utc("2024-11-04T05:30:00")  # 00:30 EST on the 4th
    assert verdict(utc("2024-11-03T04:00:00"), now, "America/New_York", 3600) == "ok"
    assert verdict(utc("2024-11-03T03:59:59"), now, "America/New_York", 3600) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_grace_is_elapsed_time_not_wall_clock_time_on_fall_back_day() -> None:
    yesterday = utc("2024-11-03T03:00:00")  # 23:00 EDT on the 2nd
    # 01:30 EDT: 1.5 h after midnight, inside a 2 h grace.
    assert verdict(yesterday, utc("2024-11-03T05:30:00"), "America/New_York", 7200) == "ok"
    # 01:30 EST, the repeated hour: the wall clock says 1.5 h, but 2.5 h have passed.
    assert verdict(yesterday, utc("2024-11-03T06:30:00"), "America/New_York", 7200) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_verdict_does_not_depend_on_the_zone_now_is_expressed_in() -> None:
    # The same instants as above, given in the org's own zone (fold=1 is the second 01:30).
    yesterday = datetime(2024, 11, 2, 23, 0, tzinfo=NEW_YORK)
    second_0130 = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK)
    # (== across zones is always False for a time in a fold, by PEP 495; compare epoch seconds.)
    assert second_0130.timestamp() == utc("2024-11-03T06:30:00").timestamp()
    assert verdict(yesterday, second_0130, "America/New_York", 7200) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))
zones = st.sampled_from(["UTC", "America/New_York", "Europe/London", "Pacific/Kiritimati", "Pacific/Pago_Pago"])


@given(instants, st.integers(-3 * 86400, 120), zones, zones, st.integers(0, 7200))
def test_verdict_depends_only_on_instants(
    now: datetime, offset_s: int, org_zone: str, written_in: str, grace_s: int
) -> None:
    event = now + timedelta(seconds=offset_s)
    expected = verdict(event, now, org_zone, grace_s)
    zone = ZoneInfo(written_in)
    assert verdict(event.astimezone(zone), now.astimezone(zone), org_zone, grace_s) == expected


@given(instants, st.integers(0, 86400), zones, st.integers(0, 7200))
def test_window_accepts_all_of_today_up_to_now(now: datetime, back_s: int, zone: str, grace_s: int) -> None:
    local_now = now.astimezone(ZoneInfo(zone))
    event = now - timedelta(seconds=back_s)
    same_local_day = event.astimezone(ZoneInfo(zone)).date() == local_now.date()
    if same_local_day:
        assert verdict(event, now, zone, grace_s) == "ok"
    elif (event.astimezone(ZoneInfo(zone)).date() - local_now.date()).days < -1:
        assert verdict(event, now, zone, grace_s) == "TIMESTAMP_OUTSIDE_DAY_WINDOW"


def test_to_event_normalises_the_request_id_and_keeps_the_counts() -> None:
    accepted = utc("2024-06-15T12:00:01")
    event = to_event(submission(utc("2024-06-15T12:00:00")), ORG_ID, "chatbot", accepted)
    assert event.request_id == REQUEST_ID.lower()
    assert (event.org_id, event.app_id, event.model_label) == (ORG_ID, "chatbot", "standard")
    assert (event.input_tokens, event.output_tokens, event.accepted_at) == (10, 0, accepted)
