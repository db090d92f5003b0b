"""The pipeline's figures: queue and dead-letter depth, and how far the aggregator is behind the stream.

The API serves them (/metrics, the dashboard); the operator tooling (`costkeeper queue`/`watch`, the test harness) reads
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

# Why the pipeline is degraded: the reasons /health lists and ck_pipeline_degraded labels.
AGGREGATOR_LAG = "aggregator_lag"
DEAD_LETTERS = "dead_letters"
STREAM_GAP = "stream_gap"
STATUS_UNKNOWN = "status_unknown"
DEGRADED_REASONS = (AGGREGATOR_LAG, DEAD_LETTERS, STREAM_GAP, STATUS_UNKNOWN)
# The background refresh never runs more often than this, whatever CK_METRICS_REFRESH_S says (0: every scrape).
MIN_BACKGROUND_REFRESH_S = 1.0


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

    @property
    def stream_gaps(self) -> int:
        """Shards with records that left the stream before they were counted (aggregator/backlog.py)."""
        return sum(1 for s in self.shards if s.gap)

    def degraded(self, max_lag_s: float) -> list[str]:
        """Why usage the API accepted may be missing from the aggregates now: each reason an operator must see."""
        reasons = []
        if self.lag_s > max_lag_s:
            reasons.append(AGGREGATOR_LAG)
        if self.dead_letter.total > 0:
            reasons.append(DEAD_LETTERS)
        if self.stream_gaps:
            reasons.append(STREAM_GAP)
        return reasons

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": {**self.queue.__dict__, "total": self.queue.total},
            "dead_letter": {**self.dead_letter.__dict__, "total": self.dead_letter.total},
            "aggregator": {
                "pending_records": self.pending_records,
                "lag_s": round(self.lag_s, 3),
                "stream_gaps": self.stream_gaps,
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

    /metrics, the dashboard and its history sampler share it, so a browser tab left open costs no more than a scraper
    does.
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

    @property
    def _period_s(self) -> float:
        return max(self._max_age_s, MIN_BACKGROUND_REFRESH_S)

    async def keep_fresh(self) -> None:
        """Measure every refresh period until cancelled, so readers of the last status never wait for one."""
        while True:
            await self.latest()
            await asyncio.sleep(self._period_s)

    def _recent(self) -> PipelineStatus | None:
        # A measurement older than three refresh periods (or none yet, or the last ones failing) says nothing of now.
        if self._last is None or time.monotonic() - self._last_ok_at > 3 * self._period_s:
            return None
        return self._last

    def metering_lag_s(self) -> float | None:
        """How far the aggregator was behind at the last measurement, plus its age: an upper bound on the lag now.
        None when no measurement is recent (unknown): model selection treats that as lagging (fail safe)."""
        recent = self._recent()
        if recent is None:
            return None
        return recent.lag_s + (time.monotonic() - self._last_ok_at)

    def degraded(self, max_lag_s: float) -> list[str]:
        recent = self._recent()
        return [STATUS_UNKNOWN] if recent is None else recent.degraded(max_lag_s)
