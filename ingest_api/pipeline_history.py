"""The pipeline's figures over the last hour, sampled by the API itself and kept in memory for the dashboard.

No store holds this history: the queue's depth and the aggregator's lag are only ever "now", so the API samples them
(through the PipelineMonitor that /metrics uses, so sampling costs no extra reads) every few seconds and keeps a
fixed window. A restarted API starts with an empty chart; that is the price of needing no table for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from dataclasses import dataclass

from ingest_api.pipeline_status import PipelineMonitor, PipelineStatus

HISTORY_S = 3600.0
# However short the metrics refresh is set (0 in tests: measure on every scrape), the sampler waits at least this.
MIN_SAMPLE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class PipelineSample:
    at_s: float  # epoch seconds of the measurement
    queued: int  # usage queue: visible + in flight + delayed
    dead_letters: int
    lag_s: float
    pending_records: int


def sample_of(status: PipelineStatus) -> PipelineSample:
    return PipelineSample(
        at_s=status.measured_at,
        queued=status.queue.total,
        dead_letters=status.dead_letter.total,
        lag_s=status.lag_s,
        pending_records=status.pending_records,
    )


class SampleWindow:
    """The samples of the last window_s seconds, oldest first, in bounded memory.

    Bounded twice: by age (older than window_s before the newest sample) and by count (what window_s holds at one
    sample per interval_s), so a burst of samples cannot grow it either.
    """

    def __init__(self, window_s: float, interval_s: float) -> None:
        self.window_s = window_s
        self.capacity = math.ceil(window_s / interval_s) + 1
        self._samples: deque[PipelineSample] = deque(maxlen=self.capacity)

    def add(self, sample: PipelineSample) -> None:
        if self._samples and sample.at_s <= self._samples[-1].at_s:
            return  # the same measurement again (the monitor had nothing newer), or one out of order
        self._samples.append(sample)
        while self._samples[0].at_s < sample.at_s - self.window_s:
            self._samples.popleft()

    def samples(self) -> list[PipelineSample]:
        return list(self._samples)

    def latest(self) -> PipelineSample | None:
        return self._samples[-1] if self._samples else None


class PipelineSampler:
    """Fills a SampleWindow from the monitor every interval_s, from start() until close()."""

    def __init__(self, monitor: PipelineMonitor, interval_s: float, window_s: float = HISTORY_S) -> None:
        self.interval_s = max(interval_s, MIN_SAMPLE_INTERVAL_S)
        self.window = SampleWindow(window_s, self.interval_s)
        self._monitor = monitor
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pipeline-sampler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            # The monitor logs and counts its own failures and then answers its last good status (or None).
            status = await self._monitor.latest()
            if status is not None:
                self.window.add(sample_of(status))
            await asyncio.sleep(self.interval_s)
