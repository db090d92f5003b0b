"""costkeeper_client.bedrock: usage read from every documented Bedrock shape, and what of it is sent today."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from costkeeper_client import (
    AsyncCostKeeperClient,
    BedrockUsage,
    UnrecognizedBedrockResponse,
    usage_from_bedrock,
)
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi
from tests.unit.fixtures import bedrock_responses as fx


def test_converse_response_with_cache_reads_every_count_the_tier_and_the_ttl_split() -> None:
    usage = usage_from_bedrock(fx.CONVERSE_WITH_CACHE)
    assert usage == BedrockUsage(
        input_tokens=21,
        output_tokens=187,
        cache_read_tokens=4_000,
        cache_write_tokens=2_200,
        cache_write_tokens_by_ttl={"1h": 2_000, "5m": 200},
        service_tier="priority",
        shape="converse",
    )


def test_converse_response_without_cache_has_zero_cache_counts_and_no_tier() -> None:
    usage = usage_from_bedrock(fx.CONVERSE_PLAIN)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        1_000,
        500,
        0,
        0,
    )
    assert dict(usage.cache_write_tokens_by_ttl) == {}
    assert usage.service_tier is None


def test_cache_details_make_the_write_total_when_cache_write_input_tokens_is_absent() -> None:
    usage = usage_from_bedrock(fx.CONVERSE_DETAILS_ONLY)
    assert usage.cache_write_tokens == 1_300
    assert dict(usage.cache_write_tokens_by_ttl) == {"1h": 1_000, "5m": 300}


@pytest.mark.parametrize(
    "event", [fx.CONVERSE_STREAM_METADATA_EVENT, fx.CONVERSE_STREAM_METADATA_EVENT["metadata"]], ids=["event", "inner"]
)
def test_converse_stream_metadata_event_as_yielded_or_unwrapped(event: dict[str, Any]) -> None:
    usage = usage_from_bedrock(event)
    assert usage.shape == "converse_stream_metadata"
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        12,
        345,
        1_000,
        0,
    )
    assert usage.service_tier == "flex"


def test_the_other_stream_events_are_not_mistaken_for_usage() -> None:
    for event in fx.CONVERSE_STREAM_OTHER_EVENTS:
        with pytest.raises(UnrecognizedBedrockResponse):
            usage_from_bedrock(event)


@pytest.mark.parametrize(
    "body",
    [fx.INVOKE_MODEL_ANTHROPIC, fx.INVOKE_MODEL_ANTHROPIC_BYTES, fx.INVOKE_MODEL_ANTHROPIC_BYTES.decode()],
    ids=["parsed", "bytes", "str"],
)
def test_invoke_model_anthropic_body_parsed_or_raw(body: Any) -> None:
    usage = usage_from_bedrock(body)
    assert usage == BedrockUsage(
        input_tokens=15,
        output_tokens=51,
        cache_read_tokens=3_000,
        cache_write_tokens=1_200,
        shape="invoke_model_anthropic",
    )


def test_invoke_model_anthropic_cache_creation_split_by_ttl_and_service_tier() -> None:
    usage = usage_from_bedrock(fx.INVOKE_MODEL_ANTHROPIC_TTL)
    assert usage.cache_write_tokens == 2_500
    assert dict(usage.cache_write_tokens_by_ttl) == {"5m": 500, "1h": 2_000}
    assert usage.service_tier == "standard"


def test_invoke_model_anthropic_null_cache_fields_count_as_none_used() -> None:
    usage = usage_from_bedrock(fx.INVOKE_MODEL_ANTHROPIC_NULL_CACHE)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        10,
        41,
        0,
        0,
    )


def test_a_bare_usage_object_of_either_family() -> None:
    assert usage_from_bedrock(fx.CONVERSE_WITH_CACHE["usage"]).cache_write_tokens == 2_200
    assert usage_from_bedrock(fx.INVOKE_MODEL_ANTHROPIC["usage"]).cache_read_tokens == 3_000


def test_the_raw_invoke_model_answer_is_refused_with_a_hint_to_pass_the_body() -> None:
    raw = {"body": object(), "contentType": "application/json", "ResponseMetadata": {}}
    with pytest.raises(UnrecognizedBedrockResponse, match="parsed body"):
        usage_from_bedrock(raw)


@pytest.mark.parametrize(
    ("response", "complaint"),
    [
        ({"usage": {"inputTokens": 1}}, "outputTokens"),
        ({"usage": {"inputTokens": -1, "outputTokens": 2}}, "non-negative"),
        ({"usage": {"inputTokens": True, "outputTokens": 2}}, "non-negative"),
        ({"usage": {"inputTokens": 1.5, "outputTokens": 2}}, "non-negative"),
        ({"usage": {"input_tokens": 1, "output_tokens": "2"}}, "non-negative"),
        ({"usage": {"inputTokens": 1, "outputTokens": 2, "cacheDetails": [{"inputTokens": 3}]}}, "ttl"),
        ({"usage": "lots"}, "not an object"),
        ({"usage": {"prompt_token_count": 3}}, "known token fields"),
        (b"not json", "not JSON"),
        ([1, 2], "expected a response object"),
    ],
)
def test_malformed_usage_is_refused_rather_than_read_as_zero(response: Any, complaint: str) -> None:
    with pytest.raises(UnrecognizedBedrockResponse, match=complaint):
        usage_from_bedrock(response)


def test_the_api_item_splits_cache_writes_by_ttl_and_names_the_tier() -> None:
    at = datetime(2024, 6, 15, 12, 30, tzinfo=UTC)
    event = usage_from_bedrock(fx.CONVERSE_WITH_CACHE).to_event("premium", timestamp=at)
    assert dict(event.cache_write_tokens_by_ttl) == {"1h": 2_000, "5m": 200}
    assert event.service_tier == "priority"
    assert event.api_item() == {
        "request_id": event.request_id,
        "model_label": "premium",
        "input_tokens": 21,
        "output_tokens": 187,
        "cache_read_tokens": 4_000,
        "cache_write_tokens": 200,
        "cache_write_1h_tokens": 2_000,
        "service_tier": "priority",
        "timestamp": "2024-06-15T12:30:00+00:00",
    }


def test_record_bedrock_posts_the_extracted_counts_for_each_shape() -> None:
    api = FakeApi()
    shapes: list[Any] = [fx.CONVERSE_WITH_CACHE, fx.CONVERSE_STREAM_METADATA_EVENT, fx.INVOKE_MODEL_ANTHROPIC_BYTES]

    async def run() -> list[str]:
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options()) as keeper:
            return [(await keeper.record_bedrock("standard", shape)).request_id for shape in shapes]

    ids = asyncio.run(run())
    sent = [api.accepted[request_id] for request_id in ids]
    counts = [
        (
            s["input_tokens"],
            s["output_tokens"],
            s["cache_read_tokens"],
            s["cache_write_tokens"],
            s.get("cache_write_1h_tokens", 0),
        )
        for s in sent
    ]
    # The Converse response states TTLs: its 1-hour writes are sent apart from the 5-minute ones.
    assert counts == [(21, 187, 4_000, 200, 2_000), (12, 345, 1_000, 0, 0), (15, 51, 3_000, 1_200, 0)]
