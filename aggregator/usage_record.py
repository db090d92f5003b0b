"""The usage item: the worker writes one per request_id, the aggregator consumes them from the table's stream.

The aggregator is the consumer, so it owns the attribute names; the worker builds items with `to_item`. Pure: the
item format is plain DynamoDB AttributeValue dicts, no boto.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregator.keys import AggregateKey, org_local_day

USAGE_KEY_SEPARATOR = "#"


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
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
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
            "org_id": {"S": self.org_id},
            "app_id": {"S": self.app_id},
            "request_id": {"S": self.request_id},
            "model_label": {"S": self.model_label},
            "bedrock_model_id": {"S": self.bedrock_model_id},
            "timestamp": {"S": self.timestamp.isoformat()},
            "org_timezone": {"S": self.org_timezone},
            "input_tokens": {"N": str(self.input_tokens)},
            "output_tokens": {"N": str(self.output_tokens)},
            "cache_read_tokens": {"N": str(self.cache_read_tokens)},
            "cache_write_tokens": {"N": str(self.cache_write_tokens)},
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
        def s(name: str) -> str:
            return str(image[name]["S"])

        def n(name: str) -> int:
            return int(image[name]["N"])

        return cls(
            org_id=s("org_id"),
            app_id=s("app_id"),
            request_id=s("request_id"),
            model_label=s("model_label"),
            bedrock_model_id=s("bedrock_model_id"),
            timestamp=datetime.fromisoformat(s("timestamp")),
            org_timezone=s("org_timezone"),
            input_tokens=n("input_tokens"),
            output_tokens=n("output_tokens"),
            cache_read_tokens=n("cache_read_tokens"),
            cache_write_tokens=n("cache_write_tokens"),
            cost_usd_micros=n("cost_usd_micros"),
            price_version=n("price_version"),
            accepted_at_ms=n("accepted_at_ms"),
            written_at_ms=n("written_at_ms"),
        )
