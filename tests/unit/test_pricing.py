"""workers/pricing.py: exact integer micro-USD, rounded half up once per request."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.usage_record import UsageRecord
from catalog.model import MAX_QUOTA_USD_MICROS, ModelPriceHistory, Org, Prices
from catalog.price_history import HISTORY_KEEP_S, MAX_VERSIONS
from catalog.token_counts import TokenCounts
from tests.unit.factories import ORG_ID, app, org, prices
from workers import pricing
from workers.message import UsageEvent
from workers.pricing import price_event


def cost_usd_micros(p: Prices, **counts: int) -> int:
    """The pricing core on these counts, unvalidated: its own refusal of negatives is what some tests check."""
    values: dict[str, Any] = dict(counts)
    return pricing.cost_usd_micros(p, TokenCounts.model_construct(**values))


def oracle(p: Prices, input_: int, output: int, cache_read: int, cache_write: int) -> int:
    """Exact rational cost, rounded half up: an independent re-derivation with Fraction."""
    exact = (
        Fraction(input_ * p.input_per_mtok_usd_micros, 10**6)
        + Fraction(output * p.output_per_mtok_usd_micros, 10**6)
        + Fraction(cache_read * p.cache_read_per_mtok_usd_micros, 10**6)
        + Fraction(cache_write * p.cache_write_per_mtok_usd_micros, 10**6)
    )
    return math.floor(exact + Fraction(1, 2))


def test_whole_micro_dollars_need_no_rounding() -> None:
    # $3 / 1M input, $15 / 1M output: 1000 in + 200 out = $0.003 + $0.003.
    assert cost_usd_micros(prices(3_000_000, 15_000_000), input_tokens=1_000, output_tokens=200) == 6_000


def test_zero_tokens_cost_nothing() -> None:
    p = prices(3_000_000, 15_000_000, 300_000, 3_750_000)
    assert cost_usd_micros(p, input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0) == 0


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (499_999, 0),  # 0.499999 rounds down
        (500_000, 1),  # exactly half rounds up
        (1_500_000, 2),  # 1.5 -> 2
        (2_500_000, 3),  # 2.5 -> 3: half up, not banker's rounding (which gives 2)
        (2_499_999, 2),
    ],
)
def test_rounds_half_up(tokens: int, expected: int) -> None:
    # At 1 micro-USD per 1M tokens the cost in micro-USD is tokens / 1e6.
    assert cost_usd_micros(prices(1, 0), input_tokens=tokens, output_tokens=0) == expected


def test_rounds_once_per_request_not_per_token_kind() -> None:
    # Each kind alone is 0.4 micro-USD and would round to 0; the request's 1.6 rounds to 2.
    p = prices(1, 1, 1, 1)
    one_kind = cost_usd_micros(p, input_tokens=400_000, output_tokens=0)
    assert one_kind == 0
    total = cost_usd_micros(
        p, input_tokens=400_000, output_tokens=400_000, cache_read_tokens=400_000, cache_write_tokens=400_000
    )
    assert total == 2


def test_each_token_kind_uses_its_own_price() -> None:
    # Distinct powers of ten per kind make every contribution visible in its own digits.
    p = prices(input_=1_000_000, output=10_000_000, cache_read=100_000_000, cache_write=1_000_000_000)
    assert cost_usd_micros(p, input_tokens=1, output_tokens=0) == 1
    assert cost_usd_micros(p, input_tokens=0, output_tokens=1) == 10
    assert cost_usd_micros(p, input_tokens=0, output_tokens=0, cache_read_tokens=1) == 100
    assert cost_usd_micros(p, input_tokens=0, output_tokens=0, cache_write_tokens=1) == 1_000
    assert cost_usd_micros(p, input_tokens=2, output_tokens=3, cache_read_tokens=4, cache_write_tokens=5) == 5_432


def test_cache_tokens_default_to_zero() -> None:
    p = prices(3_000_000, 15_000_000, 300_000, 3_750_000)
    assert cost_usd_micros(p, input_tokens=10, output_tokens=10) == cost_usd_micros(
        p, input_tokens=10, output_tokens=10, cache_read_tokens=0, cache_write_tokens=0
    )


def test_cache_read_is_cheaper_than_input_at_realistic_prices() -> None:
    # Claude-like prices: cache reads at a tenth of input, cache writes at 1.25x input.
    p = prices(3_000_000, 15_000_000, 300_000, 3_750_000)
    assert cost_usd_micros(p, input_tokens=0, output_tokens=0, cache_read_tokens=1_000_000) == 300_000
    assert cost_usd_micros(p, input_tokens=0, output_tokens=0, cache_write_tokens=1_000_000) == 3_750_000


def test_large_counts_are_exact_where_floats_are_not() -> None:
    # 10**9 tokens of each kind at odd prices near the quota ceiling: the exact value needs more than 53 bits.
    p = prices(MAX_QUOTA_USD_MICROS - 1, MAX_QUOTA_USD_MICROS - 3, 999_999_999_999_997, 123_456_789_012_345)
    n = 10**9 - 1
    got = cost_usd_micros(p, input_tokens=n, output_tokens=n, cache_read_tokens=n, cache_write_tokens=n)
    assert got == oracle(p, n, n, n, n)
    as_float = round(
        (n * p.input_per_mtok_usd_micros + n * p.output_per_mtok_usd_micros) / 1e6
        + (n * p.cache_read_per_mtok_usd_micros + n * p.cache_write_per_mtok_usd_micros) / 1e6
    )
    assert as_float != got, "the example should be one where float arithmetic loses digits"
    assert isinstance(got, int)


@pytest.mark.parametrize("kind", ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"])
def test_negative_token_counts_are_rejected(kind: str) -> None:
    counts = {"input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 1, "cache_write_tokens": 1, kind: -1}
    with pytest.raises(ValueError, match="non-negative"):
        cost_usd_micros(prices(), **counts)


def test_negative_counts_cannot_offset_positive_ones() -> None:
    # A negative count that would make the total zero or exact must still be refused.
    with pytest.raises(ValueError, match="non-negative"):
        cost_usd_micros(prices(1_000_000, 1_000_000), input_tokens=5, output_tokens=-5)


# The queue schema caps each count at 10**9 (catalog.token_counts.TokenCount).
token_counts = st.integers(min_value=0, max_value=10**9)
price_values = st.integers(min_value=0, max_value=MAX_QUOTA_USD_MICROS)


@given(
    st.tuples(price_values, price_values, price_values, price_values),
    token_counts,
    token_counts,
    token_counts,
    token_counts,
)
def test_matches_fraction_oracle(
    price_tuple: tuple[int, int, int, int], input_: int, output: int, cache_read: int, cache_write: int
) -> None:
    p = prices(*price_tuple)
    got = cost_usd_micros(
        p, input_tokens=input_, output_tokens=output, cache_read_tokens=cache_read, cache_write_tokens=cache_write
    )
    assert got == oracle(p, input_, output, cache_read, cache_write)


@given(st.tuples(price_values, price_values, price_values, price_values), token_counts, token_counts)
def test_within_half_a_micro_dollar_and_monotonic(
    price_tuple: tuple[int, int, int, int], input_: int, extra: int
) -> None:
    p = prices(*price_tuple)
    got = cost_usd_micros(p, input_tokens=input_, output_tokens=input_)
    exact = Fraction(input_ * (p.input_per_mtok_usd_micros + p.output_per_mtok_usd_micros), 10**6)
    assert -Fraction(1, 2) < got - exact <= Fraction(1, 2)
    # More tokens never cost less.
    assert cost_usd_micros(p, input_tokens=input_ + extra, output_tokens=input_) >= got


# --- price_event: the usage item of one queued event ----------------------------------------------------------------


def queued(label: str = "premium", **fields: object) -> UsageEvent:
    return UsageEvent.model_validate(
        {
            "org_id": ORG_ID,
            "app_id": "chatbot",
            "request_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "model_label": label,
            "timestamp": datetime(2024, 6, 15, 23, 30, tzinfo=UTC),
            "accepted_at": datetime(2024, 6, 15, 23, 30, 0, 250_000, tzinfo=UTC),
            **fields,
        }
    )


def test_price_event_prices_with_the_labels_prices_and_stamps_the_price_version() -> None:
    tenant = org(timezone="Asia/Tokyo").model_copy(update={"price_version": 7})
    event = queued(input_tokens=1_000, output_tokens=200, cache_read_tokens=10)
    record = price_event(tenant, app(), event, 1_718_000_000_123)
    assert isinstance(record, UsageRecord)
    # factories.prices(): $3 in, $15 out, cache reads free: 3_000 + 3_000 micro-USD.
    assert record.cost_usd_micros == 6_000
    assert record.tokens == TokenCounts(input_tokens=1_000, output_tokens=200, cache_read_tokens=10)
    assert record.price_version == 7
    assert record.bedrock_model_id == "vendor.premium-v1"
    assert record.org_timezone == "Asia/Tokyo"
    # 23:30 UTC is the next morning in Tokyo: the item counts on the org's day.
    assert record.aggregate_key.day == "2024-06-16"
    assert record.accepted_at_ms == 1_718_494_200_250
    assert record.written_at_ms == 1_718_000_000_123


def test_price_event_rejects_a_label_the_org_no_longer_has() -> None:
    event = queued("retired", input_tokens=5)
    result = price_event(org(), app(), event, 0)
    assert isinstance(result, pricing.Rejected)
    assert result.event is event and result.reason == "UNKNOWN_MODEL_LABEL"


# --- prices in force at the event's timestamp (catalog/price_history.py) ---------------------------------------------


def history_org() -> Org:
    """premium at $3/$15 since ever; from 12:00 at $6/$15 with economy removed; from 18:00 with nova added."""
    base = org()
    v1 = dict(base.settings.models)
    doubled = {
        **{k: v for k, v in v1.items() if k != "economy"},
        "premium": v1["premium"].model_copy(update={"prices": prices(input_=6_000_000)}),
    }
    with_nova = {**doubled, "nova": v1["standard"].model_copy(update={"bedrock_model_id": "amazon.nova"})}
    history = ModelPriceHistory.first(1, v1)
    history = history.changed(doubled, datetime(2024, 6, 15, 12, tzinfo=UTC), datetime(2024, 6, 15, 11, 55, tzinfo=UTC))
    history = history.changed(
        with_nova, datetime(2024, 6, 15, 18, tzinfo=UTC), datetime(2024, 6, 15, 17, 55, tzinfo=UTC)
    )
    settings = base.settings.model_copy(update={"models": with_nova})
    return base.model_copy(update={"settings": settings, "price_version": 3, "price_history": history})


def priced(label: str, hour: int, minute: int = 0) -> UsageRecord:
    event = queued(label, input_tokens=1_000_000, timestamp=datetime(2024, 6, 15, hour, minute, tzinfo=UTC))
    record = price_event(history_org(), app(), event, 0)
    assert isinstance(record, UsageRecord)
    return record


def test_an_event_is_priced_with_the_version_in_force_at_its_timestamp() -> None:
    # However late it is processed: a backlog or a redrive across the change prices it as its call was billed.
    assert (priced("premium", 11, 59).price_version, priced("premium", 11, 59).cost_usd_micros) == (1, 3_000_000)
    assert (priced("premium", 12).price_version, priced("premium", 12).cost_usd_micros) == (2, 6_000_000)
    assert priced("premium", 23).price_version == 3


def test_a_removed_label_keeps_pricing_its_events_from_before_the_removal() -> None:
    assert (priced("economy", 11).price_version, priced("economy", 11).cost_usd_micros) == (1, 3_000_000)
    # Queued before the removal took effect but timestamped after (clock skew): its last price.
    assert priced("economy", 13).price_version == 1


def test_a_label_added_within_the_notice_period_takes_its_first_price() -> None:
    record = priced("nova", 17, 59)
    assert (record.price_version, record.bedrock_model_id) == (3, "amazon.nova")


def test_a_label_no_version_ever_had_is_still_refused() -> None:
    result = price_event(history_org(), app(), queued("retired", input_tokens=5), 0)
    assert isinstance(result, pricing.Rejected) and result.reason == "UNKNOWN_MODEL_LABEL"


def test_history_keeps_versions_while_their_events_can_arrive_and_at_most_its_limit() -> None:
    models = dict(org().settings.models)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    history = ModelPriceHistory.first(1, models)
    for day in range(1, 40):
        instant = start + timedelta(days=day)
        history = history.changed(models, instant, instant)
    # Versions whose successor took effect more than HISTORY_KEEP_S ago are gone; the one then in force stays.
    assert history.in_force(start + timedelta(days=39) - timedelta(seconds=HISTORY_KEEP_S)).version >= 8
    assert len(history.versions) <= MAX_VERSIONS
    assert history.latest.version == 40
    assert [v.version for v in history.versions] == sorted(v.version for v in history.versions)
