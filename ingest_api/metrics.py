"""Prometheus metrics: the API's own request figures and, refreshed on scrape, the pipeline's depth and lag."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api.pipeline_status import DEGRADED_REASONS, STATUS_UNKNOWN, PipelineStatus

log = logging.getLogger("ingest_api.metrics")


class ApiMetrics:
    def __init__(self, max_lag_s: float = 30.0) -> None:
        self._max_lag_s = max_lag_s
        # A registry per app: tests build many apps in one process.
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ck_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "ck_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.events_accepted = Counter("ck_usage_events_accepted", "usage events queued", registry=r)
        self.events_rejected = Counter("ck_usage_events_rejected", "usage events rejected", ["code"], registry=r)
        self.events_failed = Counter("ck_usage_events_enqueue_failed", "usage events not queued", registry=r)
        self.selections = Counter("ck_model_selections", "model selections by mode", ["mode"], registry=r)
        self.queue_messages = Gauge("ck_queue_messages", "usage queue depth", ["queue", "state"], registry=r)
        self.aggregator_pending = Gauge(
            "ck_aggregator_pending_records", "stream records not yet aggregated (capped per shard)", registry=r
        )
        self.aggregator_lag = Gauge(
            "ck_aggregator_lag_seconds", "age of the oldest stream record not yet aggregated", registry=r
        )
        self.status_errors = Counter("ck_pipeline_status_errors", "failed pipeline status refreshes", registry=r)
        self.stream_gaps = Gauge(
            "ck_stream_gaps", "stream shards with records trimmed before they were counted (reconcile!)", registry=r
        )
        self.degraded = Gauge(
            "ck_pipeline_degraded",
            "1 while accepted usage may be missing from the aggregates, by reason (as /health lists them)",
            ["reason"],
            registry=r,
        )
        self.degraded.labels(STATUS_UNKNOWN).set(1)  # until the first measurement

    def record_status(self, status: PipelineStatus) -> None:
        for label, depth in (("usage", status.queue), ("dead_letter", status.dead_letter)):
            self.queue_messages.labels(label, "visible").set(depth.visible)
            self.queue_messages.labels(label, "in_flight").set(depth.in_flight)
            self.queue_messages.labels(label, "delayed").set(depth.delayed)
        self.aggregator_pending.set(status.pending_records)
        self.aggregator_lag.set(status.lag_s)
        self.stream_gaps.set(status.stream_gaps)
        reasons = status.degraded(self._max_lag_s)
        for reason in DEGRADED_REASONS:
            self.degraded.labels(reason).set(1 if reason in reasons else 0)

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every request by its route template, not its raw path (ids would explode the labels)."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], ApiMetrics | None], routes: list[Any]) -> None:
        self._app = app
        self._metrics = metrics
        self._routes = routes

    def _template(self, scope: Scope) -> str:
        for route in self._routes:
            if isinstance(route, Route) and route.matches(scope)[0] != Match.NONE:
                return route.path
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self._metrics()
        if scope["type"] != "http" or metrics is None:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            route = self._template(scope)
            metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
            metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
