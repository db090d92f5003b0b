"""Aggregate keys. The aggregator writes aggregates and owns how they are keyed; the API imports this to read them.

pk = ORG#{org_id}#DAY#{yyyy-mm-dd} (org-local day), sk = APP#{app_id}#MODEL#{label}: one query returns an org's day,
a begins_with on sk narrows it to one app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True, order=True)
class AggregateKey:
    org_id: str
    day: str  # ISO date, org-local
    app_id: str
    model_label: str

    def item_key(self) -> dict[str, dict[str, str]]:
        return {
            "pk": {"S": day_partition(self.org_id, self.day)},
            "sk": {"S": f"APP#{self.app_id}#MODEL#{self.model_label}"},
        }


def org_local_day(timestamp: datetime, timezone: str) -> date:
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must carry a time zone")
    return timestamp.astimezone(ZoneInfo(timezone)).date()


def day_partition(org_id: str, day: str) -> str:
    return f"ORG#{org_id}#DAY#{day}"


def app_prefix(app_id: str) -> str:
    return f"APP#{app_id}#MODEL#"


def parse_sort_key(sk: str) -> tuple[str, str]:
    """(app_id, model_label) of an aggregate item's sort key."""
    app_part, _, label = sk.partition("#MODEL#")
    return app_part.removeprefix("APP#"), label
