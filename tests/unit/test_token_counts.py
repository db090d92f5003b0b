"""catalog/token_counts.py: one value type for token counts, and every category priced."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.model import Prices
from catalog.token_counts import MAX_TOKENS_PER_CATEGORY, PRICE_FIELD_SUFFIX, TOKEN_FIELDS, TokenCounts, price_field
from ingest_api.submission import UsageSubmission
from workers import pricing
from workers.message import UsageEvent


def test_every_category_has_exactly_one_price_and_every_price_a_category() -> None:
    priced = {name.removesuffix(PRICE_FIELD_SUFFIX) for name in Prices.model_fields}
    assert {price_field(name) for name in TOKEN_FIELDS} == set(Prices.model_fields)
    assert {name.removesuffix("_tokens") for name in TOKEN_FIELDS} == priced


def test_the_wire_models_carry_every_category_as_a_field() -> None:
    # The submission and the queue message subclass TokenCounts: a new category is on the wire with no other edit.
    for model in (UsageSubmission, UsageEvent):
        assert set(TOKEN_FIELDS) <= set(model.model_fields)
        assert all(model.model_fields[name].default == 0 for name in TOKEN_FIELDS)


def test_counts_are_in_declaration_order_and_missing_stored_counts_read_as_zero() -> None:
    assert list(TokenCounts(output_tokens=2).counts()) == list(TOKEN_FIELDS)
    stored = TokenCounts.from_counts({"input_tokens": 5})
    assert stored.counts() == {name: 5 if name == "input_tokens" else 0 for name in TOKEN_FIELDS}


def test_of_takes_the_counts_of_a_model_that_carries_them() -> None:
    submission = UsageSubmission(
        request_id="0F8FAD5B-D9CB-469F-A165-70867728950E",
        model_label="premium",
        input_tokens=3,
        cache_read_tokens=4,
        timestamp=datetime(2024, 6, 15, tzinfo=UTC),
    )
    assert TokenCounts.of(submission) == TokenCounts(input_tokens=3, cache_read_tokens=4)
    assert type(TokenCounts.of(submission)) is TokenCounts


@pytest.mark.parametrize("bad", [-1, MAX_TOKENS_PER_CATEGORY + 1, True, "5", 1.0])
def test_each_count_is_a_bounded_strict_integer(bad: object) -> None:
    for name in TOKEN_FIELDS:
        with pytest.raises(ValueError, match=name):
            TokenCounts.model_validate({name: bad})


@given(st.sampled_from(TOKEN_FIELDS), st.integers(0, MAX_TOKENS_PER_CATEGORY), st.integers(0, 10**9))
def test_pricing_prices_each_category_by_its_own_price(name: str, count: int, price: int) -> None:
    # Every other category priced high: only the category's own price may show in the cost.
    prices = Prices.model_validate(
        {field: price if field == price_field(name) else 10**15 for field in Prices.model_fields}
    )
    expected = (count * price + 500_000) // 1_000_000
    assert pricing.cost_usd_micros(prices, TokenCounts.model_validate({name: count})) == expected
