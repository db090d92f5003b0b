"""Counting one shard's stream records into the aggregates exactly once, whoever delivers them and however often.

The unit of idempotency is the stream record on its aggregate key (aggregates.py, "Exactly once"): each key's
records of the batch become one UpdateItem, conditional on the item's applied position for the shard being below
the first of them. When the condition fails, part or all of the run was counted already (a Lambda retry with other
bounds, a replay from TRIM_HORIZON, the other aggregator mode reading the same shard): the refused update returns the
item, the run is cut to the records after its applied position, and the rest is applied the same way. Nothing here
depends on batch bounds or on who else reads the shard, only on each reader going through a shard in order.

Both readers use it: the long-running consumer (consumer.py, which knows its shard) and the Lambda handler
(lambda_handler.py, which learns the shard from the tumbling-window event).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aggregator.aggregates import AggregateState, aggregate_update
from aggregator.rollup import KeyRun, key_runs
from aggregator.stream_record import StreamRecord
from runtime.aws import condition_failed

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# Updates of one batch in flight at once: one per aggregate key.
UPDATE_CONCURRENCY = 16
# A refused update means another reader counted part of the run meanwhile; each retry has fewer records left, and
# readers of one shard move forward, so a handful of retries always settles it.
MAX_ATTEMPTS = 8


class GuardContention(RuntimeError):
    """An aggregate's applied position kept moving under this reader; the batch is read again."""


@dataclass
class ApplyOutcome:
    aggregate_writes: int = 0  # updates that counted something
    records_counted: int = 0  # (record, key) steps counted by this call
    records_skipped: int = 0  # steps counted before (a replay), skipped
    refused_updates: int = 0  # updates refused by their guard, then cut and retried (or found complete)

    def merge(self, other: ApplyOutcome) -> None:
        self.aggregate_writes += other.aggregate_writes
        self.records_counted += other.records_counted
        self.records_skipped += other.records_skipped
        self.refused_updates += other.refused_updates


class AggregateApplier:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table
        self._slots = asyncio.Semaphore(UPDATE_CONCURRENCY)

    async def apply(self, shard_id: str, records: Sequence[StreamRecord]) -> ApplyOutcome:
        """Count the records (one shard's, in shard order) not yet counted; raises if any update fails otherwise."""
        outcome = ApplyOutcome()
        runs = key_runs(records)
        # Every key is attempted before an error is raised: what succeeded stays counted and is skipped on the retry.
        results = await asyncio.gather(*(self._apply_run(shard_id, run) for run in runs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
            outcome.merge(result)
        return outcome

    async def _apply_run(self, shard_id: str, run: KeyRun) -> ApplyOutcome:
        outcome = ApplyOutcome()
        remaining = run
        async with self._slots:
            for _ in range(MAX_ATTEMPTS):
                update = aggregate_update(
                    self._table, run.key, remaining.totals(), str(int(time.time() * 1000)), remaining.guard(shard_id)
                )
                try:
                    await self._ddb.update_item(**update)
                except ClientError as exc:
                    if not condition_failed(exc):
                        raise
                    outcome.refused_updates += 1
                    applied = (await self._state(run, exc.response.get("Item"))).applied.get(shard_id)
                    remaining = run.after(applied)
                    if not remaining.steps:
                        break
                    continue
                outcome.aggregate_writes += 1
                outcome.records_counted += len(remaining.steps)
                break
            else:
                raise GuardContention(f"{run.key}: applied position of {shard_id} kept moving")
        outcome.records_skipped += len(run.steps) - outcome.records_counted
        return outcome

    async def _state(self, run: KeyRun, returned: Any) -> AggregateState:
        """The item a refused update returned, or (where an endpoint does not return it) the item read again."""
        if returned:
            return AggregateState.from_item(returned)
        response = await self._ddb.get_item(TableName=self._table, Key=run.key.item_key(), ConsistentRead=True)
        return AggregateState.from_item(response.get("Item"))
