"""Prices over time: each version of a set of priced labels and the instant it took effect.

An org's model labels have one history (Org.price_history), each app's inference profiles another
(App.profile_history): both are this type, over what prices their labels (a model spec, a profile's routes).

An event is priced with the prices in force at its own timestamp, not when a worker gets to it: a backlog, a retry
or a redrive from the dead-letter queue across a price change still prices it as its call was billed. A label an org
removes keeps its prices in the versions before the removal, so events of it still queued price too.

A change is saved with an effective-from instant a notice period after the save (the API's
CK_PRICE_CHANGE_NOTICE_S, 5 minutes by default): every process that caches the org (the worker for
CK_CATALOG_CACHE_TTL_S) has read the new version before any event it applies to can be priced. An event of a label
that had no price at its timestamp (added within the notice period) takes the label's first price.

Versions stay as long as an event of their time can still arrive (HISTORY_KEEP_S after a later one took effect:
beyond the queue's and the dead-letter queue's retention), and at most MAX_VERSIONS of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

HISTORY_KEEP_S = 31 * 86400
MAX_VERSIONS = 30
# The first version of an org is in force for every instant before the second takes effect.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)

Priced = TypeVar("Priced", bound=BaseModel)


class PriceVersion(BaseModel, Generic[Priced]):
    model_config = ConfigDict(frozen=True)

    version: int = Field(ge=1)
    effective_from: AwareDatetime
    models: dict[str, Priced]  # label -> what prices it


class PriceHistory(BaseModel, Generic[Priced]):
    """Versions in order of version (and so of effective_from)."""

    model_config = ConfigDict(frozen=True)

    versions: tuple[PriceVersion[Priced], ...] = Field(min_length=1)

    @classmethod
    def first(cls, version: int, models: Mapping[str, Priced]) -> PriceHistory[Priced]:
        # Validated from plain data, so a parametrised history (PriceHistory[CatalogPriced]) builds its own versions.
        return cls.model_validate({"versions": [{"version": version, "effective_from": BEGINNING, "models": models}]})

    @property
    def latest(self) -> PriceVersion[Priced]:
        return self.versions[-1]

    def in_force(self, instant: datetime) -> PriceVersion[Priced]:
        current = self.versions[0]
        for version in self.versions:
            if version.effective_from <= instant:
                current = version
        return current

    def for_label(self, label: str, instant: datetime) -> PriceVersion[Priced] | None:
        """The version that prices `label` at `instant`: the one in force then; if it lacks the label, the nearest
        earlier one with it (the label was removed since), else the nearest later one (added since)."""
        current = self.in_force(instant)
        if label in current.models:
            return current
        index = self.versions.index(current)
        for earlier in reversed(self.versions[:index]):
            if label in earlier.models:
                return earlier
        for later in self.versions[index + 1 :]:
            if label in later.models:
                return later
        return None

    def changed(self, models: Mapping[str, Priced], effective_from: datetime, now: datetime) -> PriceHistory[Priced]:
        """This history with a new version taking effect at effective_from (never before the latest one)."""
        effective_from = max(effective_from, self.latest.effective_from)
        added = type(self.latest)(version=self.latest.version + 1, effective_from=effective_from, models=dict(models))
        versions = [*self.versions, added]
        horizon = now - timedelta(seconds=HISTORY_KEEP_S)
        # A version is still needed while the one after it took effect less than HISTORY_KEEP_S ago.
        kept = [v for v, after in pairwise(versions) if after.effective_from > horizon]
        kept.append(added)
        return type(self)(versions=tuple(kept[-MAX_VERSIONS:]))
