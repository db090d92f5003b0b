"""What the dashboard's charts show, shaped from the spend service's reports and the pipeline's samples. Pure.

Money stays integer micro-USD until it is written out (format_usd); a chart's bar or line is given those integers
and only its drawing scales them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aggregator.aggregates import Totals
from ingest_api.pipeline_history import PipelineSample
from ingest_api.selection import Cap, Selection
from ingest_api.spend import DayReport, RangeReport, report_labels

QuotaState = Literal["NORMAL", "TIGHT", "EXHAUSTED", "UNCAPPED"]


def format_usd(usd_micros: int) -> str:
    """Exact dollars: every micro-USD shown, so a chart label can be checked against the aggregate to the unit."""
    sign = "-" if usd_micros < 0 else ""
    dollars, micros = divmod(abs(usd_micros), 1_000_000)
    return f"{sign}${dollars:,}.{micros:06d}"


@dataclass(frozen=True)
class QuotaRow:
    """One label's spend today against one cap (or against none)."""

    model_label: str
    scope: Literal["org", "app"]
    spend_usd_micros: int
    quota_usd_micros: int | None

    @property
    def state(self) -> QuotaState:
        if self.quota_usd_micros is None:
            return "UNCAPPED"
        # The selection's own rule, so the dashboard marks exactly what model selection acts on.
        cap = Cap(self.scope, self.spend_usd_micros, self.quota_usd_micros)
        if cap.exhausted:
            return "EXHAUSTED"
        return "TIGHT" if cap.tight else "NORMAL"

    @property
    def used_percent(self) -> float | None:
        if self.quota_usd_micros is None:
            return None
        return Cap(self.scope, self.spend_usd_micros, self.quota_usd_micros).percent

    def describe(self) -> str:
        if self.quota_usd_micros is None:
            return f"{format_usd(self.spend_usd_micros)}, no {self.scope} quota"
        return f"{format_usd(self.spend_usd_micros)} of {format_usd(self.quota_usd_micros)} ({self.used_percent:.1f}%)"


def org_quota_rows(report: DayReport) -> list[QuotaRow]:
    """An org's day: the org's spend per label against the org-wide quota (none in APP quota scope)."""
    return [
        QuotaRow(label, "org", _cost(report.by_label, label), report.quotas.get(label))
        for label in report_labels(report.org, report.app, set(report.by_label))
    ]


def app_quota_rows(selection: Selection, app_day: DayReport) -> list[QuotaRow]:
    """An app's day as its model selection sees it: each label of its ordering against every cap that applies
    (the org-wide one in ORG quota scope, the app's own); a label with no cap at all is shown uncapped."""
    rows: list[QuotaRow] = []
    for status in selection.statuses:
        if not status.caps:
            rows.append(QuotaRow(status.model_label, "app", _cost(app_day.by_label, status.model_label), None))
        rows.extend(
            QuotaRow(status.model_label, cap.scope, cap.spend_usd_micros, cap.quota_usd_micros) for cap in status.caps
        )
    return rows


def daily_spend(report: RangeReport) -> dict[str, list[int]]:
    """Spend on each day of the range for every label that has any, in the org's label order."""
    series = {label: [_cost(day, label) for day in report.by_day] for label in report.labels}
    return {label: values for label, values in series.items() if any(values)}


def _cost(by_label: dict[str, Totals], label: str) -> int:
    totals = by_label.get(label)
    return 0 if totals is None else totals.cost_usd_micros


@dataclass(frozen=True)
class PipelineSeries:
    at_s: list[float]
    queued: list[int]
    dead_letters: list[int]
    lag_s: list[float]


def pipeline_series(samples: list[PipelineSample]) -> PipelineSeries:
    return PipelineSeries(
        at_s=[s.at_s for s in samples],
        queued=[s.queued for s in samples],
        dead_letters=[s.dead_letters for s in samples],
        lag_s=[s.lag_s for s in samples],
    )
