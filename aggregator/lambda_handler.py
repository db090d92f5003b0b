"""The aggregator as a Lambda function: a DynamoDB Streams event source mapping on the usage table.

Exactly once under anything Lambda does. Each batch is counted by apply.py: every aggregate key's records become
one update guarded by the item's applied position for the batch's shard, so a record counted once is skipped by
every later delivery, whatever its batch bounds: a retry of a partly applied batch, a bisected or resized batch, a
new mapping reading from TRIM_HORIZON, the long-running aggregator reading the same shard. Then the shard's
checkpoint moves past the batch (checkpoints.py), for lag figures and `costkeeper reconcile`.

What it relies on, and infra/deploy/template.yaml sets (tests/unit/test_template.py checks):
- The shard id. Lambda's DynamoDB event names it only with a tumbling window (`shardId`), so the mapping has
  TumblingWindowInSeconds; the function then answers with the (empty) window state Lambda requires. An event
  without a shard id is refused rather than counted under a guess.
- One batch at a time per shard, in shard order: ParallelizationFactor 1. (With more, Lambda keeps order only per
  item, and a key's later records could move its applied position past earlier ones not yet counted.)
- StartingPosition TRIM_HORIZON: a reader must not start past records nobody counted.
A batch that keeps failing is retried until MaximumRecordAgeInSeconds, then described to the on-failure
destination and skipped; those records are then missing from the aggregates until `costkeeper reconcile --repair`.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aggregator.apply import AggregateApplier, ApplyOutcome
from aggregator.checkpoints import CheckpointStore
from aggregator.settings import AggregatorSettings
from aggregator.stream_record import decode_all
from runtime.aws import open_async_clients
from runtime.lambda_container import ContainerState

log = logging.getLogger("aggregator")


class ShardNotNamed(ValueError):
    """A stream event without `shardId`: the mapping has no tumbling window, and the records cannot be guarded."""


@dataclass(frozen=True)
class StreamTarget:
    applier: AggregateApplier
    checkpoints: CheckpointStore


async def _open(stack: AsyncExitStack) -> StreamTarget:
    settings = AggregatorSettings.from_env()
    clients = await stack.enter_async_context(open_async_clients(settings.aws))
    names = settings.aws.names
    return StreamTarget(
        AggregateApplier(clients.dynamodb, names.aggregates_table),
        CheckpointStore(clients.dynamodb, names.checkpoints_table),
    )


container: ContainerState[StreamTarget] = ContainerState(_open)


async def apply_event(target: StreamTarget, event: dict[str, Any]) -> ApplyOutcome:
    records: list[dict[str, Any]] = event.get("Records", [])
    if not records:
        return ApplyOutcome()  # a window's final invocation may carry none
    shard_id = event.get("shardId")
    if not shard_id:
        raise ShardNotNamed("the event names no shardId: the event source mapping needs TumblingWindowInSeconds")
    arns = {r["eventSourceARN"] for r in records}
    if len(arns) != 1:
        raise ValueError(f"one batch comes from one stream shard, got records of {sorted(arns)}")
    [stream_arn] = arns
    decoded = decode_all(records)
    malformed = sum(r.malformed for r in decoded)
    if malformed:
        log.error("%d stream record(s) are not usage items and count for nothing", malformed)
    outcome = await target.applier.apply(shard_id, decoded)
    await target.checkpoints.advance(stream_arn, shard_id, decoded[-1].sequence_number)
    return outcome


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    async def work(target: StreamTarget) -> ApplyOutcome:
        return await apply_event(target, event)

    outcome = container.run(work)
    log.info(
        "shard %s, %d records: %d aggregate writes, %d (record, key) steps counted, %d skipped as counted before",
        event.get("shardId"),
        len(event.get("Records", [])),
        outcome.aggregate_writes,
        outcome.records_counted,
        outcome.records_skipped,
    )
    # A function on a tumbling window must answer with its state, or Lambda counts the invocation as failed.
    return {"state": {}, "batchItemFailures": []}
