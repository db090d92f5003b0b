"""The Starlette application: routes, error handlers, and the lifespan that opens and closes every client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from catalog.store import CatalogStore
from infra.aws import open_async_clients
from infra.stats_file import write_stats
from ingest_api import routes_auth, routes_ops, routes_provisioning, routes_reads, routes_usage
from ingest_api.context import Services
from ingest_api.errors import ApiError, handle_api_error, handle_http_exception, handle_unexpected
from ingest_api.fallbacks import FallbackStore
from ingest_api.metrics import ApiMetrics, MetricsMiddleware
from ingest_api.publisher import UsagePublisher
from ingest_api.settings import ApiSettings
from ingest_api.tokens import RevocationStore, TokenIssuer

ROUTES = [
    *routes_auth.routes,
    *routes_provisioning.routes,
    *routes_usage.routes,
    *routes_reads.routes,
    *routes_ops.routes,
]


def create_app(settings: ApiSettings) -> Starlette:
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        names = settings.aws.names
        async with open_async_clients(settings.aws) as clients:
            queue_url = (await clients.sqs.get_queue_url(QueueName=names.usage_queue))["QueueUrl"]
            dlq_url = (await clients.sqs.get_queue_url(QueueName=names.dead_letter_queue))["QueueUrl"]
            publisher = UsagePublisher(
                clients.sqs, queue_url, settings.publisher_max_inflight, settings.publish_timeout_s
            )
            publisher.start()
            app.state.services = Services(
                settings=settings,
                clients=clients,
                catalog=CatalogStore(clients.dynamodb, names.config_table, settings.catalog_cache_ttl_s),
                publisher=publisher,
                issuer=TokenIssuer(settings.jwt_secret, settings.access_token_ttl_s, settings.refresh_token_ttl_s),
                revocations=RevocationStore(
                    clients.dynamodb, names.revoked_tokens_table, settings.revocation_cache_ttl_s
                ),
                fallbacks=FallbackStore(clients.dynamodb, names.config_table),
                metrics=metrics,
                queue_url=queue_url,
                dlq_url=dlq_url,
            )
            try:
                yield
            finally:
                # Requests still waiting on the queue get their answer before the clients close.
                await publisher.close()
                if settings.stats_file is not None:
                    write_stats(settings.stats_file, "api", dict(vars(publisher.stats)))

    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[Middleware(MetricsMiddleware, metrics=lambda: metrics, routes=ROUTES)],
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
    )
