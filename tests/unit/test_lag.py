"""aggregator/lag.py: every lag counted in bounded memory, percentiles within 1% of the exact ones."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.lag import LagHistogram, bucket_of


def exact_percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_lags_under_a_second_are_kept_to_the_millisecond() -> None:
    histogram = LagHistogram()
    for lag in range(1, 101):  # 1..100 ms, each once
        histogram.record(lag)
    assert histogram.count == 100
    assert histogram.percentile(0.5) == 50
    assert histogram.percentile(0.99) == 99
    assert histogram.percentile(1.0) == 100
    assert histogram.summary() == {"count": 100, "p50_ms": 50, "p90_ms": 90, "p99_ms": 99, "max_ms": 100}


def test_longer_lags_keep_three_significant_digits() -> None:
    assert bucket_of(999) == 999
    assert bucket_of(1234) == 1230
    assert bucket_of(98_765) == 98_700
    assert bucket_of(12_345_678) == 12_300_000
    # A clock step backwards yields a negative lag; it counts as no lag rather than vanishing.
    assert bucket_of(-5) == 0


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert LagHistogram().summary() == {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}


def test_q_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction"):
        LagHistogram().percentile(99)


def test_memory_is_bounded_by_buckets_not_by_events() -> None:
    histogram = LagHistogram()
    for lag in range(0, 3_000_000, 7):
        histogram.record(lag)
    assert histogram.count == len(range(0, 3_000_000, 7))
    # 1000 exact buckets below 1 s, then at most 900 per decade.
    assert len(histogram.counts) <= 1000 + 3 * 900


@given(st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=500), st.floats(0.0, 1.0))
def test_percentiles_are_within_one_percent_below_the_exact_value(lags: list[int], q: float) -> None:
    histogram = LagHistogram()
    for lag in lags:
        histogram.record(lag)
    exact = exact_percentile(lags, q)
    estimate = histogram.percentile(q)
    assert estimate is not None
    assert estimate <= exact
    assert exact - estimate <= max(exact // 100, 0)
