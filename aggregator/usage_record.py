"""The usage item: the worker writes one per request_id, the aggregator consumes them from the table's stream.

The aggregator is the consumer, so it owns the attribute names; the worker builds items with `to_item`. Pure: the
item format is plain DynamoDB AttributeValue dicts, no boto.

Versions (`schema_version`): 1 is every item written before the attribute existed, 2 adds it, 3 adds the cost of
each token category, the calling Region, service tier, batch flag and call status, 4 adds `day_bucket`, the key of
the usage table's index by org-local day (DAY_INDEX) that `costkeeper reconcile` recomputes aggregates from. A reader
takes all four, and a token category (or its cost) missing from an item as 0, so items already in the table (and in
the stream) still count after a category is added; an item without a status was a successful call. A version newer
than this reader knows is not read: deploy readers first.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aggregator.aggregates import AggregateKey
from catalog.model import org_local_day
from catalog.token_counts import TOKEN_FIELDS, TokenCounts, cost_field
from runtime.resources import USAGE_DAY_INDEX, USAGE_DAY_INDEX_KEY

USAGE_KEY_SEPARATOR = "#"
SCHEMA_VERSION = 4
READABLE_VERSIONS = frozenset({1, 2, 3, 4})
# The usage table's index by org and org-local day. One index partition per org and day would take all of an org's
# writes (a partition takes about 1,000 a second); DAY_BUCKETS partitions per day spread them, and a reader queries
# each. Changing the number is a new item version.
DAY_INDEX = USAGE_DAY_INDEX
DAY_INDEX_ATTRIBUTE = USAGE_DAY_INDEX_KEY
DAY_BUCKETS = 16


class UnreadableUsageItem(ValueError):
    """An item written in a usage item format this reader does not know."""


def usage_key(org_id: str, app_id: str, request_id: str) -> dict[str, dict[str, str]]:
    # request_id is unique per app: scoping the key stops one tenant from claiming another's request ids.
    return {"pk": {"S": f"{org_id}{USAGE_KEY_SEPARATOR}{app_id}{USAGE_KEY_SEPARATOR}{request_id}"}}


def day_bucket(org_id: str, day: str, bucket: int) -> str:
    """The index partition of an org-local day's usage items: one of DAY_BUCKETS."""
    return f"{org_id}{USAGE_KEY_SEPARATOR}{day}{USAGE_KEY_SEPARATOR}{bucket:02d}"


def bucket_of(request_id: str) -> int:
    # A stable hash (not Python's per-process one): the bucket is written into the item.
    return zlib.crc32(request_id.encode()) % DAY_BUCKETS


@dataclass(frozen=True)
class UsageRecord:
    org_id: str
    app_id: str
    request_id: str
    model_label: str
    bedrock_model_id: str
    timestamp: datetime
    org_timezone: str
    tokens: TokenCounts
    cost_usd_micros: int
    price_version: int
    # Epoch milliseconds: when the API accepted the event and when the worker wrote the item.
    accepted_at_ms: int
    written_at_ms: int
    # The cost's parts by token category (TokenCounts field), summing to cost_usd_micros.
    category_costs: Mapping[str, int] = field(default_factory=dict)
    calling_region: str | None = None
    service_tier: str = "standard"
    batch: bool = False
    status: str = "OK"

    def __post_init__(self) -> None:
        # Every category present, so an item's reading and its writing compare equal.
        object.__setattr__(self, "category_costs", {n: self.category_costs.get(n, 0) for n in TOKEN_FIELDS})

    @property
    def is_error(self) -> bool:
        return self.status == "ERROR"

    @property
    def usage_key(self) -> str:
        return str(usage_key(self.org_id, self.app_id, self.request_id)["pk"]["S"])

    @property
    def aggregate_key(self) -> AggregateKey:
        day = org_local_day(self.timestamp, self.org_timezone).isoformat()
        return AggregateKey(self.org_id, day, self.app_id, self.model_label)

    @property
    def day_index_key(self) -> str:
        """The item's key in DAY_INDEX: its org-local day's partition of the index."""
        return day_bucket(self.org_id, self.aggregate_key.day, bucket_of(self.request_id))

    def to_item(self, expires_at_s: int | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            **usage_key(self.org_id, self.app_id, self.request_id),
            "schema_version": {"N": str(SCHEMA_VERSION)},
            "org_id": {"S": self.org_id},
            "app_id": {"S": self.app_id},
            "request_id": {"S": self.request_id},
            "model_label": {"S": self.model_label},
            "bedrock_model_id": {"S": self.bedrock_model_id},
            "timestamp": {"S": self.timestamp.isoformat()},
            "org_timezone": {"S": self.org_timezone},
            **{name: {"N": str(count)} for name, count in self.tokens.counts().items()},
            "cost_usd_micros": {"N": str(self.cost_usd_micros)},
            "price_version": {"N": str(self.price_version)},
            "accepted_at_ms": {"N": str(self.accepted_at_ms)},
            "written_at_ms": {"N": str(self.written_at_ms)},
            **{cost_field(name): {"N": str(self.category_costs.get(name, 0))} for name in TOKEN_FIELDS},
            "service_tier": {"S": self.service_tier},
            "batch": {"N": "1" if self.batch else "0"},
            "status": {"S": self.status},
            DAY_INDEX_ATTRIBUTE: {"S": self.day_index_key},
        }
        if self.calling_region is not None:
            item["calling_region"] = {"S": self.calling_region}
        if expires_at_s is not None:
            item["expires_at"] = {"N": str(expires_at_s)}
        return item

    @classmethod
    def from_image(cls, image: dict[str, Any]) -> UsageRecord:
        """Raises KeyError, ValueError or TypeError for an image that is not a usage item this reader knows."""

        def s(name: str) -> str:
            return str(image[name]["S"])

        def n(name: str) -> int:
            return int(image[name]["N"])

        version = n("schema_version") if "schema_version" in image else 1
        if version not in READABLE_VERSIONS:
            raise UnreadableUsageItem(f"usage item schema version {version} is newer than this reader")
        return cls(
            org_id=s("org_id"),
            app_id=s("app_id"),
            request_id=s("request_id"),
            model_label=s("model_label"),
            bedrock_model_id=s("bedrock_model_id"),
            timestamp=datetime.fromisoformat(s("timestamp")),
            org_timezone=s("org_timezone"),
            tokens=TokenCounts.from_counts({name: n(name) for name in TokenCounts.model_fields if name in image}),
            cost_usd_micros=n("cost_usd_micros"),
            price_version=n("price_version"),
            accepted_at_ms=n("accepted_at_ms"),
            written_at_ms=n("written_at_ms"),
            category_costs={name: n(cost_field(name)) if cost_field(name) in image else 0 for name in TOKEN_FIELDS},
            calling_region=s("calling_region") if "calling_region" in image else None,
            service_tier=s("service_tier") if "service_tier" in image else "standard",
            batch=n("batch") == 1 if "batch" in image else False,
            status=s("status") if "status" in image else "OK",
        )
