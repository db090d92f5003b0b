"""The daily aggregate item: its key, its counters, the update that adds to it, and how it is read back.

The aggregator writes aggregates, so it owns their format; the API's reads (and the operator's tools) come through
here too, so the layout is written down once.

pk = ORG#{org_id}#DAY#{yyyy-mm-dd} (org-local day), sk = APP#{app_id}#MODEL#{label}: one query returns an org's day,
a begins_with on sk narrows it to one app. Counters are `cost_usd_micros` and its part per token category
(`{category}_cost_usd_micros`, summing to it), the tokens of each category (TokenCounts' field names),
`request_count` and `error_count` (calls that reported status ERROR), each moved only by ADD; a counter missing from
an item reads as 0, so an aggregate written before a counter existed reads alike.

Exactly once (schema_version 2): the aggregator's update names the stream records it counts, one shard's records of
this key from a first to a last position (aggregator/stream_record.py position), and is conditional on the item's
`applied#{shard_id}`, the last position of that shard already counted here, being below the first; it sets it to the
last. Readers of one shard go in shard order, so whatever replays a record (a retried or differently bounded Lambda
batch, a new mapping from TRIM_HORIZON, a restarted reader, the Lambda and the long-running aggregator at once) finds
it counted and skips it. Version 1 (no schema_version) had no positions; it reads alike, and its first guarded update
adds them.

A correction (aggregator/reconcile.py) ADDs the difference between what an aggregate holds and what the usage items
say it should, so counting by the aggregator goes on around it; `corrections` counts them, and each is conditional on
the count it was computed from, so two reconciles at once cannot apply one difference twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from catalog.model import org_local_day
from catalog.token_counts import TOKEN_FIELDS, TokenCounts, category, cost_field

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = [
    "COUNTERS",
    "AggregateKey",
    "AggregateReader",
    "AggregateState",
    "DaySpend",
    "Guard",
    "Totals",
    "aggregate_update",
    "app_prefix",
    "applied_attribute",
    "day_partition",
    "org_local_day",
    "parse_sort_key",
    "read_day",
]

SCHEMA_VERSION = 2
APPLIED_PREFIX = "applied#"
CORRECTIONS = "corrections"
COST = "cost_usd_micros"
# Day partitions read at once by a multi-day read: enough to hide round trips, few enough that one range read (up to
# a quarter of a year) or one dashboard cannot flood the table.
DAYS_IN_FLIGHT = 8
REQUESTS = "request_count"
ERRORS = "error_count"
COST_FIELDS: tuple[str, ...] = tuple(cost_field(name) for name in TOKEN_FIELDS)
# Every counter of an aggregate item, in the order reads present them.
COUNTERS: tuple[str, ...] = (COST, *TOKEN_FIELDS, REQUESTS, *COST_FIELDS, ERRORS)


class Countable(Protocol):
    """One request as an aggregate counts it (aggregator.usage_record.UsageRecord)."""

    @property
    def cost_usd_micros(self) -> int: ...

    @property
    def category_costs(self) -> Mapping[str, int]: ...

    @property
    def tokens(self) -> TokenCounts: ...

    @property
    def is_error(self) -> bool: ...


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


def day_partition(org_id: str, day: str) -> str:
    return f"ORG#{org_id}#DAY#{day}"


def app_prefix(app_id: str) -> str:
    return f"APP#{app_id}#MODEL#"


def parse_sort_key(sk: str) -> tuple[str, str]:
    """(app_id, model_label) of an aggregate item's sort key."""
    app_part, _, label = sk.partition("#MODEL#")
    return app_part.removeprefix("APP#"), label


def _zero_tokens() -> dict[str, int]:
    return dict.fromkeys(TOKEN_FIELDS, 0)


