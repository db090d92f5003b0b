"""Token counts: the one value type for how many tokens of each category a model call used.

The submission, the queue message (both subclass it, so its fields are theirs on the wire), the usage item, the
rollup totals and pricing all carry it and loop over TOKEN_FIELDS; none names a category. Adding a category is a field
here, its price field on catalog.model.Prices (`{category}_per_mtok_usd_micros`, tests/unit/test_token_counts.py
holds the two in step) and their tests. Readers of stored or queued data take a missing category as 0, so data
written before a category existed still reads and counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_TOKENS_PER_CATEGORY = 10**9

TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS_PER_CATEGORY, strict=True)]


class TokenCounts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    # Prompt-cache writes with the default 5-minute TTL; a plain cache write count (no TTL given) is one of these.
    cache_write_tokens: TokenCount = 0
    # Prompt-cache writes with the 1-hour TTL, priced apart (Converse's cacheDetails, ttl "1h").
    cache_write_1h_tokens: TokenCount = 0

    def counts(self) -> dict[str, int]:
        """{field: count} for every category, in declaration order."""
        return {name: getattr(self, name) for name in TOKEN_FIELDS}

    @classmethod
    def of(cls, counts: TokenCounts) -> TokenCounts:
        """The counts of a model that subclasses this one (a submission, an event), already validated there."""
        values: dict[str, Any] = counts.counts()
        return cls.model_construct(**values)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int]) -> TokenCounts:
        """From stored counts: missing categories are 0; values are taken as stored, not re-validated."""
        values: dict[str, Any] = {name: int(counts.get(name, 0)) for name in TOKEN_FIELDS}
        return cls.model_construct(**values)


TOKEN_FIELDS: tuple[str, ...] = tuple(TokenCounts.model_fields)
PRICE_FIELD_SUFFIX = "_per_mtok_usd_micros"


def category(token_field: str) -> str:
    """'cache_read_tokens' -> 'cache_read'."""
    return token_field.removesuffix("_tokens")


def cost_field(token_field: str) -> str:
    """Where the share of a request's cost due to a category is kept: 'input_tokens' -> 'input_cost_usd_micros'."""
    return category(token_field) + "_cost_usd_micros"


def price_field(token_field: str) -> str:
    """The Prices field that prices a token field: 'cache_read_tokens' -> 'cache_read_per_mtok_usd_micros'."""
    return category(token_field) + PRICE_FIELD_SUFFIX
