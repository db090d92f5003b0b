"""ingest_api/pipeline_status.py: why accepted usage may be missing from the aggregates, from one measurement."""

from __future__ import annotations

from aggregator.backlog import ShardLag
from ingest_api.pipeline_status import PipelineStatus
from runtime.queue_depth import QueueDepth


def status(lag_s: float | None = None, dead: int = 0, gap: bool = False) -> PipelineStatus:
    return PipelineStatus(
        queue=QueueDepth("usage", 3, 1, 0),
        dead_letter=QueueDepth("usage-dlq", dead, 0, 0),
        shards=[ShardLag("shardId-1", 5, lag_s, False, gap), ShardLag("shardId-0", 0, None, True)],
    )


def test_a_healthy_pipeline_gives_no_reason() -> None:
    assert status(lag_s=1.5).degraded(max_lag_s=30) == []
    assert status().degraded(max_lag_s=30) == []


def test_each_reason_is_reported_on_its_own() -> None:
    assert status(lag_s=31).degraded(30) == ["aggregator_lag"]
    assert status(dead=1).degraded(30) == ["dead_letters"]
    gapped = status(gap=True)
    assert (gapped.degraded(30), gapped.stream_gaps, gapped.as_dict()["aggregator"]["stream_gaps"]) == (
        ["stream_gap"],
        1,
        1,
    )
    assert status(lag_s=99, dead=2, gap=True).degraded(30) == ["aggregator_lag", "dead_letters", "stream_gap"]
