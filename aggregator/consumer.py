"""Following every shard of the usage table's stream, each from its checkpoint.

A shard is read only once its parent is finished, so a key's records are applied in order across shard splits.
Each GetRecords batch is counted by apply.py, whose guards make it exactly-once however often a batch is read, then
the checkpoint moves past it (checkpoints.py). On any doubt about the position (an error, an expired iterator) the
reader starts again from the checkpoint: at worst it reads records again, and they are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aggregator.apply import AggregateApplier
from aggregator.checkpoints import CheckpointStore
from aggregator.lag import LagHistogram
from aggregator.settings import AggregatorSettings
from aggregator.shards import list_shards, stream_arn_of
from aggregator.stream_record import StreamRecord, decode_all

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

log = logging.getLogger("aggregator")

MAX_CONSECUTIVE_TRIMS = 3


@dataclass
class AggregatorStats:
    records_read: int = 0
    usage_applied: int = 0
    # GetRecords batches counted (each: one guarded update per aggregate key, then the checkpoint).
    batches: int = 0
    aggregate_writes: int = 0
    # Checkpoint updates: one after each batch, plus one when a closed shard is marked finished.
    checkpoint_writes: int = 0
    # (record, key) steps found counted already (a replay) and skipped, and updates their guard refused.
    replays_skipped: int = 0
    refused_updates: int = 0
    errors: int = 0
    trimmed_restarts: int = 0
    malformed_records: int = 0
    # Every applied event, from the API's acceptance (accepted_at_ms) to this process's commit: the end-to-end lag;
    # and its last part, from the worker's write (written_at_ms) to the commit: the stream and the aggregator.
    end_to_end_lag: LagHistogram = field(default_factory=LagHistogram)
    stream_lag: LagHistogram = field(default_factory=LagHistogram)


class ShardReader:
    """Reads one shard from its checkpoint to its end (or forever while it is open)."""

    def __init__(
        self,
        settings: AggregatorSettings,
        streams: DynamoDBStreamsClient,
        checkpoints: CheckpointStore,
        applier: AggregateApplier,
        stream_arn: str,
        shard_id: str,
        stats: AggregatorStats,
        stopping: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._streams = streams
        self._checkpoints = checkpoints
        self._applier = applier
        self._stream_arn = stream_arn
        self._shard_id = shard_id
        self._stats = stats
        self._stopping = stopping

    async def _iterator(self, sequence_number: str | None) -> str | None:
        kwargs: dict[str, Any] = {"StreamArn": self._stream_arn, "ShardId": self._shard_id}
        if sequence_number is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = sequence_number
        try:
            response = await self._streams.get_shard_iterator(**kwargs)
        except self._streams.exceptions.TrimmedDataAccessException:
            if sequence_number is None:
                raise
            await self._gap(sequence_number)
            return await self._iterator(None)
        return response.get("ShardIterator")

    async def _gap(self, position: str | None) -> None:
        """Records after `position` left the stream before they were counted: missing from the aggregates until
        `costkeeper reconcile --repair`. Recorded on the checkpoint, where /health and the metrics see it."""
        self._stats.trimmed_restarts += 1
        log.error(
            "shard %s: records after %s were trimmed before they were counted; going on from the oldest record "
            "(run `costkeeper reconcile --repair`)",
            self._shard_id,
            position,
        )
        await self._checkpoints.record_gap(self._stream_arn, self._shard_id)

    async def run(self) -> bool:
        """Returns True once the shard is finished (closed and fully applied)."""
        while not self._stopping.is_set():
            try:
                return await self._read_from_checkpoint()
            except Exception:
                self._stats.errors += 1
                log.exception("shard %s: error; retrying from checkpoint", self._shard_id)
                await _sleep_unless(self._stopping, self._settings.error_backoff_s)
        return False

    async def _read_from_checkpoint(self) -> bool:
        checkpoint = await self._checkpoints.load(self._stream_arn, self._shard_id)
        if checkpoint.finished:
            return True
        position = checkpoint.sequence_number
        iterator = await self._iterator(position)
        trims = 0
        while iterator is not None and not self._stopping.is_set():
            try:
                response = await self._streams.get_records(
                    ShardIterator=iterator, Limit=self._settings.records_per_read
                )
            except self._streams.exceptions.ExpiredIteratorException:
                iterator = await self._iterator(position)
                continue
            except self._streams.exceptions.TrimmedDataAccessException:
                # DynamoDB Local raises this for an iterator taken on an empty shard once the first record lands
                # (aws-sdk-java#2923): re-opening at the checkpoint reads on. On AWS, a trim that persists means the
                # records after the checkpoint outlived the stream's 24 h retention and are gone.
                trims += 1
                if trims > MAX_CONSECUTIVE_TRIMS:
                    await self._gap(position)
                    iterator = await self._iterator(None)
                else:
                    iterator = await self._iterator(position)
                continue
            trims = 0
            records = response.get("Records", [])
            iterator = response.get("NextShardIterator")
            if records:
                position = await self._apply(position, records)
                if len(records) < self._settings.records_per_read and iterator is not None:
                    await _sleep_unless(self._stopping, self._settings.batch_window_s)
            elif iterator is not None:
                await _sleep_unless(self._stopping, self._settings.idle_poll_s)
        if iterator is None:
            # Closed and read to the end: its children may start.
            await self._checkpoints.mark_finished(self._stream_arn, self._shard_id)
            self._stats.checkpoint_writes += 1
            log.info("shard %s finished", self._shard_id)
            return True
        return False

    async def _apply(self, position: str | None, raw_records: list[Any]) -> str:
        self._stats.records_read += len(raw_records)
        records = decode_all(raw_records)
        skipped = [r for r in records if r.malformed]
        if skipped:
            self._stats.malformed_records += len(skipped)
            log.error(
                "shard %s: %d stream record(s) are not usage items and count for nothing, e.g. key %s",
                self._shard_id,
                len(skipped),
                skipped[0].raw.get("dynamodb", {}).get("Keys"),
            )
        outcome = await self._applier.apply(self._shard_id, records)
        last = records[-1].sequence_number
        if await self._checkpoints.advance(self._stream_arn, self._shard_id, last):
            self._stats.checkpoint_writes += 1
        self._stats.batches += 1
        self._stats.aggregate_writes += outcome.aggregate_writes
        self._stats.replays_skipped += outcome.records_skipped
        self._stats.refused_updates += outcome.refused_updates
        self._note_applied(records)
        return last

    def _note_applied(self, run: list[StreamRecord]) -> None:
        now_ms = int(time.time() * 1000)
        for record in run:
            usage = record.inserted
            if usage is not None:
                self._stats.usage_applied += 1
                self._stats.stream_lag.record(now_ms - usage.written_at_ms)
                self._stats.end_to_end_lag.record(now_ms - usage.accepted_at_ms)


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


class Aggregator:
    """Supervises one reader task per readable shard."""

    def __init__(
        self,
        settings: AggregatorSettings,
        ddb: DynamoDBClient,
        streams: DynamoDBStreamsClient,
        stats: AggregatorStats | None = None,
    ) -> None:
        self._settings = settings
        self._ddb = ddb
        self._streams = streams
        self._checkpoints = CheckpointStore(ddb, settings.aws.names.checkpoints_table)
        self._applier = AggregateApplier(ddb, settings.aws.names.aggregates_table)
        self.stats = stats or AggregatorStats()
        self.stopping = asyncio.Event()

    async def _stream_arn(self) -> str | None:
        """The usage table's stream, waiting out an unreachable endpoint; None if stopped meanwhile."""
        while not self.stopping.is_set():
            try:
                return await stream_arn_of(self._ddb, self._settings.aws.names.usage_table)
            except Exception:
                log.exception("cannot describe the usage table; retrying")
                await _sleep_unless(self.stopping, self._settings.error_backoff_s)
        return None

    async def run(self) -> None:
        stream_arn = await self._stream_arn()
        if stream_arn is None:
            return
        log.info("following %s", stream_arn)
        finished: set[str] = set()
        readers: dict[str, asyncio.Task[bool]] = {}
        try:
            while not self.stopping.is_set():
                try:
                    shards = await list_shards(self._streams, stream_arn)
                except Exception:
                    # An outage must not end the process: the readers retry on their own, the listing does too.
                    self.stats.errors += 1
                    log.exception("cannot list shards; retrying")
                    await _sleep_unless(self.stopping, self._settings.error_backoff_s)
                    continue
                known = {s["ShardId"] for s in shards}
                for shard in shards:
                    shard_id = shard["ShardId"]
                    if shard_id in finished or shard_id in readers:
                        continue
                    parent = shard.get("ParentShardId")
                    # A parent missing from the listing has been trimmed away: nothing of it is left to wait for.
                    if parent and parent in known and parent not in finished:
                        continue
                    reader = ShardReader(
                        self._settings,
                        self._streams,
                        self._checkpoints,
                        self._applier,
                        stream_arn,
                        shard_id,
                        self.stats,
                        self.stopping,
                    )
                    readers[shard_id] = asyncio.create_task(reader.run(), name=f"shard-{shard_id}")
                done = [shard_id for shard_id, task in readers.items() if task.done()]
                for shard_id in done:
                    if readers.pop(shard_id).result():
                        finished.add(shard_id)
                wait_s = 0.0 if done else self._settings.shard_refresh_s
                if wait_s:
                    await _wait_any(self.stopping, list(readers.values()), wait_s)
        finally:
            self.stopping.set()
            if readers:
                await asyncio.gather(*readers.values(), return_exceptions=True)


async def _wait_any(stopping: asyncio.Event, tasks: list[asyncio.Task[bool]], timeout_s: float) -> None:
    stop_task = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait([stop_task, *tasks], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
