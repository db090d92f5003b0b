"""Reading token usage out of what Amazon Bedrock returns, so that no caller maps fields by hand.

Shapes read (AWS documentation):
* Converse response: top-level "usage" is a TokenUsage (inputTokens, outputTokens, totalTokens, cacheReadInputTokens,
  cacheWriteInputTokens, cacheDetails: [{ttl: "5m" | "1h", inputTokens}]) and "serviceTier" is {"type": ...}.
  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html
  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CacheDetail.html
  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ServiceTier.html
* ConverseStream: the "metadata" event (ConverseStreamMetadataEvent) carries usage, metrics, serviceTier; either the
  event as the stream yields it ({"metadata": {...}}) or its inner object is accepted.
  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamMetadataEvent.html
* InvokeModel with an Anthropic Claude messages body: "usage" with input_tokens, output_tokens,
  cache_read_input_tokens, cache_creation_input_tokens and, where present, cache_creation (ephemeral_5m_input_tokens,
  ephemeral_1h_input_tokens) and service_tier. Pass the parsed body, or its bytes.
  https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html

Input tokens are taken as reported. In both families they count only the input neither read from nor written to the
cache (https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html), which is what the API prices at the
input rate; subtracting the cache counts again would under-charge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from costkeeper_client.errors import UnrecognizedBedrockResponse
from costkeeper_client.events import UsageEvent

Shape = Literal["converse", "converse_stream_metadata", "invoke_model_anthropic", "token_usage", "anthropic_usage"]

_ANTHROPIC_TTL_FIELDS = {"ephemeral_5m_input_tokens": "5m", "ephemeral_1h_input_tokens": "1h"}


def _no_ttls() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BedrockUsage:
    """The usage of one Bedrock call, in the client's terms.

    cache_write_tokens is the total written to the cache at any TTL (what the API prices today);
    cache_write_tokens_by_ttl splits it by TTL where Bedrock says so; service_tier is the tier that served the call.
    """

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_tokens_by_ttl: Mapping[str, int] = field(default_factory=_no_ttls)
    service_tier: str | None = None
    shape: Shape = "converse"

    def to_event(
        self, model_label: str, *, timestamp: datetime | None = None, request_id: str | None = None
    ) -> UsageEvent:
        extra: dict[str, Any] = {}
        if timestamp is not None:
            extra["timestamp"] = timestamp
        if request_id is not None:
            extra["request_id"] = request_id
        return UsageEvent(
            model_label=model_label,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_tokens_by_ttl=self.cache_write_tokens_by_ttl,
            service_tier=self.service_tier,
            **extra,
        )


BedrockResponse = Mapping[str, Any] | bytes | bytearray | str


def usage_from_bedrock(response: BedrockResponse) -> BedrockUsage:
    """The usage in a Converse response, a ConverseStream metadata event, or an InvokeModel Anthropic body.

    A bare TokenUsage (response["usage"] of Converse) or a bare Anthropic usage object is accepted too.
    Raises UnrecognizedBedrockResponse for anything else, rather than guessing zeros.
    """
    obj = _as_mapping(response)
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping) and "usage" in metadata:
        return _converse(metadata, "converse_stream_metadata")
    usage = obj.get("usage")
    if usage is not None:
        if not isinstance(usage, Mapping):
            raise UnrecognizedBedrockResponse(f"'usage' is a {type(usage).__name__}, not an object")
        if "inputTokens" in usage or "outputTokens" in usage:
            streamed = "output" not in obj and "stopReason" not in obj and "metrics" in obj
            return _converse(obj, "converse_stream_metadata" if streamed else "converse")
        if "input_tokens" in usage or "output_tokens" in usage:
            return _anthropic(usage, "invoke_model_anthropic")
        raise UnrecognizedBedrockResponse(f"'usage' has none of the known token fields: {sorted(usage)}")
    if "inputTokens" in obj or "outputTokens" in obj:
        return _converse({"usage": obj}, "token_usage")
    if "input_tokens" in obj or "output_tokens" in obj:
        return _anthropic(obj, "anthropic_usage")
    hint = ""
    if "body" in obj:
        hint = "; for InvokeModel pass the parsed body, e.g. json.loads(response['body'].read())"
    raise UnrecognizedBedrockResponse(f"no Bedrock usage found among the keys {sorted(obj)[:10]}{hint}")


def _as_mapping(response: object) -> Mapping[str, Any]:
    if isinstance(response, bytes | bytearray | str):
        try:
            response = json.loads(response)
        except ValueError as exc:
            raise UnrecognizedBedrockResponse(f"the response body is not JSON: {exc}") from exc
    if not isinstance(response, Mapping):
        raise UnrecognizedBedrockResponse(f"expected a response object, got {type(response).__name__}")
    return response


def _count(container: Mapping[str, Any], name: str, required: bool) -> int:
    value = container.get(name)
    if value is None:
        # Absent means none: the cache fields are optional, and Anthropic bodies send null for "no cache use".
        if required:
            raise UnrecognizedBedrockResponse(f"usage has no {name}")
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UnrecognizedBedrockResponse(f"usage {name} is {value!r}, not a non-negative integer")
    return value


def _converse(obj: Mapping[str, Any], shape: Shape) -> BedrockUsage:
    usage = obj["usage"]
    if not isinstance(usage, Mapping):
        raise UnrecognizedBedrockResponse("'usage' is not an object")
    by_ttl: dict[str, int] = {}
    details = usage.get("cacheDetails") or []
    if not isinstance(details, list):
        raise UnrecognizedBedrockResponse("cacheDetails is not a list")
    for detail in details:
        if not isinstance(detail, Mapping) or not isinstance(detail.get("ttl"), str):
            raise UnrecognizedBedrockResponse(f"cacheDetails entry {detail!r} has no ttl")
        tokens = _count(detail, "inputTokens", required=True)
        if tokens:
            by_ttl[detail["ttl"]] = by_ttl.get(detail["ttl"], 0) + tokens
    # cacheWriteInputTokens is the total Bedrock bills; the details only split it, so they fill in only when the
    # total is missing.
    write_total = usage.get("cacheWriteInputTokens")
    cache_write = sum(by_ttl.values()) if write_total is None else _count(usage, "cacheWriteInputTokens", False)
    return BedrockUsage(
        input_tokens=_count(usage, "inputTokens", required=True),
        output_tokens=_count(usage, "outputTokens", required=True),
        cache_read_tokens=_count(usage, "cacheReadInputTokens", required=False),
        cache_write_tokens=cache_write,
        cache_write_tokens_by_ttl=MappingProxyType(by_ttl),
        service_tier=_converse_tier(obj.get("serviceTier")),
        shape=shape,
    )


def _converse_tier(tier: object) -> str | None:
    if isinstance(tier, Mapping):
        value = tier.get("type")
        return value if isinstance(value, str) else None
    return tier if isinstance(tier, str) else None


def _anthropic(usage: Mapping[str, Any], shape: Shape) -> BedrockUsage:
    by_ttl: dict[str, int] = {}
    creation = usage.get("cache_creation")
    if isinstance(creation, Mapping):
        for name, ttl in _ANTHROPIC_TTL_FIELDS.items():
            tokens = _count(creation, name, required=False)
            if tokens:
                by_ttl[ttl] = tokens
    write_total = usage.get("cache_creation_input_tokens")
    if write_total is None:
        cache_write = sum(by_ttl.values())
    else:
        cache_write = _count(usage, "cache_creation_input_tokens", required=False)
    tier = usage.get("service_tier")
    return BedrockUsage(
        input_tokens=_count(usage, "input_tokens", required=True),
        output_tokens=_count(usage, "output_tokens", required=True),
        cache_read_tokens=_count(usage, "cache_read_input_tokens", required=False),
        cache_write_tokens=cache_write,
        cache_write_tokens_by_ttl=MappingProxyType(by_ttl),
        service_tier=tier if isinstance(tier, str) else None,
        shape=shape,
    )
