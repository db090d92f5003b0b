"""Recomputing org-local days' aggregates from the usage items, reporting the drift and repairing it.

`costkeeper reconcile` runs this while the pipeline keeps running. drift.py says what each aggregate should hold at
a cut; this reads what it needs in the order that makes that exact, then repairs with conditional writes:

1. each shard's checkpoint (`start`);
2. after `settle_s`, the day's usage items from the index (an item's index entry lags its write: every record at
   or before `start` was written more than `settle_s` earlier, so its item is in the index);
3. after `settle_s` more, the checkpoints again; then each shard's records after `start`, up to the first usage
   item written more than `settle_s` after the index was read (a stream record lags its item too: every item the
   index showed now has its record readable, so it is either at or before `start`, or seen here; and every record
   after that first one was written later, so the index cannot have shown its item). One read serves every day
   and round; a shard that opens later is read when it first appears;
4. the aggregates (after the checkpoints, so every record up to a checkpoint was counted before its aggregate was
   read); the shard reads are extended until they cover every cut.

A repair is one UpdateItem per drifting key that ADDs the difference (aggregates.aggregate_correction): what the
aggregator counts after the read is past the cut and not in the difference, so the aggregator does not have to stop
and a busy key does not keep refusing the repair. It is conditional only on what would make the difference wrong
(the item created or deleted since, another correction first, an applied position it raises having moved); then
the day is planned again. Run twice, the second run finds no drift: a repair is idempotent. The assumptions beyond
DynamoDB's documented behaviour are that index entries and stream records appear within `settle_s` of their writes
(DynamoDB calls both "near real time"; they are well under a second in practice) and that the workers' clocks are
within `settle_s` of this one's.

Items written before usage item version 4 have no index key and are invisible here, so they would count as missing:
after an upgrade, `costkeeper backfill-index` (index_backfill.py) gives them their key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aggregator.aggregates import AggregateKey, AggregateState, aggregate_correction, day_items, parse_sort_key
from aggregator.checkpoints import CheckpointStore
from aggregator.drift import KeyReport, ShardRead, plan
from aggregator.shards import list_shards, read_after, stream_arn_of
from aggregator.stream_record import decode, decode_all, position
from aggregator.usage_record import DAY_BUCKETS, DAY_INDEX, DAY_INDEX_ATTRIBUTE, UsageRecord, day_bucket
from runtime.aws import condition_failed
from runtime.resources import ResourceNames

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

DEFAULT_SETTLE_S = 5.0
# Rounds of a day whose repairs keep being refused; then what is still off is reported as not repaired.
MAX_ROUNDS = 5


@dataclass
class DayResult:
    org_id: str
    day: str
    reports: list[KeyReport] = field(default_factory=list)
    # Keys repaired in any round (a round after a refusal plans only what is still off); and those of the last plan.
    repaired: set[AggregateKey] = field(default_factory=set)
    repaired_last: set[AggregateKey] = field(default_factory=set)
    # Rounds with a repair refused because what it was computed from had changed (aggregates.aggregate_correction).
    refused_rounds: int = 0
    unreadable_items: int = 0

    @property
    def drifted(self) -> list[KeyReport]:
        return [r for r in self.reports if r.drifted]

    @property
    def outstanding(self) -> list[KeyReport]:
        """Drift still there: not repaired (report only, unsettled, or overtaken in every round)."""
        return [r for r in self.drifted if r.key not in self.repaired_last]


class Reconciler:
    def __init__(
        self,
        ddb: DynamoDBClient,
        streams: DynamoDBStreamsClient,
        names: ResourceNames,
        settle_s: float = DEFAULT_SETTLE_S,
        report: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._report = report
        self._ddb = ddb
        self._streams = streams
        self._names = names
        self._settle_s = settle_s
        self._checkpoints = CheckpointStore(ddb, names.checkpoints_table)

    async def reconcile(self, days: Sequence[tuple[str, str]], repair: bool) -> list[DayResult]:
        """Each (org_id, day): the drift of every aggregate key, repaired if asked."""
        stream_arn = await stream_arn_of(self._ddb, self._names.usage_table)
        start = await self._checkpoint_sequence_numbers(stream_arn)
        await asyncio.sleep(self._settle_s)
        usage: dict[tuple[str, str], tuple[list[UsageRecord], int]] = {}
        for org_id, day in days:
            usage[(org_id, day)] = await self._usage_of_day(org_id, day)
            self._report(f"org {org_id} day {day}: {len(usage[(org_id, day)][0])} usage item(s) in the index")
        # Every item the index showed was written before this instant.
        covered_ms = int(time.time() * 1000)
        await asyncio.sleep(self._settle_s)
        results = [DayResult(org_id, day, unreadable_items=usage[(org_id, day)][1]) for org_id, day in days]
        # One read of the stream serves every day and round: each only extends it to its cuts.
        reads: dict[str, ShardRead] = {}
        for result in results:
            items = usage[(result.org_id, result.day)][0]
            for _ in range(MAX_ROUNDS):
                late = await self._checkpoint_sequence_numbers(stream_arn)
                # After the checkpoints: every shard they name is read (a shard may have opened since).
                reads = await self._read_shards(stream_arn, start, covered_ms, reads)
                states = await self._states(result.org_id, result.day)
                reads = await self._extend(stream_arn, start, reads, states, late)
                cuts = {shard_id: _pos(seq) for shard_id, seq in late.items()}
                result.reports = plan(result.org_id, result.day, states, items, list(reads.values()), cuts)
                if not repair or await self._repair(result):
                    break
                result.refused_rounds += 1
                self._report(f"org {result.org_id} day {result.day}: a repair was refused; planning the day again")
        return results

    async def _checkpoint_sequence_numbers(self, stream_arn: str) -> dict[str, str | None]:
        shards = await list_shards(self._streams, stream_arn)
        found: dict[str, str | None] = {}
        for shard in shards:
            found[shard["ShardId"]] = (await self._checkpoints.load(stream_arn, shard["ShardId"])).sequence_number
        return found

    async def _read_shards(
        self, stream_arn: str, start: dict[str, str | None], covered_ms: int, reads: dict[str, ShardRead]
    ) -> dict[str, ShardRead]:
        """`reads` with every shard not read yet read from its start to past what the index can show."""
        past_ms = covered_ms + int(self._settle_s * 1000)

        def written_later(raw: Mapping[str, Any]) -> bool:
            inserted = decode(raw).inserted
            return inserted is not None and inserted.written_at_ms > past_ms

        unread = [s["ShardId"] for s in await list_shards(self._streams, stream_arn) if s["ShardId"] not in reads]
        if not unread:
            return reads
        reads = dict(reads)
        for shard_id in unread:
            raw = await read_after(self._streams, stream_arn, shard_id, start.get(shard_id), enough=written_later)
            reads[shard_id] = ShardRead(shard_id, decode_all(raw))
        self._report(f"read {sum(len(r.records) for r in reads.values())} stream record(s) from {len(reads)} shard(s)")
        return reads

    async def _extend(
        self,
        stream_arn: str,
        start: dict[str, str | None],
        reads: dict[str, ShardRead],
        states: dict[AggregateKey, AggregateState],
        late: dict[str, str | None],
    ) -> dict[str, ShardRead]:
        """Read on where a checkpoint or an aggregate is past what was read: every record up to a cut is seen."""
        for shard_id, read in list(reads.items()):
            positions = [s.applied[shard_id] for s in states.values() if shard_id in s.applied]
            checkpoint = _pos(late.get(shard_id))
            if checkpoint is not None:
                positions.append(checkpoint)
            needed = max(positions, default=None)
            end = read.records[-1].position if read.records else _pos(start.get(shard_id))
            if needed is None or (end is not None and end >= needed):
                continue
            after = read.records[-1].sequence_number if read.records else start.get(shard_id)
            more = await read_after(self._streams, stream_arn, shard_id, after, until_position=needed)
            reads[shard_id] = ShardRead(shard_id, [*read.records, *decode_all(more)])
        return reads

    async def _usage_of_day(self, org_id: str, day: str) -> tuple[list[UsageRecord], int]:
        items: list[UsageRecord] = []
        unreadable = 0
        for bucket in range(DAY_BUCKETS):
            kwargs: dict[str, Any] = {
                "TableName": self._names.usage_table,
                "IndexName": DAY_INDEX,
                "KeyConditionExpression": "#b = :b",
                "ExpressionAttributeNames": {"#b": DAY_INDEX_ATTRIBUTE},
                "ExpressionAttributeValues": {":b": {"S": day_bucket(org_id, day, bucket)}},
            }
            while True:
                page = await self._ddb.query(**kwargs)
                for item in page.get("Items", []):
                    try:
                        items.append(UsageRecord.from_image(dict(item)))
                    except (KeyError, ValueError, TypeError):
                        unreadable += 1  # the aggregator counts such an item as nothing too
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items, unreadable

    async def _states(self, org_id: str, day: str) -> dict[AggregateKey, AggregateState]:
        states: dict[AggregateKey, AggregateState] = {}
        for item in await day_items(self._ddb, self._names.aggregates_table, org_id, day):
            app_id, label = parse_sort_key(item["sk"]["S"])
            states[AggregateKey(org_id, day, app_id, label)] = AggregateState.from_item(item)
        return states

    async def _repair(self, result: DayResult) -> bool:
        """Repair every drifting, settled key; False if any repair was refused (the day is planned again)."""
        refused = False
        now_ms = str(int(time.time() * 1000))
        result.repaired_last = set()
        for report in result.drifted:
            if report.unsettled:
                continue
            update = aggregate_correction(
                self._names.aggregates_table, report.key, report.seen, report.drift, report.raise_to, now_ms
            )
            try:
                await self._ddb.update_item(**update)
            except ClientError as exc:
                if not condition_failed(exc):
                    raise
                refused = True
                continue
            result.repaired.add(report.key)
            result.repaired_last.add(report.key)
        return not refused


def _pos(sequence_number: str | None) -> str | None:
    return None if sequence_number is None else position(sequence_number)
