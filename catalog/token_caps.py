"""How many tokens of each category one usage event may report: service defaults, raised or lowered per org.

Quotas are enforced after the fact (the aggregates), so one event can only be kept from moving them by refusing it
up front: without a cap, a single event claiming 10^9 output tokens (a bug, or a hostile client) spends a whole org's
quota, and in ORG scope moves its sibling apps' model selection for the rest of the day. The defaults sit above
anything one Bedrock call reports today (1M-token context windows; output in the tens of thousands); an org whose
calls go beyond sets its own caps (`max_tokens_per_event` in its settings).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from catalog.token_counts import MAX_TOKENS_PER_CATEGORY, TOKEN_FIELDS, TokenCounts

DEFAULT_TOKEN_CAPS: dict[str, int] = {
    "input_tokens": 2_000_000,
    "output_tokens": 300_000,
    "cache_read_tokens": 2_000_000,
    "cache_write_tokens": 2_000_000,
    "cache_write_1h_tokens": 2_000_000,
}

Cap = Annotated[int, Field(ge=0, le=MAX_TOKENS_PER_CATEGORY, strict=True)]


class TokenCaps(BaseModel):
    """An org's caps per event, by token category; a category left out keeps the service default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: Cap | None = None
    output_tokens: Cap | None = None
    cache_read_tokens: Cap | None = None
    cache_write_tokens: Cap | None = None
    cache_write_1h_tokens: Cap | None = None

    def effective(self) -> dict[str, int]:
        given = {name: getattr(self, name) for name in TOKEN_FIELDS}
        return {name: DEFAULT_TOKEN_CAPS[name] if cap is None else cap for name, cap in given.items()}


class TokensOverCap(ValueError):
    """An event reports more tokens of a category than one event may."""

    code = "TOKENS_OVER_CAP"

    def __init__(self, over: dict[str, tuple[int, int]]) -> None:
        described = ", ".join(f"{name} {count} > {cap}" for name, (count, cap) in over.items())
        super().__init__(f"more tokens than one event may report ({described}); an org admin can raise its caps")
        self.details = {name: {"tokens": count, "cap": cap} for name, (count, cap) in over.items()}


def check_caps(tokens: TokenCounts, caps: TokenCaps | None) -> None:
    limits = (caps or TokenCaps()).effective()
    over = {name: (count, limits[name]) for name, count in tokens.counts().items() if count > limits[name]}
    if over:
        raise TokensOverCap(over)
