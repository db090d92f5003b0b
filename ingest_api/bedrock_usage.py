"""Bedrock's own usage block, accepted as the response carried it, so no client maps fields by hand.

Converse (and ConverseStream's `metadata` event) report a TokenUsage: inputTokens and outputTokens, and with prompt
caching cacheReadInputTokens, cacheWriteInputTokens and cacheDetails, the cache writes broken down by TTL
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html). inputTokens counts only the
tokens neither read from nor written to the cache. The response's serviceTier is {"type": "priority" | "default" |
"flex" | "reserved"} (API_runtime_ServiceTier.html); "default" is the Standard tier.

Unknown fields in the block are refused rather than ignored: a category Bedrock starts to bill would otherwise be
counted as free.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from catalog.token_counts import MAX_TOKENS_PER_CATEGORY, TokenCount

MAX_CACHE_DETAILS = 10


class CacheDetail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ttl: Literal["5m", "1h"]
    inputTokens: TokenCount


class ConverseUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inputTokens: TokenCount
    outputTokens: TokenCount
    totalTokens: int | None = Field(default=None, ge=0, le=10 * MAX_TOKENS_PER_CATEGORY, strict=True)
    cacheReadInputTokens: TokenCount | None = None
    cacheWriteInputTokens: TokenCount | None = None
    cacheDetails: list[CacheDetail] = Field(default_factory=list, max_length=MAX_CACHE_DETAILS)

    def token_counts(self) -> dict[str, int]:
        """The block as TokenCounts fields. Cache writes without a breakdown are 5-minute writes."""
        by_ttl = {"5m": 0, "1h": 0}
        for detail in self.cacheDetails:
            by_ttl[detail.ttl] += detail.inputTokens
        if self.cacheDetails:
            if self.cacheWriteInputTokens is not None and self.cacheWriteInputTokens != sum(by_ttl.values()):
                raise ValueError(
                    f"cacheWriteInputTokens ({self.cacheWriteInputTokens}) is not the sum of cacheDetails "
                    f"({sum(by_ttl.values())})"
                )
        else:
            by_ttl["5m"] = self.cacheWriteInputTokens or 0
        counts = {
            "input_tokens": self.inputTokens,
            "output_tokens": self.outputTokens,
            "cache_read_tokens": self.cacheReadInputTokens or 0,
            "cache_write_tokens": by_ttl["5m"],
            "cache_write_1h_tokens": by_ttl["1h"],
        }
        if any(count > MAX_TOKENS_PER_CATEGORY for count in counts.values()):
            raise ValueError(f"a token count exceeds {MAX_TOKENS_PER_CATEGORY}")
        return counts


SERVICE_TIER_NAMES = {"standard": "standard", "default": "standard", "priority": "priority", "flex": "flex"}


def service_tier_name(value: Any) -> Any:
    """'priority', or Bedrock's {"type": "priority"}; "default" is Standard. Anything else is left for validation."""
    if isinstance(value, dict) and set(value) == {"type"}:
        value = value["type"]
    if isinstance(value, str) and value in SERVICE_TIER_NAMES:
        return SERVICE_TIER_NAMES[value]
    if value == "reserved":
        raise ValueError("the reserved tier is billed per reserved capacity, not per token; it is not metered here")
    return value
