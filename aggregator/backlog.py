"""How far the aggregator is behind its stream: records after each shard's checkpoint, the oldest one's age, and gaps.

The aggregator owns its checkpoints, so it owns how its lag is read; the API's /metrics, /health and model selection
and the operator's `costkeeper queue` all come here. Lag is measured, not guessed: the records after the checkpoint
are read (up to a limit) and the oldest one's age is reported. A shard has a gap when the records after its
checkpoint are no longer in the stream (trimmed after 24 h), or a reader recorded one within GAP_REPORTED_S: records
nobody counted, missing from the aggregates until `costkeeper reconcile --repair`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aggregator.checkpoints import CheckpointStore
from aggregator.shards import list_shards, stream_arn_of
from aggregator.stream_record import decode

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

# Reading further than this per shard only to count would be wasteful: "at least N pending" says enough.
PENDING_SCAN_LIMIT = 1000
# How long a gap a reader recorded is reported: a day, time enough for the alarm and the reconcile it calls for.
GAP_REPORTED_S = 24 * 3600


@dataclass(frozen=True)
class ShardLag:
    shard_id: str
    pending_records: int  # capped at PENDING_SCAN_LIMIT
    oldest_pending_age_s: float | None
    finished: bool
    gap: bool = False


async def shard_lags(
    ddb: DynamoDBClient, streams: DynamoDBStreamsClient, usage_table: str, checkpoints_table: str
) -> list[ShardLag]:
    stream_arn = await stream_arn_of(ddb, usage_table)
    checkpoints = CheckpointStore(ddb, checkpoints_table)
    lags: list[ShardLag] = []
    now_ms = time.time() * 1000
    for shard in await list_shards(streams, stream_arn):
        shard_id = shard["ShardId"]
        checkpoint = await checkpoints.load(stream_arn, shard_id)
        gap = checkpoint.gap_at_ms is not None and now_ms - checkpoint.gap_at_ms < GAP_REPORTED_S * 1000
        if checkpoint.finished:
            lags.append(ShardLag(shard_id, 0, None, True, gap))
            continue
        kwargs: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard_id}
        if checkpoint.sequence_number is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = checkpoint.sequence_number
        try:
            iterator = (await streams.get_shard_iterator(**kwargs)).get("ShardIterator")
        except streams.exceptions.TrimmedDataAccessException:
            # The checkpoint is older than anything the stream still holds: what was after it is gone.
            gap = True
            iterator = (
                await streams.get_shard_iterator(
                    StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )
            ).get("ShardIterator")
        pending: list[Any] = []
        # A few reads: an open shard can answer empty before reaching records that exist.
        for _ in range(3):
            if iterator is None or len(pending) >= PENDING_SCAN_LIMIT:
                break
            page = await streams.get_records(ShardIterator=iterator, Limit=PENDING_SCAN_LIMIT)
            pending.extend(page.get("Records", []))
            iterator = page.get("NextShardIterator")
            if not page.get("Records"):
                break
        oldest = None
        for raw in pending:
            usage = decode(raw).inserted
            if usage is not None:
                oldest = (now_ms - usage.written_at_ms) / 1000.0
                break
        lags.append(ShardLag(shard_id, min(len(pending), PENDING_SCAN_LIMIT), oldest, False, gap))
    return lags
