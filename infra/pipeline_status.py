"""The operator's figures: queue and dead-letter depth, and how far the aggregator is behind the stream.

Shared by `costkeeper queue`/`watch` and the API's /metrics. Lag is measured, not guessed: for each shard, the
records after the aggregator's checkpoint are read (up to a limit) and the oldest one's age is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aggregator.commit import CheckpointStore
from aggregator.consumer import list_shards, stream_arn_of
from infra.aws import AsyncClients, ResourceNames

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

QUEUE_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]
# Reading further than this per shard only to count would be wasteful: "at least N pending" says enough.
PENDING_SCAN_LIMIT = 1000


@dataclass(frozen=True)
class QueueDepth:
    name: str
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True)
class ShardLag:
    shard_id: str
    pending_records: int  # capped at PENDING_SCAN_LIMIT
    oldest_pending_age_s: float | None
    finished: bool


@dataclass(frozen=True)
class PipelineStatus:
    queue: QueueDepth
    dead_letter: QueueDepth
    shards: list[ShardLag] = field(default_factory=list)
    measured_at: float = field(default_factory=time.time)

    @property
    def pending_records(self) -> int:
        return sum(s.pending_records for s in self.shards)

    @property
    def lag_s(self) -> float:
        ages = [s.oldest_pending_age_s for s in self.shards if s.oldest_pending_age_s is not None]
        return max(ages, default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": {**self.queue.__dict__, "total": self.queue.total},
            "dead_letter": {**self.dead_letter.__dict__, "total": self.dead_letter.total},
            "aggregator": {
                "pending_records": self.pending_records,
                "lag_s": round(self.lag_s, 3),
                "shards": [s.__dict__ for s in self.shards],
            },
            "measured_at": self.measured_at,
        }


async def queue_depth(sqs: SQSClient, name: str) -> QueueDepth:
    url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=QUEUE_ATTRIBUTES)  # type: ignore[arg-type]
    values = attrs.get("Attributes", {})
    return QueueDepth(
        name=name,
        visible=int(values.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(values.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(values.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


async def shard_lags(clients: AsyncClients, names: ResourceNames) -> list[ShardLag]:
    stream_arn = await stream_arn_of(clients.dynamodb, names.usage_table)
    checkpoints = CheckpointStore(clients.dynamodb, names.checkpoints_table)
    lags: list[ShardLag] = []
    now_ms = time.time() * 1000
    for shard in await list_shards(clients.streams, stream_arn):
        shard_id = shard["ShardId"]
        checkpoint = await checkpoints.load(stream_arn, shard_id)
        if checkpoint.finished:
            lags.append(ShardLag(shard_id, 0, None, True))
            continue
        kwargs: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard_id}
        if checkpoint.sequence_number is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = checkpoint.sequence_number
        iterator = (await clients.streams.get_shard_iterator(**kwargs)).get("ShardIterator")
        pending: list[Any] = []
        # A few reads: an open shard can answer empty before reaching records that exist.
        for _ in range(3):
            if iterator is None or len(pending) >= PENDING_SCAN_LIMIT:
                break
            page = await clients.streams.get_records(ShardIterator=iterator, Limit=PENDING_SCAN_LIMIT)
            pending.extend(page.get("Records", []))
            iterator = page.get("NextShardIterator")
            if not page.get("Records"):
                break
        oldest = None
        for record in pending:
            image = record.get("dynamodb", {}).get("NewImage", {})
            if "written_at_ms" in image:
                oldest = (now_ms - int(image["written_at_ms"]["N"])) / 1000.0
                break
        lags.append(ShardLag(shard_id, min(len(pending), PENDING_SCAN_LIMIT), oldest, False))
    return lags


async def pipeline_status(clients: AsyncClients, names: ResourceNames) -> PipelineStatus:
    return PipelineStatus(
        queue=await queue_depth(clients.sqs, names.usage_queue),
        dead_letter=await queue_depth(clients.sqs, names.dead_letter_queue),
        shards=await shard_lags(clients, names),
    )
