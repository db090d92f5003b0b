"""The usage item: the worker writes one per request_id, the aggregator consumes them from the table's stream.

The aggregator is the consumer, so it owns the attribute names; the worker builds items with `to_item`. Pure: the
item format is plain DynamoDB AttributeValue dicts, no boto.

Versions (`schema_version`): 1 is every item written before the attribute existed, 2 adds it. A reader takes both,
and a token category missing from an item as 0, so items already in the table (and in the stream) still count after
a new category is added. A version newer than this reader knows is not read: deploy readers first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.aggregates import AggregateKey
from catalog.model import org_local_day
from catalog.token_counts import TokenCounts

USAGE_KEY_SEPARATOR = "#"
SCHEMA_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})


class UnreadableUsageItem(ValueError):
    """An item written in a usage item format this reader does not know."""


def usage_key(org_id: str, app_id: str, request_id: str) -> dict[str, dict[str, str]]:
    # request_id is unique per app: scoping the key stops one tenant from claiming another's request ids.
    return {"pk": {"S": f"{org_id}{USAGE_KEY_SEPARATOR}{app_id}{USAGE_KEY_SEPARATOR}{request_id}"}}


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

    @property
    def aggregate_key(self) -> AggregateKey:
        day = org_local_day(self.timestamp, self.org_timezone).isoformat()
        return AggregateKey(self.org_id, day, self.app_id, self.model_label)

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
        }
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
        )
