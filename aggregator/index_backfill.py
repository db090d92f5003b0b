"""Giving usage items written before version 4 their key in the index by org-local day, so reconcile sees them.

`costkeeper reconcile` reads a day's usage items from DAY_INDEX; an item written before the index existed has no
`day_bucket` and is not in it, so a reconcile would take it for missing and a repair would take its cost out of the
aggregate. After an upgrade, run `costkeeper backfill-index` once (after the workers that write version 4 are
deployed: an older worker still running writes items without the key).

Each item found without the key gets it with one conditional UpdateItem (skipped if the item expired or got the key
meanwhile), so a run can be interrupted and run again. The update is a MODIFY on the stream whose old and new
images count the same: the aggregator takes the item back and counts it again, a zero change. A reconcile while
those records are in flight reports their keys as unsettled; run it again once the aggregator has caught up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aggregator.usage_record import DAY_INDEX_ATTRIBUTE, UsageRecord
from runtime.aws import condition_failed

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# Parallel scan segments; each reads its share of the table one page at a time.
DEFAULT_SEGMENTS = 4
# Items one segment updates at once.
UPDATES_IN_FLIGHT = 8


@dataclass
class BackfillStats:
    scanned: int = 0  # items read (the scan's ScannedCount)
    keyed: int = 0  # items given their index key
    skipped: int = 0  # gone or keyed meanwhile
    unreadable: int = 0  # not a usage item this reader knows: it counts for nothing anywhere, so it stays as it is


async def backfill_day_index(
    ddb: DynamoDBClient,
    table: str,
    segments: int = DEFAULT_SEGMENTS,
    report: Callable[[str], None] = lambda _: None,
) -> BackfillStats:
    stats = BackfillStats()
    await asyncio.gather(*(_segment(ddb, table, segment, segments, stats, report) for segment in range(segments)))
    return stats


async def _segment(
    ddb: DynamoDBClient,
    table: str,
    segment: int,
    segments: int,
    stats: BackfillStats,
    report: Callable[[str], None],
) -> None:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "Segment": segment,
        "TotalSegments": segments,
        "FilterExpression": "attribute_not_exists(#b)",
        "ExpressionAttributeNames": {"#b": DAY_INDEX_ATTRIBUTE},
    }
    gate = asyncio.Semaphore(UPDATES_IN_FLIGHT)
    while True:
        page = await ddb.scan(**kwargs)
        stats.scanned += page.get("ScannedCount", 0)
        await asyncio.gather(*(_key(ddb, table, dict(item), gate, stats) for item in page.get("Items", [])))
        report(f"segment {segment + 1}/{segments}: {stats.scanned} item(s) scanned, {stats.keyed} keyed so far")
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def _key(
    ddb: DynamoDBClient, table: str, item: dict[str, Any], gate: asyncio.Semaphore, stats: BackfillStats
) -> None:
    try:
        usage = UsageRecord.from_image(item)
    except (KeyError, ValueError, TypeError):
        stats.unreadable += 1
        return
    async with gate:
        try:
            await ddb.update_item(
                TableName=table,
                Key={"pk": item["pk"]},
                UpdateExpression="SET #b = :b",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#b)",
                ExpressionAttributeNames={"#b": DAY_INDEX_ATTRIBUTE},
                ExpressionAttributeValues={":b": {"S": usage.day_index_key}},
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            stats.skipped += 1
            return
    stats.keyed += 1
