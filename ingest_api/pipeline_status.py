"""The pipeline's figures: queue and dead-letter depth, and how far the aggregator is behind the stream.

The API serves them (/metrics, /status); the operator tooling (`costkeeper queue`/`watch`, the test harness) reads
them through here too. Each part is measured by the stage that owns it (runtime/queue_depth.py, aggregator/backlog.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aggregator.backlog import ShardLag, shard_lags
from runtime.aws import AsyncClients
from runtime.queue_depth import QueueDepth, queue_depth
from runtime.resources import ResourceNames

log = logging.getLogger("ingest_api.pipeline_status")


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


async def pipeline_status(clients: AsyncClients, names: ResourceNames) -> PipelineStatus:
    return PipelineStatus(
        queue=await queue_depth(clients.sqs, names.usage_queue),
        dead_letter=await queue_depth(clients.sqs, names.dead_letter_queue),
        shards=await shard_lags(clients.dynamodb, clients.streams, names.usage_table, names.checkpoints_table),
    )


class PipelineMonitor:
    """The pipeline status measured at most every max_age_s, however often it is asked for.

    /metrics and /status share it, so a browser tab left open costs no more than a scraper does.
    """

    def __init__(
        self,
        clients: AsyncClients,
        names: ResourceNames,
        max_age_s: float,
        on_status: Callable[[PipelineStatus], None] = lambda status: None,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self._clients = clients
        self._names = names
        self._max_age_s = max_age_s
        self._on_status = on_status
        self._on_error = on_error
        self._measured_at = float("-inf")
        self._last: PipelineStatus | None = None
        self._last_ok_at = float("-inf")

    async def latest(self) -> PipelineStatus | None:
        """The last successful measurement (refreshed if stale); None if none has succeeded yet."""
        if time.monotonic() - self._measured_at >= self._max_age_s:
            self._measured_at = time.monotonic()
            try:
                self._last = await pipeline_status(self._clients, self._names)
            except Exception:
                self._on_error()
                log.exception("could not refresh pipeline status")
            else:
                self._last_ok_at = time.monotonic()
                self._on_status(self._last)
        return self._last

    async def keep_fresh(self) -> None:
        """Measure every max_age_s until cancelled, so readers of metering_lag_s never wait for a measurement."""
        while True:
            await self.latest()
            await asyncio.sleep(self._max_age_s)

    def metering_lag_s(self) -> float | None:
        """How far the aggregator was behind at the last measurement; None when none is recent (unknown).

        A measurement older than three refresh periods (or the first not yet made, or the last ones failing) says
        nothing about now: the answer is None, and model selection treats that as lagging (fail safe).
        """
        if self._last is None or time.monotonic() - self._last_ok_at > 3 * self._max_age_s:
            return None
        return self._last.lag_s + (time.monotonic() - self._last_ok_at)
