"""Spend against quotas: the day reads and the model selection, over the aggregator's daily aggregates.

The one place that knows which quota applies to which view (selection.org_quota / app_quota), what "today" is for an
org (its own time zone), and how long an answer may be cached. Routes render what this returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from aggregator.aggregates import AggregateReader, Totals
from catalog.model import App, Org
from catalog.store import CatalogStore
from ingest_api.fallbacks import FallbackStore
from ingest_api.selection import Selection, app_quota, describe_labels, fail_safe, org_quota, select_model

# How long a client may reuse a model-selection answer: briefly when a quota is nearly used up. While the metered
# spend lags (selection.fail_safe), answers are degraded to TIGHT and kept for a shorter time still (settings).
CACHE_TIGHT_S = 60
CACHE_NORMAL_S = 300


class QuotaExceeded(Exception):
    """Every label of the app's ordering has used its daily quota."""

    def __init__(self, day: date, labels: list[dict[str, object]], retry_after_s: int) -> None:
        super().__init__("every model in the ordering has used its daily quota")
        self.details = {"date": day.isoformat(), "labels": labels}
        self.retry_after_s = retry_after_s
        self.max_age_s = CACHE_TIGHT_S


@dataclass(frozen=True)
class DayReport:
    org: Org
    app: App | None  # None: the whole org
    day: date
    by_label: dict[str, Totals]
    quotas: dict[str, int | None]
    apps: list[str]  # apps with spend that day (org reports)


@dataclass(frozen=True)
class ModelChoice:
    org: Org
    app: App
    day: date
    selection: Selection
    max_age_s: int
    # How far behind the counted spend was (None: unknown), and whether that degraded the answer.
    metering_lag_s: float | None = None
    degraded: bool = False

    @property
    def model_label(self) -> str:
        assert self.selection.model_label is not None
        return self.selection.model_label


class SpendService:
    def __init__(
        self,
        catalog: CatalogStore,
        aggregates: AggregateReader,
        fallbacks: FallbackStore,
        clock: Callable[[], datetime],
        on_selection: Callable[[str], None] = lambda mode: None,
        metering_lag_s: Callable[[], float | None] = lambda: 0.0,
        max_lag_s: float = 30.0,
        degraded_max_age_s: int = 10,
    ) -> None:
        self._catalog = catalog
        self._aggregates = aggregates
        self._fallbacks = fallbacks
        self._clock = clock
        self._on_selection = on_selection
        self._metering_lag_s = metering_lag_s
        self._max_lag_s = max_lag_s
        self._degraded_max_age_s = degraded_max_age_s

    def today(self, org: Org) -> date:
        return org.local_day(self._clock())

    async def org_day(self, org_id: str, day: date | None) -> DayReport:
        org = await self._catalog.require_org(org_id)
        day = day or self.today(org)
        spend = await self._aggregates.day(org_id, day.isoformat())
        quotas = {label: org_quota(org, label) for label in org.settings.models}
        apps = sorted({app for app, _ in spend.by_app_label})
        return DayReport(org, None, day, spend.org_by_label(), quotas, apps)

    async def app_day(self, org_id: str, app_id: str, day: date | None) -> DayReport:
        org = await self._catalog.require_org(org_id)
        app = await self._catalog.require_app(org_id, app_id)
        day = day or self.today(org)
        spend = await self._aggregates.day(org_id, day.isoformat())
        quotas = {label: app_quota(org, app, label) for label in sorted(app.labels(org))}
        return DayReport(org, app, day, spend.app_by_label(app_id), quotas, [app_id])

    async def choose_model(self, org_id: str, app_id: str) -> ModelChoice:
        """The label to use now; raises QuotaExceeded when every label is used up."""
        org = await self._catalog.require_org(org_id)
        app = await self._catalog.require_app(org_id, app_id)
        today = self.today(org)
        spend = await self._aggregates.day(org_id, today.isoformat())
        sticky = await self._fallbacks.position(org_id, app_id, today.isoformat())
        selection = select_model(
            org, app, _cost_by_label(spend.org_by_label()), _cost_by_label(spend.app_by_label(app_id)), sticky
        )
        if selection.position > sticky:
            await self._fallbacks.raise_to(org_id, app_id, today.isoformat(), selection.position)
        lag_s = self._metering_lag_s()
        selection, degraded = fail_safe(selection, lag_s, self._max_lag_s)
        self._on_selection(selection.mode)
        if selection.model_label is None:
            midnight = org.day_start(today + timedelta(days=1))
            retry_after_s = max(1, int((midnight - self._clock()).total_seconds()))
            raise QuotaExceeded(today, describe_labels(selection), retry_after_s)
        if degraded:
            max_age_s = min(self._degraded_max_age_s, CACHE_TIGHT_S)
        else:
            max_age_s = CACHE_TIGHT_S if selection.mode == "TIGHT" else CACHE_NORMAL_S
        return ModelChoice(org, app, today, selection, max_age_s, lag_s, degraded)


def _cost_by_label(totals: dict[str, Totals]) -> dict[str, int]:
    return {label: t.cost_usd_micros for label, t in totals.items()}
