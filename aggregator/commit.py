"""Committing a run of stream records: aggregate updates and a guard item in one TransactWriteItems.

The shard reader (consumer.py) guards with the shard checkpoint: the write is conditional on the checkpoint still
being where this reader found it, so a replayed batch (after a crash, or by a second reader of the same shard)
cancels the whole transaction instead of counting twice.

The Lambda handler (lambda_handler.py) gets no shard id and keeps no position: the event source mapping does. It
guards with a batch marker instead, an item keyed by the stream and the first and last sequence numbers of the run,
put only if absent. A retried invocation carries the same records, so it builds the same runs and their markers stop
each already-committed run from counting twice. Markers expire (MARKER_TTL_S) once no retry can carry them anymore.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aggregator.aggregates import AggregateKey, Totals, aggregate_update

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# TransactWriteItems takes 100 items; one of them is the checkpoint or the batch marker.
MAX_AGGREGATES_PER_TRANSACTION = 99
# Stream records live 24 h, and so can a batch's retries; markers outlive them with a day to spare.
MARKER_TTL_S = 48 * 3600


class CheckpointMoved(RuntimeError):
    """Another reader (or an earlier life of this one) already committed past our position."""


@dataclass(frozen=True)
class Checkpoint:
    sequence_number: str | None  # None: nothing consumed yet, read from TRIM_HORIZON
    finished: bool = False


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
        return Checkpoint(seq, bool(item.get("finished", {}).get("BOOL", False)))

    def _checkpoint_put(
        self, stream_arn: str, shard_id: str, previous: str | None, new: str | None, finished: bool
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            **checkpoint_key(stream_arn, shard_id),
            "stream_arn": {"S": stream_arn},
            "shard_id": {"S": shard_id},
            "finished": {"BOOL": finished},
            "updated_at_ms": {"N": str(int(time.time() * 1000))},
        }
        if new is not None:
            item["sequence_number"] = {"S": new}
        put: dict[str, Any] = {"TableName": self._table, "Item": item}
        if previous is None:
            put["ConditionExpression"] = "attribute_not_exists(sequence_number)"
        else:
            put["ConditionExpression"] = "sequence_number = :previous"
            put["ExpressionAttributeValues"] = {":previous": {"S": previous}}
        return put

    async def commit(
        self,
        stream_arn: str,
        shard_id: str,
        previous: str | None,
        new: str,
        deltas: Mapping[AggregateKey, Totals],
        aggregates_table: str,
    ) -> None:
        items = aggregate_updates(aggregates_table, deltas, str(int(time.time() * 1000)))
        items.append({"Put": self._checkpoint_put(stream_arn, shard_id, previous, new, finished=False)})
        try:
            await self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _checkpoint_condition_failed(exc):
                raise CheckpointMoved(f"{shard_id}: checkpoint is no longer {previous}") from exc
            raise

    async def mark_finished(self, stream_arn: str, shard_id: str, sequence_number: str | None) -> None:
        put = self._checkpoint_put(stream_arn, shard_id, sequence_number, sequence_number, finished=True)
        try:
            await self._ddb.put_item(**put)
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            raise CheckpointMoved(f"{shard_id}: checkpoint is no longer {sequence_number}") from exc


def marker_key(stream_arn: str, first_sequence_number: str, last_sequence_number: str) -> dict[str, Any]:
    # Three parts where a shard checkpoint has two ("{arn}|{shard}"): the two kinds of item never share a key.
    return {"pk": {"S": f"{stream_arn}|{first_sequence_number}|{last_sequence_number}"}}


class BatchMarkers:
    """Run commits guarded by batch markers, for stream consumers that know no shard position (Lambda)."""

    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    async def commit(
        self,
        stream_arn: str,
        first_sequence_number: str,
        last_sequence_number: str,
        deltas: Mapping[AggregateKey, Totals],
        aggregates_table: str,
    ) -> bool:
        """Apply deltas and put the run's marker atomically; False (and nothing applied) if the marker existed."""
        now = time.time()
        now_ms = str(int(now * 1000))
        items = aggregate_updates(aggregates_table, deltas, now_ms)
        marker = {
            **marker_key(stream_arn, first_sequence_number, last_sequence_number),
            "stream_arn": {"S": stream_arn},
            "first_sequence_number": {"S": first_sequence_number},
            "last_sequence_number": {"S": last_sequence_number},
            "aggregates": {"N": str(len(deltas))},
            "updated_at_ms": {"N": now_ms},
            "expires_at": {"N": str(int(now) + MARKER_TTL_S)},
        }
        marker_index = len(items)
        items.append(
            {"Put": {"TableName": self._table, "Item": marker, "ConditionExpression": "attribute_not_exists(pk)"}}
        )
        try:
            await self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _condition_failed_at(exc, marker_index):
                return False
            raise
        return True


def aggregate_updates(table: str, deltas: Mapping[AggregateKey, Totals], now_ms: str) -> list[Any]:
    """The Update items of one transaction, in key order; the caller appends its guard item."""
    if len(deltas) > MAX_AGGREGATES_PER_TRANSACTION:
        raise ValueError(f"{len(deltas)} aggregates exceed one transaction; split the run first")
    return [{"Update": aggregate_update(table, key, totals, now_ms)} for key, totals in sorted(deltas.items())]


def _checkpoint_condition_failed(exc: ClientError) -> bool:
    # The checkpoint is the last item.
    reasons = exc.response.get("CancellationReasons") or []
    return bool(reasons) and _condition_failed_at(exc, len(reasons) - 1)


def _condition_failed_at(exc: ClientError, index: int) -> bool:
    """Whether a cancelled transaction was cancelled by the condition of its item at index."""
    # A cancelled transaction reports a reason per item, in request order.
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    return index < len(reasons) and reasons[index].get("Code") == "ConditionalCheckFailed"
