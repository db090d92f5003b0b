"""workers/message.py: the queue message schema, poison detection, and the size estimate used for packing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.factories import ORG_ID
from workers.message import (
    MAX_EVENTS_PER_MESSAGE,
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    PoisonMessage,
    UsageEvent,
    decode,
    encode,
    encoded_size,
)

SQS_MAX_BODY_BYTES = 256 * 1024


def event(**overrides: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "org_id": ORG_ID,
        "app_id": "chatbot",
        "request_id": str(uuid.uuid4()),
        "model_label": "standard",
        "input_tokens": 1_000,
        "output_tokens": 200,
        "timestamp": datetime(2024, 6, 15, 12, 0, tzinfo=UTC),
        "accepted_at": datetime(2024, 6, 15, 12, 0, 0, 5_000, tzinfo=UTC),
    }
    fields.update(overrides)
    return UsageEvent(**fields)


def raw_event(**overrides: Any) -> dict[str, Any]:
    return {**json.loads(event().model_dump_json()), **overrides}


def test_round_trip_preserves_every_event_in_order() -> None:
    events = [
        event(),
        event(
            app_id="search-2",
            model_label="premium",
            cache_read_tokens=10**9,
            cache_write_tokens=3,
            timestamp=datetime(2024, 6, 15, 8, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-4))),
        ),
        event(input_tokens=0, output_tokens=0),
    ]
    decoded = decode(encode(events))
    assert decoded.v == SCHEMA_VERSION
    assert decoded.events == events
    assert decoded.events[1].timestamp.utcoffset() == timedelta(hours=-4)


def test_a_full_message_round_trips() -> None:
    events = [event() for _ in range(MAX_EVENTS_PER_MESSAGE)]
    assert decode(encode(events)).events == events


def test_encoding_refuses_what_decoding_would_call_poison() -> None:
    with pytest.raises(ValueError, match="at most 500"):
        encode([event()] * (MAX_EVENTS_PER_MESSAGE + 1))
    with pytest.raises(ValueError, match="at least 1"):
        encode([])


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        "null",
        "{}",
        '{"v": 1}',
        '{"v": 1, "events": []}',
        '{"v": 3, "events": [EVENT]}',  # newer than this worker reads
        '{"v": 1, "events": [EVENT], "extra": true}',
        '{"v": 1, "events": [EVENT, "not an event"]}',
        '{"v": 1, "events": [EVENT]',  # truncated
    ],
)
def test_junk_and_schema_violations_are_poison(body: str) -> None:
    with pytest.raises(PoisonMessage):
        decode(body.replace("EVENT", json.dumps(raw_event())))


@pytest.mark.parametrize(
    "overrides",
    [
        {"org_id": ORG_ID.upper()},
        {"org_id": "acme"},
        {"app_id": "Chat#Bot"},
        {"app_id": "chatbot\n"},
        {"model_label": "a#b"},
        {"request_id": "0F8FAD5B-D9CB-469F-A165-70867728950E"},  # the API lower-cases; anything else is a bug
        {"request_id": "not-a-uuid"},
        {"input_tokens": -1},
        {"output_tokens": 10**9 + 1},
        {"cache_read_tokens": "5"},  # strict: no numeric strings
        {"cache_write_tokens": 1.5},
        {"timestamp": "2024-06-15T12:00:00"},  # naive
        {"timestamp": "yesterday"},
        {"surprise": 1},
    ],
)
def test_invalid_events_are_poison(overrides: dict[str, Any]) -> None:
    body = json.dumps({"v": 1, "events": [raw_event(), raw_event(**overrides)]})
    with pytest.raises(PoisonMessage):
        decode(body)


def test_a_missing_field_is_poison() -> None:
    raw = raw_event()
    del raw["timestamp"]
    with pytest.raises(PoisonMessage, match="timestamp"):
        decode(json.dumps({"v": 1, "events": [raw]}))


def test_too_many_events_is_poison() -> None:
    body = json.dumps({"v": 1, "events": [raw_event()] * (MAX_EVENTS_PER_MESSAGE + 1)})
    with pytest.raises(PoisonMessage):
        decode(body)


def test_poison_is_a_value_error_with_a_bounded_message() -> None:
    body = json.dumps({"v": 1, "events": [raw_event(input_tokens=-i - 1) for i in range(MAX_EVENTS_PER_MESSAGE)]})
    with pytest.raises(ValueError) as info:  # noqa: PT011 - the subclass is asserted below
        decode(body)
    assert isinstance(info.value, PoisonMessage)
    assert len(str(info.value)) <= 1000


def test_encoded_size_is_the_events_json_plus_a_comma() -> None:
    e = event()
    assert encoded_size(e) == len(e.model_dump_json()) + 1


events_strategy = st.builds(
    event,
    app_id=st.sampled_from(["a", "chatbot", "x" * 64]),
    model_label=st.sampled_from(["m", "claude-3-5-sonnet", "y" * 64]),
    input_tokens=st.integers(0, 10**9),
    output_tokens=st.integers(0, 10**9),
    cache_read_tokens=st.integers(0, 10**9),
    cache_write_tokens=st.integers(0, 10**9),
    timestamp=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]),
    ),
)


@given(st.lists(events_strategy, min_size=1, max_size=40))
def test_sum_of_encoded_sizes_tracks_the_real_length(events: list[UsageEvent]) -> None:
    body = encode(events)
    estimate = sum(encoded_size(e) for e in events)
    # The envelope {"v":1,"events":[...]} adds a fixed few bytes, minus the one comma too many in the estimate.
    assert 0 <= len(body.encode()) - estimate <= 32
    # Ids, labels and timestamps are ASCII: characters and bytes agree, so the estimate is in bytes.
    assert len(body.encode()) == len(body)


def test_envelope_overhead_is_constant() -> None:
    one = [event()]
    many = [event() for _ in range(MAX_EVENTS_PER_MESSAGE)]
    overhead_one = len(encode(one)) - sum(encoded_size(e) for e in one)
    overhead_many = len(encode(many)) - sum(encoded_size(e) for e in many)
    assert overhead_one == overhead_many


def test_estimated_limit_leaves_room_under_the_sqs_body_limit() -> None:
    # A message packed up to MAX_MESSAGE_BYTES by estimate still fits SQS, with room for message attributes.
    overhead = len(encode([event()])) - encoded_size(event())
    assert MAX_MESSAGE_BYTES + overhead < SQS_MAX_BODY_BYTES - 8 * 1024


def test_a_message_written_before_a_category_existed_reads_it_as_zero() -> None:
    # An older API's message: schema version 1 with only the categories it knew. Queued (or dead-lettered) messages
    # outlive deployments, so the worker must keep reading them.
    old = {k: v for k, v in raw_event().items() if k not in ("cache_read_tokens", "cache_write_tokens")}
    decoded = decode(json.dumps({"v": 1, "events": [old]}))
    assert decoded.events[0].cache_read_tokens == 0
    assert decoded.events[0].cache_write_tokens == 0
    assert decoded.events[0].input_tokens == 1_000


def test_every_readable_version_decodes_and_the_written_one_is_readable() -> None:
    from workers.message import READABLE_VERSIONS, SCHEMA_VERSION

    assert SCHEMA_VERSION in READABLE_VERSIONS
    assert json.loads(encode([event()]))["v"] == SCHEMA_VERSION
    for version in READABLE_VERSIONS:
        assert decode(json.dumps({"v": version, "events": [raw_event()]})).v == version
    with pytest.raises(PoisonMessage, match="schema version"):
        decode(json.dumps({"v": max(READABLE_VERSIONS) + 1, "events": [raw_event()]}))
