"""Pricing: token counts times per-million-token prices, in integer micro-USD. Pure: no I/O, no floats.

`cost_breakdown` is the rule itself; `price_event` turns a queued event into the usage item the worker writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.usage_record import UsageRecord
from catalog.model import (
    App,
    CallingRegionRequired,
    Org,
    Prices,
    TierNotPriced,
    UnknownCallingRegion,
    UnknownModelLabel,
    resolve_label,
)
from catalog.token_counts import TokenCounts
from workers.message import UsageEvent

TOKENS_PER_PRICE_UNIT = 1_000_000
PERCENT = 100


def cost_breakdown(prices: Prices, tokens: TokenCounts, discount_percent: int = 0) -> dict[str, int]:
    """A request's cost in whole micro-USD, split by token category (TokenCounts field); the parts sum to the cost.

    The cost is the exact amount, sum(tokens x price) less the discount, rounded half up once, on the request's
    total: within half a micro-dollar of exact, and the daily aggregate is then the exact sum of the request costs.
    The split gives each category its exact share rounded down, then the units left over to the categories with the
    largest remainders (ties in category order): deterministic, each part within one micro-USD of its exact share,
    and never a part that fails to add up.
    """
    if not 0 <= discount_percent <= PERCENT:
        raise ValueError("a discount is 0 to 100 percent")
    counts = tokens.counts()
    if any(count < 0 for count in counts.values()):
        raise ValueError("token counts are non-negative")
    denominator = TOKENS_PER_PRICE_UNIT * PERCENT
    exact = {name: count * prices.per_mtok(name) * (PERCENT - discount_percent) for name, count in counts.items()}
    total = (sum(exact.values()) + denominator // 2) // denominator
    parts = {name: value // denominator for name, value in exact.items()}
    left_over = total - sum(parts.values())
    by_remainder = sorted(counts, key=lambda name: -(exact[name] % denominator))
    for name in by_remainder[:left_over]:
        parts[name] += 1
    return parts


def cost_usd_micros(prices: Prices, tokens: TokenCounts, discount_percent: int = 0) -> int:
    """Cost of one request, rounded half up to a whole micro-USD once, on the request's total."""
    return sum(cost_breakdown(prices, tokens, discount_percent).values())


@dataclass(frozen=True)
class Rejected:
    """An event no retry can price: its org, label, Region or tier price is gone. It goes to the dead-letter queue."""

    event: UsageEvent
    reason: str


def price_event(org: Org, app: App | None, event: UsageEvent, written_at_ms: int) -> UsageRecord | Rejected:
    """The usage item for one event, priced with the prices in force at the event's timestamp (and stamped with
    their version): catalog/price_history.py. A label of the org's models is priced from the org's price history and
    stamped with its version; a label of the app's inference profiles from the app's profile history and its version.

    `app` is needed only for a label of the app's own inference profiles.
    """
    org = org.priced_at(event.model_label, event.timestamp)
    if app is not None and event.model_label not in org.settings.models:
        app = app.priced_at(event.model_label, event.timestamp)
    try:
        resolved = resolve_label(org, app, event.model_label, event.calling_region)
        card, discount_percent = resolved.pricing.rate_card(event.service_tier, event.batch)
    except (UnknownModelLabel, CallingRegionRequired, UnknownCallingRegion, TierNotPriced) as exc:
        return Rejected(event, exc.code)
    tokens = TokenCounts.of(event)
    costs = cost_breakdown(card, tokens, discount_percent)
    by_profile = app is not None and resolved.inference_profile_id is not None
    version = app.profile_version if by_profile and app is not None else org.price_version
    return UsageRecord(
        org_id=event.org_id,
        app_id=event.app_id,
        request_id=event.request_id,
        model_label=event.model_label,
        bedrock_model_id=resolved.bedrock_model_id,
        timestamp=event.timestamp,
        org_timezone=org.settings.timezone,
        tokens=tokens,
        cost_usd_micros=sum(costs.values()),
        category_costs=costs,
        price_version=version,
        accepted_at_ms=int(event.accepted_at.timestamp() * 1000),
        written_at_ms=written_at_ms,
        calling_region=event.calling_region,
        service_tier=event.service_tier,
        batch=event.batch,
        status=event.status,
    )
