"""How far each shard of the usage stream has been read: one checkpoint item per (stream, shard).

A checkpoint is written after the records up to it are counted (apply.py), and only ever moves forward, whoever
writes it: the long-running consumer after each batch, the Lambda handler after each invocation. So every record at
or before a shard's checkpoint is counted (or was given up on: trimmed from the stream, or discarded by the event
source mapping past its record age). The consumer resumes from it; `costkeeper queue`, /metrics and
`costkeeper reconcile` read the aggregator's progress from it. It is not what makes counting exactly-once (the
aggregates' own applied positions are), so a checkpoint lost or behind only means records are read again.

Item: pk = "{stream_arn}|{shard_id}", `sequence_number` (as the stream gives it, for GetShardIterator), `position`
(the same padded, so a condition can compare it), `finished` once a closed shard is read to its end, `gap_at_ms`
and `gaps` when records after it were found trimmed before they were counted (pipeline status reports it). Checkpoints
written before `position` existed are compared in Python and rewritten with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aggregator.stream_record import position
from runtime.aws import condition_failed

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# An older checkpoint that another writer keeps moving: give up after this many rounds (the next batch moves it).
_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Checkpoint:
    sequence_number: str | None  # None: nothing read yet, read from TRIM_HORIZON
    finished: bool = False
    # When a reader last found the records after this checkpoint trimmed from the stream (a gap), epoch ms.
    gap_at_ms: int | None = None

    @property
    def position(self) -> str | None:
        return None if self.sequence_number is None else position(self.sequence_number)


def checkpoint_key(stream_arn: str, shard_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"{stream_arn}|{shard_id}"}}


class CheckpointStore:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    async def load(self, stream_arn: str, shard_id: str) -> Checkpoint:
        response = await self._ddb.get_item(
            TableName=self._table, Key=checkpoint_key(stream_arn, shard_id), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return Checkpoint(None)
        seq = item.get("sequence_number", {}).get("S")
        gap = item.get("gap_at_ms", {}).get("N")
        return Checkpoint(seq, bool(item.get("finished", {}).get("BOOL", False)), None if gap is None else int(gap))

    async def record_gap(self, stream_arn: str, shard_id: str) -> None:
        """Records after the checkpoint were trimmed before anyone counted them: say so where operators look."""
        await self._ddb.update_item(
            TableName=self._table,
            Key=checkpoint_key(stream_arn, shard_id),
            UpdateExpression="SET gap_at_ms = :now, stream_arn = :arn, shard_id = :shard ADD gaps :one",
            ExpressionAttributeValues={
                ":now": {"N": str(int(time.time() * 1000))},
                ":arn": {"S": stream_arn},
                ":shard": {"S": shard_id},
                ":one": {"N": "1"},
            },
        )

    async def advance(self, stream_arn: str, shard_id: str, sequence_number: str) -> bool:
        """Move the shard's checkpoint to sequence_number unless it is there or beyond; True if it moved."""
        new = position(sequence_number)
        condition = "attribute_not_exists(sequence_number) OR #position < :new"
        old: dict[str, Any] = {}
        for _ in range(_MAX_ATTEMPTS):
            try:
                await self._ddb.update_item(
                    TableName=self._table,
                    Key=checkpoint_key(stream_arn, shard_id),
                    UpdateExpression="SET sequence_number = :seq, #position = :new, stream_arn = :arn, "
                    "shard_id = :shard, updated_at_ms = :now",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#position": "position"},
                    ExpressionAttributeValues={
                        ":seq": {"S": sequence_number},
                        ":new": {"S": new},
                        ":arn": {"S": stream_arn},
                        ":shard": {"S": shard_id},
                        ":now": {"N": str(int(time.time() * 1000))},
                        **old,
                    },
                )
                return True
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
            response = await self._ddb.get_item(
                TableName=self._table, Key=checkpoint_key(stream_arn, shard_id), ConsistentRead=True
            )
            item = response.get("Item", {})
            stored = item.get("sequence_number", {}).get("S")
            if stored is not None and position(stored) >= new:
                return False
            if "position" in item or stored is None:
                condition, old = "attribute_not_exists(sequence_number) OR #position < :new", {}
            else:
                # Written before `position` existed: replace it only as it was read.
                condition, old = "sequence_number = :old AND attribute_not_exists(#position)", {":old": {"S": stored}}
        return False

    async def mark_finished(self, stream_arn: str, shard_id: str) -> None:
        """A closed shard read to its end: its children may start. Whoever gets there says so; it stays said."""
        await self._ddb.update_item(
            TableName=self._table,
            Key=checkpoint_key(stream_arn, shard_id),
            UpdateExpression="SET finished = :yes, stream_arn = :arn, shard_id = :shard, updated_at_ms = :now",
            ExpressionAttributeValues={
                ":yes": {"BOOL": True},
                ":arn": {"S": stream_arn},
                ":shard": {"S": shard_id},
                ":now": {"N": str(int(time.time() * 1000))},
            },
        )
