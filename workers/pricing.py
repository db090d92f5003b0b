"""Pricing: token counts times per-million-token prices, in integer micro-USD. Pure: no I/O, no floats.

`price_event` turns a queued event into the usage item the worker writes; `cost_usd_micros` is the rule itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.usage_record import UsageRecord
from catalog.model import Org, Prices
from catalog.token_counts import TokenCounts
from workers.message import UsageEvent

TOKENS_PER_PRICE_UNIT = 1_000_000


def cost_usd_micros(prices: Prices, tokens: TokenCounts) -> int:
    """Cost of one request, rounded half up to a whole micro-USD once, on the request's total.

    Rounding once per request (not per token category) keeps a request's cost within half a micro-dollar of its
    exact value; the daily aggregate is then the exact sum of the recorded request costs.
    """
    counts = tokens.counts()
    if any(count < 0 for count in counts.values()):
        raise ValueError("token counts are non-negative")
    micro_usd_per_million = sum(count * prices.per_mtok(name) for name, count in counts.items())
    return (micro_usd_per_million + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT


@dataclass(frozen=True)
class Rejected:
    """An event no retry can price: its org or model label is gone. It goes to the dead-letter queue."""

    event: UsageEvent
    reason: str


def price_event(org: Org, event: UsageEvent, written_at_ms: int) -> UsageRecord | Rejected:
    """The usage item for one event, priced with the org's current prices (and stamped with their version)."""
    spec = org.settings.models.get(event.model_label)
    if spec is None:
        return Rejected(event, "UNKNOWN_MODEL_LABEL")
    tokens = TokenCounts.of(event)
    return UsageRecord(
        org_id=event.org_id,
        app_id=event.app_id,
        request_id=event.request_id,
        model_label=event.model_label,
        bedrock_model_id=spec.bedrock_model_id,
        timestamp=event.timestamp,
        org_timezone=org.settings.timezone,
        tokens=tokens,
        cost_usd_micros=cost_usd_micros(spec.prices, tokens),
        price_version=org.price_version,
        accepted_at_ms=int(event.accepted_at.timestamp() * 1000),
        written_at_ms=written_at_ms,
    )
