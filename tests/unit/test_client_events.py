"""UsageEvent: what the API would refuse for its shape is refused in the caller's hands, at record()."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from costkeeper_client import CostKeeperClient, InvalidUsage, UsageEvent
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi


@pytest.mark.parametrize(
    "fields",
    [
        {"input_tokens": -1},
        {"output_tokens": 10**9 + 1},
        {"cache_read_tokens": True},
        {"cache_write_tokens": 1.0},
        {"timestamp": datetime(2024, 6, 15, 12, 0)},  # naive: the API needs the offset
        {"request_id": "not-a-uuid"},
        {"model_label": ""},
        {"model_label": "x" * 65},
        {"cache_write_tokens_by_ttl": {"5m": -3}},
    ],
)
def test_events_the_api_would_refuse_are_refused_at_once(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidUsage):
        UsageEvent(**{"model_label": "premium", **fields})


def test_each_event_gets_its_own_request_id_and_the_api_form_lowercases_a_given_one() -> None:
    first, second = UsageEvent("premium"), UsageEvent("premium")
    assert first.request_id != second.request_id
    assert uuid.UUID(first.request_id).version == 4
    given = "A3F1C2D4-0000-4000-8000-0000000000AB"
    assert UsageEvent("premium", request_id=given).request_id == given.lower()


def test_the_timestamp_keeps_its_offset_in_iso_8601() -> None:
    paris_summer = timezone(timedelta(hours=2))
    event = UsageEvent("premium", timestamp=datetime(2024, 6, 15, 14, 0, tzinfo=paris_summer))
    assert event.api_item()["timestamp"] == "2024-06-15T14:00:00+02:00"
    assert UsageEvent("premium").timestamp.tzinfo is not None
    assert datetime.now(UTC) - UsageEvent("premium").timestamp < timedelta(minutes=1)


def test_record_raises_in_the_callers_thread_and_sends_nothing() -> None:
    api = FakeApi()
    with CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options()) as keeper:
        with pytest.raises(InvalidUsage):
            keeper.record("premium", input_tokens=-5)
        assert keeper.stats().recorded == 0
    assert api.posts == []