@dataclass
class Totals:
    """Signed sums of an aggregate's counters: a delta to add, or what an item holds."""

    cost_usd_micros: int = 0
    tokens: dict[str, int] = field(default_factory=_zero_tokens)
    request_count: int = 0
    # The cost's part per token category (TokenCounts field names), and calls that reported an error.
    costs: dict[str, int] = field(default_factory=_zero_tokens)
    error_count: int = 0

    @classmethod
    def of(cls, **counters: int) -> Totals:
        """From counter names (COUNTERS); those not given are 0."""
        unknown = set(counters) - set(COUNTERS)
        if unknown:
            raise TypeError(f"not aggregate counters: {sorted(unknown)}")
        return cls(
            counters.get(COST, 0),
            {name: counters.get(name, 0) for name in TOKEN_FIELDS},
            counters.get(REQUESTS, 0),
            {name: counters.get(cost_field(name), 0) for name in TOKEN_FIELDS},
            counters.get(ERRORS, 0),
        )

    def add(self, request: Countable, sign: int = 1) -> None:
        """Count one request (sign 1) or take one back (sign -1)."""
        self.cost_usd_micros += sign * request.cost_usd_micros
        for name, count in request.tokens.counts().items():
            self.tokens[name] = self.tokens.get(name, 0) + sign * count
        for name, cost in request.category_costs.items():
            self.costs[name] = self.costs.get(name, 0) + sign * cost
        self.request_count += sign
        self.error_count += sign * int(request.is_error)

    def merge(self, other: Totals) -> None:
        self.cost_usd_micros += other.cost_usd_micros
        for name, count in other.tokens.items():
            self.tokens[name] = self.tokens.get(name, 0) + count
        for name, cost in other.costs.items():
            self.costs[name] = self.costs.get(name, 0) + cost
        self.request_count += other.request_count
        self.error_count += other.error_count

    @classmethod
    def sum(cls, many: Iterable[Totals]) -> Totals:
        total = cls()
        for totals in many:
            total.merge(totals)
        return total

    def is_zero(self) -> bool:
        return not any(self.as_dict().values())

    def as_dict(self) -> dict[str, int]:
        return {
            COST: self.cost_usd_micros,
            **self.tokens,
            REQUESTS: self.request_count,
            **{cost_field(name): cost for name, cost in self.costs.items()},
            ERRORS: self.error_count,
        }

    def by_category(self) -> dict[str, dict[str, int]]:
        """{category: {"tokens": n, "cost_usd_micros": m}}, as the reads present it."""
        return {
            category(name): {"tokens": self.tokens.get(name, 0), COST: self.costs.get(name, 0)} for name in TOKEN_FIELDS
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Totals:
        return cls.of(**{name: int(item[name]["N"]) for name in COUNTERS if name in item})


def applied_attribute(shard_id: str) -> str:
    """The attribute holding the last position of a shard counted in an aggregate."""
    return f"{APPLIED_PREFIX}{shard_id}"


@dataclass(frozen=True)
class Guard:
    """The stream records an update counts: this key's records of one shard, from first to last position."""

    shard_id: str
    first_position: str
    last_position: str


def _key_parts(key: AggregateKey, now_ms: str) -> tuple[str, dict[str, Any]]:
    expression = (
        "org_id = :org, app_id = :app, model_label = :label, #day = :day, updated_at_ms = :now, schema_version = :v"
    )
    values = {
        ":org": {"S": key.org_id},
        ":app": {"S": key.app_id},
        ":label": {"S": key.model_label},
        ":day": {"S": key.day},
        ":now": {"N": now_ms},
        ":v": {"N": str(SCHEMA_VERSION)},
    }
    return expression, values


def aggregate_update(
    table: str, key: AggregateKey, totals: Totals, now_ms: str, guard: Guard | None = None
) -> dict[str, Any]:
    """UpdateItem arguments: ADD every counter, SET the key's parts for readers of the raw item.

    With a guard, the update applies only if none of its records was counted before, and records the last one; a
    refused update returns the item as it is (ReturnValuesOnConditionCheckFailure), so the caller sees how far it got.
    """
    counters = totals.as_dict()
    values = {f":{name}": {"N": str(value)} for name, value in counters.items()}
    adds = ", ".join(f"{name} :{name}" for name in counters)
    sets, key_values = _key_parts(key, now_ms)
    update: dict[str, Any] = {
        "TableName": table,
        "Key": key.item_key(),
        "UpdateExpression": f"ADD {adds} SET {sets}",
        "ExpressionAttributeNames": {"#day": "day"},
        "ExpressionAttributeValues": {**values, **key_values},
    }
    if guard is not None:
        update["UpdateExpression"] += ", #applied = :last"
        update["ConditionExpression"] = "attribute_not_exists(#applied) OR #applied < :first"
        update["ExpressionAttributeNames"]["#applied"] = applied_attribute(guard.shard_id)
        update["ExpressionAttributeValues"][":first"] = {"S": guard.first_position}
        update["ExpressionAttributeValues"][":last"] = {"S": guard.last_position}
        update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return update


@dataclass(frozen=True)
class AggregateState:
    """An aggregate item as its writers see it: the counters, and how far each shard's records are counted in them."""

    totals: Totals
    applied: dict[str, str]  # shard id -> last position counted
    corrections: int = 0  # corrections applied to it so far
    exists: bool = True

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> AggregateState:
        if not item:
            return cls(Totals(), {}, exists=False)
        applied = {
            name.removeprefix(APPLIED_PREFIX): str(value["S"])
            for name, value in item.items()
            if name.startswith(APPLIED_PREFIX)
        }
        corrections = int(item[CORRECTIONS]["N"]) if CORRECTIONS in item else 0
        return cls(Totals.from_item(item), applied, corrections)


def aggregate_correction(
    table: str, key: AggregateKey, seen: AggregateState, delta: Totals, raise_to: Mapping[str, str], now_ms: str
) -> dict[str, Any]:
    """UpdateItem arguments that ADD `delta` to an aggregate and raise the applied positions named in `raise_to`.

    The delta is what the aggregate lacked when `seen` was read, so it stays right however much the aggregator counts
    after the positions it was computed at. The update is refused (and must be computed again) if the item was
    created or deleted since, if another correction came first, or if a position it raises has moved.
    """
    counters = delta.as_dict()
    names: dict[str, str] = {"#day": "day", "#corr": CORRECTIONS}
    values: dict[str, Any] = {f":{name}": {"N": str(value)} for name, value in counters.items()}
    adds = [f"{name} :{name}" for name in counters] + ["#corr :one"]
    values[":one"] = {"N": "1"}
    key_sets, key_values = _key_parts(key, now_ms)
    values.update(key_values)
    sets = [key_sets]
    conditions = ["attribute_exists(pk)" if seen.exists else "attribute_not_exists(pk)"]
    if seen.corrections:
        conditions.append("#corr = :seen")
        values[":seen"] = {"N": str(seen.corrections)}
    elif seen.exists:
        conditions.append("attribute_not_exists(#corr)")
    for i, (shard_id, last) in enumerate(sorted(raise_to.items())):
        names[f"#a{i}"] = applied_attribute(shard_id)
        values[f":a{i}"] = {"S": last}
        sets.append(f"#a{i} = :a{i}")
        if shard_id in seen.applied:
            values[f":s{i}"] = {"S": seen.applied[shard_id]}
            conditions.append(f"#a{i} = :s{i}")
        elif seen.exists:
            conditions.append(f"attribute_not_exists(#a{i})")
    return {
        "TableName": table,
        "Key": key.item_key(),
        "UpdateExpression": f"ADD {', '.join(adds)} SET {', '.join(sets)}",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


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


async def day_items(ddb: DynamoDBClient, table: str, org_id: str, day: str) -> list[dict[str, Any]]:
    """Every aggregate item of an org's day, read strongly: model selection and reconcile must see what the
    aggregator has just committed."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": day_partition(org_id, day)}},
        "ConsistentRead": True,
    }
    while True:
        page = await ddb.query(**kwargs)
        items += [dict(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def read_day(ddb: DynamoDBClient, table: str, org_id: str, day: str) -> DaySpend:
    spend = DaySpend()
    for item in await day_items(ddb, table, org_id, day):
        spend.by_app_label[parse_sort_key(item["sk"]["S"])] = Totals.from_item(item)
    return spend


class AggregateReader:
    """The aggregates table, as the API reads it."""

    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    async def day(self, org_id: str, day: str) -> DaySpend:
        return await read_day(self._ddb, self._table, org_id, day)

    async def days(self, partitions: Sequence[tuple[str, str]], in_flight: int = DAYS_IN_FLIGHT) -> list[DaySpend]:
        """Each (org_id, day) partition, one Query each and at most `in_flight` at once; in the order given."""
        gate = asyncio.Semaphore(in_flight)

        async def one(org_id: str, day: str) -> DaySpend:
            async with gate:
                return await self.day(org_id, day)

        return list(await asyncio.gather(*(one(org_id, day) for org_id, day in partitions)))
