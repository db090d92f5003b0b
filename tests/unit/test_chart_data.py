"""What the dashboard's charts show: exact amounts, quota states by the selection's own rule, series per label."""

from __future__ import annotations

from datetime import date

import pytest

from aggregator.aggregates import Totals
from ingest_api.chart_data import QuotaRow, app_quota_rows, daily_spend, format_usd, org_quota_rows
from ingest_api.selection import select_model
from ingest_api.spend import DayReport, RangeReport
from tests.unit import factories

DAY = date(2024, 6, 15)


@pytest.mark.parametrize(
    ("usd_micros", "text"),
    [
        (0, "$0.000000"),
        (105, "$0.000105"),
        (10_500, "$0.010500"),
        (1_000_000, "$1.000000"),
        (1_234_567_890_123, "$1,234,567.890123"),
        (-2_500_000, "-$2.500000"),
    ],
)
def test_amounts_are_exact_dollars(usd_micros: int, text: str) -> None:
    assert format_usd(usd_micros) == text


@pytest.mark.parametrize(
    ("spend", "quota", "state"),
    [
        (0, 100, "NORMAL"),
        (94, 100, "NORMAL"),
        (95, 100, "TIGHT"),  # the selection's threshold, exactly
        (99, 100, "TIGHT"),
        (100, 100, "EXHAUSTED"),
        (105, 100, "EXHAUSTED"),
        (0, 0, "EXHAUSTED"),  # a zero quota allows nothing
        (10**12, None, "UNCAPPED"),
        # Large amounts where a float percentage would land on the wrong side of 95%.
        (949_999_999_999_999, 10**15, "NORMAL"),
        (950_000_000_000_000, 10**15, "TIGHT"),
    ],
)
def test_a_quota_row_is_in_the_state_model_selection_would_see(spend: int, quota: int | None, state: str) -> None:
    assert QuotaRow("premium", "org", spend, quota).state == state


def test_a_row_describes_its_amounts() -> None:
    assert QuotaRow("standard", "org", 2800, 2900).describe() == "$0.002800 of $0.002900 (96.6%)"
    assert QuotaRow("standard", "app", 2800, None).describe() == "$0.002800, no app quota"
    assert QuotaRow("standard", "app", 2800, None).used_percent is None


def test_org_rows_follow_the_ordering_and_keep_a_label_that_has_spend_but_no_model_any_more() -> None:
    org = factories.org(quotas={"premium": 1_000, "economy": 10}, ordering=["economy", "premium", "standard"])
    report = DayReport(
        org,
        None,
        DAY,
        {"premium": Totals.of(cost_usd_micros=960), "retired": Totals.of(cost_usd_micros=7)},
        {"premium": 1_000, "standard": None, "economy": 10},
        [],
    )
    rows = org_quota_rows(report)
    assert [(r.model_label, r.spend_usd_micros, r.quota_usd_micros, r.state) for r in rows] == [
        ("economy", 0, 10, "NORMAL"),
        ("premium", 960, 1_000, "TIGHT"),
        ("standard", 0, None, "UNCAPPED"),
        ("retired", 7, None, "UNCAPPED"),
    ]


def test_app_rows_show_every_cap_on_each_label_and_the_app_spend_of_an_uncapped_one() -> None:
    org = factories.org(quotas={"premium": 1_000})
    app = factories.app(quotas={"premium": 100, "economy": 50})
    selection = select_model(org, app, {"premium": 500}, {"premium": 100, "standard": 42, "economy": 49})
    app_day = DayReport(org, app, DAY, {"standard": Totals.of(cost_usd_micros=42)}, {}, ["chatbot"])
    rows = app_quota_rows(selection, app_day)
    assert [(r.model_label, r.scope, r.spend_usd_micros, r.quota_usd_micros, r.state) for r in rows] == [
        ("premium", "org", 500, 1_000, "NORMAL"),
        ("premium", "app", 100, 100, "EXHAUSTED"),
        ("standard", "app", 42, None, "UNCAPPED"),
        ("economy", "app", 49, 50, "TIGHT"),
    ]


def test_daily_spend_has_a_series_per_label_with_spend_in_the_org_order() -> None:
    org = factories.org(ordering=["standard", "premium", "economy"])
    days = [date(2024, 6, d) for d in (13, 14, 15)]
    by_day = [
        {},
        {"premium": Totals.of(cost_usd_micros=5)},
        {"premium": Totals.of(cost_usd_micros=7), "standard": Totals.of(cost_usd_micros=1)},
    ]
    assert daily_spend(RangeReport(org, None, days, by_day)) == {"standard": [0, 0, 1], "premium": [0, 5, 7]}
    assert daily_spend(RangeReport(org, None, days, [{}, {}, {}])) == {}
