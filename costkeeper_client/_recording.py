"""The keyword arguments of record(), turned into an event: shared by both clients so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from costkeeper_client.bedrock import BedrockResponse, usage_from_bedrock
from costkeeper_client.events import UsageEvent


def build_event(
    model_label: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    timestamp: datetime | None,
    request_id: str | None,
    cache_write_tokens_by_ttl: Mapping[str, int] | None,
    service_tier: str | None,
) -> UsageEvent:
    optional: dict[str, Any] = {}
    if timestamp is not None:
        optional["timestamp"] = timestamp
    if request_id is not None:
        optional["request_id"] = request_id
    if cache_write_tokens_by_ttl is not None:
        optional["cache_write_tokens_by_ttl"] = cache_write_tokens_by_ttl
    return UsageEvent(
        model_label=model_label,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        service_tier=service_tier,
        **optional,
    )


def bedrock_event(
    model_label: str, response: BedrockResponse, timestamp: datetime | None, request_id: str | None
) -> UsageEvent:
    return usage_from_bedrock(response).to_event(model_label, timestamp=timestamp, request_id=request_id)
