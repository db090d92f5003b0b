"""Pricing by category, service tier, batch and calling Region, with costs checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.usage_record import UsageRecord
from catalog.model import (
    App,
    AppSettings,
    ModelSpec,
    Org,
    OrgSettings,
    Prices,
    Pricing,
    ProfileHistory,
    TierNotPriced,
)
from catalog.profiles import InferenceProfile
from catalog.token_counts import TOKEN_FIELDS, TokenCounts
from tests.unit.factories import ORG_ID
from workers.message import UsageEvent
from workers.pricing import Rejected, cost_breakdown, cost_usd_micros, price_event

# Claude Sonnet 4 list prices per 1M tokens: $3 in, $15 out, $0.30 cache read, $3.75 / $6 cache write (5 min / 1 h).
SONNET = Prices(
    input_per_mtok_usd_micros=3_000_000,
    output_per_mtok_usd_micros=15_000_000,
    cache_read_per_mtok_usd_micros=300_000,
    cache_write_per_mtok_usd_micros=3_750_000,
    cache_write_1h_per_mtok_usd_micros=6_000_000,
)
SONNET_PRICING = Pricing(
    prices=SONNET,
    priority_prices=SONNET.model_copy(
        update={"input_per_mtok_usd_micros": 5_250_000, "output_per_mtok_usd_micros": 26_250_000}
    ),
    flex_prices=SONNET.model_copy(
        update={"input_per_mtok_usd_micros": 1_500_000, "output_per_mtok_usd_micros": 7_500_000}
    ),
    batch_discount_percent=50,
)
CALL = TokenCounts(input_tokens=1_000, output_tokens=500)


def test_every_category_by_hand() -> None:
    tokens = TokenCounts(
        input_tokens=1_000,
        output_tokens=500,
        cache_read_tokens=2_000,
        cache_write_tokens=1_000,
        cache_write_1h_tokens=1_000,
    )
    # 1000 x $3/M = 3000; 500 x $15/M = 7500; 2000 x $0.30/M = 600; 1000 x $3.75/M = 3750; 1000 x $6/M = 6000.
    parts = cost_breakdown(SONNET, tokens)
    assert parts == {
        "input_tokens": 3_000,
        "output_tokens": 7_500,
        "cache_read_tokens": 600,
        "cache_write_tokens": 3_750,
        "cache_write_1h_tokens": 6_000,
    }
    assert cost_usd_micros(SONNET, tokens) == 20_850


@pytest.mark.parametrize(
    ("tier", "batch", "expected"),
    [
        ("standard", False, 10_500),  # 3000 + 7500
        ("priority", False, 18_375),  # 1000 x $5.25/M + 500 x $26.25/M = 5250 + 13125
        ("flex", False, 5_250),  # 1500 + 3750
        ("standard", True, 5_250),  # half of 10500
    ],
)
def test_each_tier_and_batch_by_hand(tier: Any, batch: bool, expected: int) -> None:
    card, discount = SONNET_PRICING.rate_card(tier, batch)
    assert cost_usd_micros(card, CALL, discount) == expected


def test_a_discount_is_rounded_once_on_the_discounted_total() -> None:
    # One input token: $0.000003 = 3 micro-USD; half of it is 1.5, rounded half up once: 2 (not 1 + 1 per side).
    assert cost_usd_micros(SONNET, TokenCounts(input_tokens=1), 50) == 2
    assert cost_usd_micros(SONNET, TokenCounts(input_tokens=1, output_tokens=1), 50) == 9  # (3 + 15) / 2


def test_a_batch_price_card_wins_and_tiers_without_prices_are_refused() -> None:
    card = SONNET.model_copy(update={"input_per_mtok_usd_micros": 1_000_000, "output_per_mtok_usd_micros": 2_000_000})
    pricing = Pricing(prices=SONNET, batch_prices=card)
    assert pricing.rate_card("standard", True) == (card, 0)
    with pytest.raises(TierNotPriced, match="priority"):
        pricing.rate_card("priority", False)
    with pytest.raises(TierNotPriced, match="batch inference has no flex"):
        SONNET_PRICING.rate_card("flex", True)
    with pytest.raises(TierNotPriced, match="no batch price"):
        Pricing(prices=SONNET).rate_card("standard", True)
    with pytest.raises(ValueError, match="not both"):
        Pricing(prices=SONNET, batch_prices=card, batch_discount_percent=50)


exact_shares = st.builds(
    TokenCounts,
    **{name: st.integers(0, 10**9) for name in TOKEN_FIELDS},
)
price_cards = st.builds(
    Prices,
    **{name: st.integers(0, 10**8) for name in Prices.model_fields},
)


@given(price_cards, exact_shares, st.integers(0, 100))
def test_the_parts_add_up_to_the_cost_and_each_is_within_one_micro_dollar(
    prices: Prices, tokens: TokenCounts, discount: int
) -> None:
    parts = cost_breakdown(prices, tokens, discount)
    exact = {n: Fraction(c * prices.per_mtok(n) * (100 - discount), 100 * 10**6) for n, c in tokens.counts().items()}
    total = sum(exact.values(), Fraction(0))
    assert sum(parts.values()) == int(total + Fraction(1, 2))  # round half up, once
    assert all(abs(parts[n] - exact[n]) < 1 for n in parts)


# --- a call priced through an inference profile, by the Region that served it -----------------------------------

PROFILE = InferenceProfile.model_validate(
    {
        "inference_profile_id": "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "regions": {
            "us-east-1": {"bedrock_model_id": "anthropic.claude-sonnet-4-20250514-v1:0", "prices": SONNET.model_dump()},
            "us-west-2": {
                "bedrock_model_id": "anthropic.claude-sonnet-4-20250514-v1:0",
                "prices": {"input_per_mtok_usd_micros": 3_300_000, "output_per_mtok_usd_micros": 16_500_000},
            },
        },
    }
)
ORG = Org(
    org_id=ORG_ID,
    settings=OrgSettings(
        models={
            "premium": ModelSpec(
                bedrock_model_id="anthropic.claude-sonnet-4-20250514-v1:0", **SONNET_PRICING.model_dump()
            )
        },
        model_ordering=["premium"],
    ),
    price_version=3,
)
APP = App(
    org_id=ORG_ID,
    app_id="chatbot",
    settings=AppSettings(model_ordering=["sonnet-us", "premium"]),
    profiles={"sonnet-us": PROFILE},
)


def event(label: str, **fields: Any) -> UsageEvent:
    return UsageEvent.model_validate(
        {
            "org_id": ORG_ID,
            "app_id": "chatbot",
            "request_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "model_label": label,
            "timestamp": datetime(2024, 6, 15, 12, tzinfo=UTC),
            "accepted_at": datetime(2024, 6, 15, 12, tzinfo=UTC),
            "input_tokens": 1_000,
            "output_tokens": 500,
            **fields,
        }
    )


def test_a_profile_call_is_priced_for_its_calling_region_and_records_it() -> None:
    east = price_event(ORG, APP, event("sonnet-us", calling_region="us-east-1"), 0)
    west = price_event(ORG, APP, event("sonnet-us", calling_region="us-west-2"), 0)
    assert isinstance(east, UsageRecord) and isinstance(west, UsageRecord)
    assert east.cost_usd_micros == 10_500  # 3000 + 7500
    assert west.cost_usd_micros == 11_550  # 1000 x $3.30/M + 500 x $16.50/M = 3300 + 8250
    assert (west.calling_region, west.bedrock_model_id) == ("us-west-2", "anthropic.claude-sonnet-4-20250514-v1:0")
    assert west.aggregate_key.model_label == "sonnet-us"


def profile_history_app() -> App:
    """sonnet-us at its catalog prices since ever; from 12:00 at twice the input price; from 18:00 removed."""
    doubled_route = PROFILE.regions["us-east-1"].model_copy(
        update={"prices": SONNET.model_copy(update={"input_per_mtok_usd_micros": 6_000_000})}
    )
    doubled = PROFILE.model_copy(update={"regions": {"us-east-1": doubled_route}})
    history = ProfileHistory.first(1, {"sonnet-us": PROFILE})
    history = history.changed({"sonnet-us": doubled}, at(12), at(11, 55))
    history = history.changed({}, at(18), at(17, 55))
    return APP.model_copy(
        update={"settings": AppSettings(), "profiles": {}, "profile_version": 3, "profile_history": history}
    )


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 6, 15, hour, minute, tzinfo=UTC)


def test_a_profile_call_is_priced_with_the_profile_prices_in_force_at_its_timestamp_and_its_version() -> None:
    app = profile_history_app()
    before = price_event(ORG, app, event("sonnet-us", calling_region="us-east-1", timestamp=at(11, 59)), 0)
    after = price_event(ORG, app, event("sonnet-us", calling_region="us-east-1", timestamp=at(12)), 0)
    # Removed at 18:00: an event of it still queued prices with its last prices.
    removed = price_event(ORG, app, event("sonnet-us", calling_region="us-east-1", timestamp=at(19)), 0)
    assert isinstance(before, UsageRecord) and isinstance(after, UsageRecord) and isinstance(removed, UsageRecord)
    assert (before.cost_usd_micros, before.price_version) == (10_500, 1)
    assert (after.cost_usd_micros, after.price_version) == (13_500, 2)  # 1000 x $6/M + 500 x $15/M
    assert (removed.cost_usd_micros, removed.price_version) == (13_500, 2)
    # The org's own labels keep the org's version.
    org_label = price_event(ORG, app, event("premium", timestamp=at(13)), 0)
    assert isinstance(org_label, UsageRecord) and org_label.price_version == ORG.price_version


@pytest.mark.parametrize(
    ("label", "fields", "reason"),
    [
        ("sonnet-us", {}, "CALLING_REGION_REQUIRED"),
        ("sonnet-us", {"calling_region": "eu-west-1"}, "UNKNOWN_CALLING_REGION"),
        ("gpt-9", {}, "UNKNOWN_MODEL_LABEL"),
        ("sonnet-us", {"calling_region": "us-east-1", "service_tier": "priority"}, "SERVICE_TIER_NOT_PRICED"),
        ("premium", {"service_tier": "flex", "batch": True}, "SERVICE_TIER_NOT_PRICED"),
    ],
)
def test_what_cannot_be_priced_is_rejected_with_its_reason(label: str, fields: dict[str, Any], reason: str) -> None:
    result = price_event(ORG, APP, event(label, **fields), 0)
    assert isinstance(result, Rejected) and result.reason == reason


def test_tier_batch_and_status_are_recorded_on_the_usage_item() -> None:
    record = price_event(ORG, APP, event("premium", service_tier="priority", status="ERROR"), 0)
    assert isinstance(record, UsageRecord)
    assert (record.service_tier, record.batch, record.status, record.is_error) == ("priority", False, "ERROR", True)
    assert record.cost_usd_micros == 18_375
    assert sum(record.category_costs.values()) == record.cost_usd_micros
    assert UsageRecord.from_image(record.to_item()) == record
