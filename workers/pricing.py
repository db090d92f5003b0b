"""Pricing: token counts times per-million-token prices, in integer micro-USD. Pure: no I/O, no floats."""

from __future__ import annotations

from catalog.model import Prices

TOKENS_PER_PRICE_UNIT = 1_000_000


def cost_usd_micros(
    prices: Prices,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> int:
    """Cost of one request, rounded half up to a whole micro-USD once, on the request's total.

    Rounding once per request (not per token kind) keeps a request's cost within half a micro-dollar of its exact
    value; the daily aggregate is then the exact sum of the recorded request costs.
    """
    for count in (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens):
        if count < 0:
            raise ValueError("token counts are non-negative")
    micro_usd_per_million = (
        input_tokens * prices.input_per_mtok_usd_micros
        + output_tokens * prices.output_per_mtok_usd_micros
        + cache_read_tokens * prices.cache_read_per_mtok_usd_micros
        + cache_write_tokens * prices.cache_write_per_mtok_usd_micros
    )
    return (micro_usd_per_million + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT
