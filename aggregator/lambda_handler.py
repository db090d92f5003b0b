"""The aggregator as a Lambda function: a DynamoDB Streams event source mapping on the usage table.

Exactly once under Lambda's retries. The mapping keeps the shard position and retries a failed batch with the same
records until it succeeds (or the records leave the stream after 24 h), so a batch may be applied in part, then
again in full. The batch is rolled up in runs of at most MAX_AGGREGATES_PER_TRANSACTION aggregate keys
(rollup.chunk_by_keys), and each run commits in one TransactWriteItems together with a batch marker keyed by
(eventSourceARN, first SequenceNumber, last SequenceNumber) that is put only if absent (commit.BatchMarkers). A run
whose marker exists was applied by an earlier attempt and is skipped; any other error propagates, and Lambda retries
the same batch.

This relies on a retry carrying the same records, so that it is cut into the same runs:
- BisectBatchOnFunctionError must stay off. A bisected retry starts a run in the middle of a committed one; its
  marker key is new, and the records it shares with the committed run would count twice.
- ParallelizationFactor stays 1: with more, a shard's records are spread over concurrent batches by key, and AWS
  does not document that a retry keeps the same grouping.
- The handler never reports batch item failures: a retry from a reported record would also start mid-run.
infra/deploy/template.yaml sets the mapping up this way; tests/unit/test_template.py checks it.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aggregator.commit import MAX_AGGREGATES_PER_TRANSACTION, BatchMarkers
from aggregator.rollup import chunk_by_keys, rollup
from aggregator.settings import AggregatorSettings
from aggregator.stream_record import decode_all
from runtime.aws import open_async_clients
from runtime.lambda_container import ContainerState

log = logging.getLogger("aggregator")


@dataclass(frozen=True)
class StreamTarget:
    markers: BatchMarkers
    aggregates_table: str


@dataclass
class BatchOutcome:
    runs_applied: int = 0
    runs_skipped: int = 0  # committed by an earlier attempt of the same batch
    aggregate_writes: int = 0


async def _open(stack: AsyncExitStack) -> StreamTarget:
    settings = AggregatorSettings.from_env()
    clients = await stack.enter_async_context(open_async_clients(settings.aws))
    names = settings.aws.names
    return StreamTarget(BatchMarkers(clients.dynamodb, names.checkpoints_table), names.aggregates_table)


container: ContainerState[StreamTarget] = ContainerState(_open)


async def apply_records(target: StreamTarget, records: list[dict[str, Any]]) -> BatchOutcome:
    outcome = BatchOutcome()
    if not records:
        return outcome
    arns = {r["eventSourceARN"] for r in records}
    if len(arns) != 1:
        raise ValueError(f"one batch comes from one stream shard, got records of {sorted(arns)}")
    [stream_arn] = arns
    for run in chunk_by_keys(decode_all(records), MAX_AGGREGATES_PER_TRANSACTION):
        deltas = rollup(run)
        if not deltas:
            continue  # only removals: nothing to apply, so nothing to guard
        first, last = run[0].sequence_number, run[-1].sequence_number
        if await target.markers.commit(stream_arn, first, last, deltas, target.aggregates_table):
            outcome.runs_applied += 1
            outcome.aggregate_writes += len(deltas)
        else:
            outcome.runs_skipped += 1
            log.info("run %s..%s was applied by an earlier attempt; skipped", first, last)
    return outcome


def handler(event: dict[str, Any], context: Any) -> None:
    records: list[dict[str, Any]] = event.get("Records", [])

    async def work(target: StreamTarget) -> BatchOutcome:
        return await apply_records(target, records)

    outcome = container.run(work)
    log.info(
        "%d records: %d runs applied (%d aggregate writes), %d runs skipped",
        len(records),
        outcome.runs_applied,
        outcome.aggregate_writes,
        outcome.runs_skipped,
    )
