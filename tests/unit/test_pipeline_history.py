"""The dashboard's pipeline history: the last hour of samples in bounded memory."""

from __future__ import annotations

from ingest_api.pipeline_history import MIN_SAMPLE_INTERVAL_S, PipelineSample, PipelineSampler, SampleWindow, sample_of
from ingest_api.pipeline_status import PipelineStatus
from runtime.queue_depth import QueueDepth


def sample(at_s: float, queued: int = 0) -> PipelineSample:
    return PipelineSample(at_s=at_s, queued=queued, dead_letters=0, lag_s=0.0, pending_records=0)


def test_samples_older_than_the_window_before_the_newest_are_dropped() -> None:
    window = SampleWindow(window_s=60, interval_s=5)
    for at_s in range(0, 125, 5):
        window.add(sample(at_s))
    assert [s.at_s for s in window.samples()] == list(range(60, 125, 5))
    latest = window.latest()
    assert latest is not None and latest.at_s == 120


def test_the_window_holds_at_most_what_its_span_holds_at_its_interval_however_fast_samples_come() -> None:
    window = SampleWindow(window_s=60, interval_s=5)
    assert window.capacity == 13
    for step in range(1000):
        window.add(sample(step * 0.01))
    assert len(window.samples()) == window.capacity
    assert window.samples()[-1].at_s == 999 * 0.01


def test_the_same_measurement_twice_or_an_older_one_is_not_added() -> None:
    window = SampleWindow(window_s=60, interval_s=5)
    window.add(sample(10, queued=1))
    window.add(sample(10, queued=2))  # the monitor answered its last status again
    window.add(sample(5, queued=3))
    assert [(s.at_s, s.queued) for s in window.samples()] == [(10, 1)]
    assert SampleWindow(60, 5).latest() is None


def test_a_sample_carries_the_figures_the_charts_draw() -> None:
    status = PipelineStatus(
        queue=QueueDepth("q", visible=3, in_flight=2, delayed=1),
        dead_letter=QueueDepth("dlq", visible=4, in_flight=1, delayed=0),
        measured_at=1234.5,
    )
    assert sample_of(status) == PipelineSample(at_s=1234.5, queued=6, dead_letters=5, lag_s=0.0, pending_records=0)


def test_the_sampler_never_samples_faster_than_its_floor() -> None:
    # CK_METRICS_REFRESH_S=0 means "measure on every scrape", not "sample in a busy loop".
    sampler = PipelineSampler(monitor=None, interval_s=0)  # type: ignore[arg-type]
    assert sampler.interval_s == MIN_SAMPLE_INTERVAL_S
    assert sampler.window.capacity == 3601
