"""Spend against quotas: the day and range reads and the model selection, over the aggregator's daily aggregates.

The one place that knows which quota applies to which view (selection.org_quota / app_quota), what "today" is for an
org (its own time zone), which days a range covers, and how long an answer may be cached. Routes render what this
returns.
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
# A range read covers at most a quarter of a year of org-local days: one Query per day, so the bound is the cost.
MAX_RANGE_DAYS = 92


class DateRangeReversed(ValueError):
    """A range whose last day comes before its first."""


class DateRangeTooLong(ValueError):
    """A range of more than MAX_RANGE_DAYS days."""


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
class RangeReport:
    """Spend per model label on each org-local day of a range, first to last."""

    org: Org
    app: App | None  # None: the whole org
    days: list[date]
    by_day: list[dict[str, Totals]]  # aligned with days

    @property
    def labels(self) -> list[str]:
        return report_labels(self.org, self.app, {label for day in self.by_day for label in day})

    def by_label(self) -> dict[str, Totals]:
        return {label: Totals.sum(day.get(label, Totals()) for day in self.by_day) for label in self.labels}


@dataclass(frozen=True)
class OrgSpend:
    """One org's spend on its own today."""

    org: Org
    day: date
    total: Totals


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

    async def org_range(self, org_id: str, first: date, last: date) -> RangeReport:
        days = day_range(first, last)
        org = await self._catalog.require_org(org_id)
        return await self._range(org, None, days)

    async def app_range(self, org_id: str, app_id: str, first: date, last: date) -> RangeReport:
        days = day_range(first, last)
        org = await self._catalog.require_org(org_id)
        app = await self._catalog.require_app(org_id, app_id)
        return await self._range(org, app, days)

    async def recent_days(self, org: Org, app: App | None, count: int) -> RangeReport:
        """The last `count` org-local days, today included."""
        today = self.today(org)
        return await self._range(org, app, day_range(today - timedelta(days=count - 1), today))

    async def _range(self, org: Org, app: App | None, days: list[date]) -> RangeReport:
        spends = await self._aggregates.days([(org.org_id, day.isoformat()) for day in days])
        by_day = [spend.org_by_label() if app is None else spend.app_by_label(app.app_id) for spend in spends]
        return RangeReport(org, app, days, by_day)

    async def orgs_today(self, limit: int) -> list[OrgSpend]:
        """Up to `limit` orgs with what each has spent on its own today, the biggest spender first."""
        orgs = await self._catalog.list_orgs(limit)
        days = [self.today(org) for org in orgs]
        spends = await self._aggregates.days(
            [(org.org_id, day.isoformat()) for org, day in zip(orgs, days, strict=True)]
        )
        rows = [
            OrgSpend(org, day, Totals.sum(spend.by_app_label.values()))
            for org, day, spend in zip(orgs, days, spends, strict=True)
        ]
        return sorted(rows, key=lambda row: (-row.total.cost_usd_micros, row.org.org_id))

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
        choice, sticky = await self._select(org, app)
        selection = choice.selection
        if selection.position > sticky:
            await self._fallbacks.raise_to(org_id, app_id, choice.day.isoformat(), selection.position)
        self._on_selection(selection.mode)
        if selection.model_label is None:
            midnight = org.day_start(choice.day + timedelta(days=1))
            retry_after_s = max(1, int((midnight - self._clock()).total_seconds()))
            raise QuotaExceeded(choice.day, describe_labels(selection), retry_after_s)
        return choice

    async def peek_model(self, org: Org, app: App) -> ModelChoice:
        """What choose_model would answer now, exhausted included (no label), without recording the answer: for
        people looking on, whose looking must not move an app's fallback or count as a selection."""
        choice, _ = await self._select(org, app)
        return choice

    async def _select(self, org: Org, app: App) -> tuple[ModelChoice, int]:
        """The selection now as it may be answered (degraded while spend lags), and the day's sticky position."""
        today = self.today(org)
        spend = await self._aggregates.day(org.org_id, today.isoformat())
        sticky = await self._fallbacks.position(org.org_id, app.app_id, today.isoformat())
        selection = select_model(
            org, app, _cost_by_label(spend.org_by_label()), _cost_by_label(spend.app_by_label(app.app_id)), sticky
        )
        lag_s = self._metering_lag_s()
        selection, degraded = fail_safe(selection, lag_s, self._max_lag_s)
        if degraded:
            max_age_s = min(self._degraded_max_age_s, CACHE_TIGHT_S)
        else:
            max_age_s = CACHE_TIGHT_S if selection.mode != "NORMAL" else CACHE_NORMAL_S
        return ModelChoice(org, app, today, selection, max_age_s, lag_s, degraded), sticky


def day_range(first: date, last: date) -> list[date]:
    """Every day from first to last, both included; raises for a reversed or overlong range."""
    if last < first:
        raise DateRangeReversed(f"to ({last.isoformat()}) is before from ({first.isoformat()})")
    count = (last - first).days + 1
    if count > MAX_RANGE_DAYS:
        raise DateRangeTooLong(f"the range covers {count} days; at most {MAX_RANGE_DAYS} can be read at once")
    return [first + timedelta(days=offset) for offset in range(count)]


def report_labels(org: Org, app: App | None, seen: set[str]) -> list[str]:
    """The org's labels in its preference order, then an app's own (its inference profiles, in the app's order), then
    any other label that has spend (one since removed)."""
    ordering = list(org.settings.model_ordering)
    if app is not None:
        ordering += [label for label in app.ordering(org) if label not in ordering]
    return ordering + sorted(seen - set(ordering))


def _cost_by_label(totals: dict[str, Totals]) -> dict[str, int]:
    return {label: t.cost_usd_micros for label, t in totals.items()}
