"""Quota-aware model selection. Pure: spend and quotas in, a decision out.

Quota scope ORG: the org's quota for a label caps the whole org's spend on it; an app quota, where set, also caps
that app's own spend. Quota scope APP: each app is capped on its own spend, by its app quota or else by the org's
quota for that label used as the per-app default.

The first label of the ordering with headroom under every cap wins, never one before the day's sticky position: once
an app has fallen back, it stays on the cheaper model for the rest of the org-local day.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Literal

from catalog.model import App, Org

TIGHT_PERCENT = 95.0
Mode = Literal["NORMAL", "TIGHT", "EXHAUSTED"]


@dataclass(frozen=True)
class Cap:
    scope: Literal["org", "app"]
    spend_usd_micros: int
    quota_usd_micros: int

    @property
    def percent(self) -> float:
        if self.quota_usd_micros == 0:
            return 100.0
        return 100.0 * self.spend_usd_micros / self.quota_usd_micros

    @property
    def exhausted(self) -> bool:
        return self.spend_usd_micros >= self.quota_usd_micros

    @property
    def tight(self) -> bool:
        # Exact: the float percent can land on the wrong side of the threshold for large micro-USD amounts.
        return 100 * self.spend_usd_micros >= Fraction(TIGHT_PERCENT) * self.quota_usd_micros


@dataclass(frozen=True)
class LabelStatus:
    model_label: str
    caps: tuple[Cap, ...]

    @property
    def available(self) -> bool:
        return not any(cap.exhausted for cap in self.caps)

    @property
    def percent(self) -> float | None:
        """Use of the tightest cap; None when the label has no quota at all."""
        return max((cap.percent for cap in self.caps), default=None)

    @property
    def tight(self) -> bool:
        return any(cap.tight for cap in self.caps)


@dataclass(frozen=True)
class Selection:
    model_label: str | None
    position: int  # index into the ordering; len(ordering) when everything is exhausted
    mode: Mode
    statuses: tuple[LabelStatus, ...]


def org_quota(org: Org, label: str) -> int | None:
    """The cap on the whole org's spend on a label: the org's quota in ORG scope; none in APP scope."""
    if org.settings.quota_scope == "ORG":
        return org.settings.daily_quotas_usd_micros.get(label)
    return None


def app_quota(org: Org, app: App, label: str) -> int | None:
    """The cap on one app's own spend on a label: its own quota, or in APP scope the org's quota as its default."""
    quota = app.settings.daily_quotas_usd_micros.get(label)
    if quota is None and org.settings.quota_scope == "APP":
        return org.settings.daily_quotas_usd_micros.get(label)
    return quota


def label_caps(org: Org, app: App, label: str, org_spend: dict[str, int], app_spend: dict[str, int]) -> tuple[Cap, ...]:
    caps: list[Cap] = []
    org_cap = org_quota(org, label)
    if org_cap is not None:
        caps.append(Cap("org", org_spend.get(label, 0), org_cap))
    app_cap = app_quota(org, app, label)
    if app_cap is not None:
        caps.append(Cap("app", app_spend.get(label, 0), app_cap))
    return tuple(caps)


def select_model(
    org: Org, app: App, org_spend: dict[str, int], app_spend: dict[str, int], sticky_position: int = 0
) -> Selection:
    ordering = app.ordering(org)
    statuses = tuple(LabelStatus(label, label_caps(org, app, label, org_spend, app_spend)) for label in ordering)
    for position in range(max(sticky_position, 0), len(ordering)):
        status = statuses[position]
        if status.available:
            mode: Mode = "TIGHT" if status.tight else "NORMAL"
            return Selection(status.model_label, position, mode, statuses)
    return Selection(None, len(ordering), "EXHAUSTED", statuses)


def fail_safe(selection: Selection, metering_lag_s: float | None, max_lag_s: float) -> tuple[Selection, bool]:
    """The selection as it may be answered, and whether it is degraded: spend known only up to metering_lag_s ago.

    Spend is what the aggregator has counted. When it lags more than max_lag_s behind (or its lag is unknown), the
    spend read may be far below the real one, so no answer says NORMAL: a NORMAL label becomes TIGHT, which clients
    cache briefly, and they ask again soon after the aggregator catches up.
    """
    degraded = metering_lag_s is None or metering_lag_s > max_lag_s
    if degraded and selection.mode == "NORMAL":
        return replace(selection, mode="TIGHT"), True
    return selection, degraded


def describe_labels(selection: Selection) -> list[dict[str, object]]:
    """Each label's standing, as model-selection answers (and its 429) report it."""
    return [
        {
            "model_label": status.model_label,
            "available": status.available,
            "quota_used_percent": None if status.percent is None else round(status.percent, 2),
            "caps": [
                {"scope": c.scope, "spend_usd_micros": c.spend_usd_micros, "quota_usd_micros": c.quota_usd_micros}
                for c in status.caps
            ],
        }
        for status in selection.statuses
    ]
