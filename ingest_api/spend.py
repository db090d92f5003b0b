"""Reading an org's daily aggregates, through the aggregator's key layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aggregator.keys import day_partition, parse_sort_key
from aggregator.rollup import Totals

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


@dataclass
class DaySpend:
    """One org-local day of one org: totals per (app, model label)."""

    by_app_label: dict[tuple[str, str], Totals] = field(default_factory=dict)

    def org_by_label(self) -> dict[str, Totals]:
        result: dict[str, Totals] = {}
        for (_, label), totals in self.by_app_label.items():
            result.setdefault(label, Totals()).merge(totals)
        return result

    def app_by_label(self, app_id: str) -> dict[str, Totals]:
        return {label: t for (app, label), t in self.by_app_label.items() if app == app_id}


async def read_day(ddb: DynamoDBClient, table: str, org_id: str, day: str) -> DaySpend:
    spend = DaySpend()
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": day_partition(org_id, day)}},
        # Strong reads: model selection must see spend the aggregator has just committed.
        "ConsistentRead": True,
    }
    while True:
        page = await ddb.query(**kwargs)
        for item in page.get("Items", []):
            spend.by_app_label[parse_sort_key(item["sk"]["S"])] = Totals.from_item(item)
        if "LastEvaluatedKey" not in page:
            return spend
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def cost_by_label(totals: dict[str, Totals]) -> dict[str, int]:
    return {label: t.cost_usd_micros for label, t in totals.items()}
