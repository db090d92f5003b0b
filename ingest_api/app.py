"""The Starlette application: routes, error handlers, and the lifespan that opens and closes every client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from aggregator.aggregates import AggregateReader
from catalog.store import CatalogStore
from ingest_api import (
    routes_auth,
    routes_dashboard,
    routes_ops,
    routes_profiles,
    routes_provisioning,
    routes_reads,
    routes_usage,
)
from ingest_api.body_limit import BodyLimitMiddleware
from ingest_api.concurrency import ConcurrencyLimitMiddleware
from ingest_api.context import Services
from ingest_api.errors import domain_error_response, exception_handlers
from ingest_api.fallbacks import FallbackStore
from ingest_api.health import HealthProbe
from ingest_api.metrics import ApiMetrics, MetricsMiddleware
from ingest_api.one_time_secrets import OneTimeSecrets
from ingest_api.pipeline_history import PipelineSampler
from ingest_api.pipeline_status import PipelineMonitor
from ingest_api.profile_check import ProfileChecker, bedrock_describer
from ingest_api.publisher import UsagePublisher
from ingest_api.rate_limits import rate_limiter
from ingest_api.settings import ApiSettings
from ingest_api.spend import SpendService
from ingest_api.tokens import RevocationStore, TokenIssuer
from runtime.aws import open_async_clients
from runtime.stats_file import write_stats

# Answered however busy the process is: the load balancer's question is only whether it is alive.
LIVENESS_PATHS = frozenset({"/health"})

ROUTES = [
    *routes_auth.routes,
    *routes_provisioning.routes,
    *routes_usage.routes,
    *routes_reads.routes,
    *routes_profiles.routes,
    *routes_ops.routes,
    *routes_dashboard.routes,
]


def create_app(settings: ApiSettings) -> Starlette:
    metrics = ApiMetrics(settings.selection_max_lag_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        names = settings.aws.names
        async with open_async_clients(settings.aws) as clients:
            queue_url = (await clients.sqs.get_queue_url(QueueName=names.usage_queue))["QueueUrl"]
            dlq_url = (await clients.sqs.get_queue_url(QueueName=names.dead_letter_queue))["QueueUrl"]
            publisher = UsagePublisher(
                clients.sqs,
                queue_url,
                settings.publisher_max_inflight,
                settings.publish_timeout_s,
                settings.publisher_max_pending_events,
                settings.publisher_max_pending_bytes,
            )
            publisher.start()
            catalog = CatalogStore(
                clients.dynamodb,
                names.config_table,
                settings.catalog_cache_ttl_s,
                settings.revocation_cache_ttl_s,
                price_change_notice_s=settings.price_change_notice_s,
            )
            pipeline = PipelineMonitor(
                clients,
                names,
                settings.metrics_refresh_s,
                on_status=metrics.record_status,
                on_error=metrics.status_errors.inc,
            )
            # Model selection reads the aggregator's lag from here without waiting for a measurement.
            monitoring = asyncio.create_task(pipeline.keep_fresh(), name="pipeline-monitor")
            services = Services(
                settings=settings,
                catalog=catalog,
                publisher=publisher,
                issuer=TokenIssuer(
                    settings.jwt_secret,
                    settings.access_token_ttl_s,
                    settings.refresh_token_ttl_s,
                    settings.session_max_lifetime_s,
                    settings.jwt_audience,
                    settings.jwt_leeway_s,
                ),
                revocations=RevocationStore(
                    clients.dynamodb,
                    names.revoked_tokens_table,
                    settings.revocation_cache_ttl_s,
                    memo_ttl_s=settings.access_token_ttl_s,
                ),
                one_time_secrets=OneTimeSecrets(
                    clients.dynamodb, names.one_time_secrets_table, settings.one_time_secret_ttl_s
                ),
                spend=SpendService(
                    catalog,
                    AggregateReader(clients.dynamodb, names.aggregates_table),
                    FallbackStore(clients.dynamodb, names.config_table),
                    clock=lambda: services.now(),
                    on_selection=lambda mode: metrics.selections.labels(mode).inc(),
                    metering_lag_s=pipeline.metering_lag_s,
                    max_lag_s=settings.selection_max_lag_s,
                    degraded_max_age_s=settings.selection_degraded_max_age_s,
                ),
                health=HealthProbe(clients, names, queue_url, dlq_url, settings.health_cache_s),
                pipeline=pipeline,
                pipeline_history=PipelineSampler(pipeline, settings.metrics_refresh_s),
                metrics=metrics,
                profile_checker=ProfileChecker(
                    bedrock_describer(settings.aws.client_kwargs) if settings.bedrock_profile_check else None,
                    settings.aws.region,
                ),
                limits=rate_limiter(settings),
            )
            app.state.services = services
            services.pipeline_history.start()
            try:
                yield
            finally:
                await services.pipeline_history.close()
                monitoring.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitoring
                # Requests still waiting on the queue get their answer before the clients close.
                await publisher.close()
                if settings.stats_file is not None:
                    write_stats(settings.stats_file, "api", dict(vars(publisher.stats)))

    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[
            Middleware(MetricsMiddleware, metrics=lambda: metrics, routes=ROUTES),
            Middleware(
                ConcurrencyLimitMiddleware,
                max_requests=settings.max_concurrent_requests,
                reject=domain_error_response,
                exempt_paths=LIVENESS_PATHS,
            ),
            Middleware(BodyLimitMiddleware),
        ],
        exception_handlers=exception_handlers(),
    )
