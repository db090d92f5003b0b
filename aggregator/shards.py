"""Finding the usage table's stream, listing its shards and reading a shard's records after a position."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aggregator.stream_record import position

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient


async def stream_arn_of(ddb: DynamoDBClient, table: str) -> str:
    table_description = (await ddb.describe_table(TableName=table))["Table"]
    arn = table_description.get("LatestStreamArn")
    if not arn:
        raise RuntimeError(f"table {table} has no stream; run `costkeeper init`")
    return arn


async def list_shards(streams: DynamoDBStreamsClient, stream_arn: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamArn": stream_arn}
    while True:
        description = (await streams.describe_stream(**kwargs))["StreamDescription"]
        shards.extend(dict(s) for s in description.get("Shards", []))
        last = description.get("LastEvaluatedShardId")
        if not last:
            return shards
        kwargs["ExclusiveStartShardId"] = last


async def read_after(
    streams: DynamoDBStreamsClient,
    stream_arn: str,
    shard_id: str,
    sequence_number: str | None,
    *,
    until_position: str | None = None,
    enough: Callable[[Mapping[str, Any]], bool] | None = None,
    empty_reads: int = 3,
) -> list[dict[str, Any]]:
    """A shard's records after sequence_number (from its oldest when None, or when trimmed past it), up to an end.

    The end is the first of: a closed shard's last record; a record at or past until_position; a record for which
    `enough` is true (the caller needs nothing written after it); the point after which `empty_reads` reads in a row
    found nothing (an open shard can answer empty before records that exist). Under steady writes an open shard never
    reads empty three times running, so a caller reading it while writes go on gives one of the first bounds. Until a
    record at or past until_position has been seen, reading waits longer for it (it was written: it shows up).
    """
    records: list[dict[str, Any]] = []
    iterator = await _iterator(streams, stream_arn, shard_id, sequence_number)
    empty = 0
    patience = empty_reads
    reopened = 0
    while iterator is not None and empty < patience:
        try:
            page = await streams.get_records(ShardIterator=iterator, Limit=1000)
        except (streams.exceptions.TrimmedDataAccessException, streams.exceptions.ExpiredIteratorException):
            # DynamoDB Local's iterator on a shard that was empty (aws-sdk-java#2923), or one held too long.
            reopened += 1
            if reopened > empty_reads:
                raise
            seen = records[-1]["dynamodb"]["SequenceNumber"] if records else sequence_number
            iterator = await _iterator(streams, stream_arn, shard_id, seen)
            continue
        found = [dict(r) for r in page.get("Records", [])]
        records.extend(found)
        iterator = page.get("NextShardIterator")
        empty = 0 if found else empty + 1
        if enough is not None and any(enough(r) for r in found):
            break
        last = position(records[-1]["dynamodb"]["SequenceNumber"]) if records else None
        if until_position is not None:
            if last is not None and last >= until_position:
                break
            patience = max(empty_reads, 50)
            if empty:
                await asyncio.sleep(0.1)
    return records


async def _iterator(
    streams: DynamoDBStreamsClient, stream_arn: str, shard_id: str, sequence_number: str | None
) -> str | None:
    kwargs: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"}
    if sequence_number is not None:
        kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=sequence_number)
    try:
        return (await streams.get_shard_iterator(**kwargs)).get("ShardIterator")
    except streams.exceptions.TrimmedDataAccessException:
        # Past the stream's retention (on AWS), or DynamoDB Local's empty-shard quirk: the oldest record there is.
        if sequence_number is None:
            raise
        return await _iterator(streams, stream_arn, shard_id, None)
