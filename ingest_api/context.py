"""Everything a request handler needs, built once in the app's lifespan and reached through request.app.state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.requests import Request

from catalog.store import CatalogStore
from infra.aws import AsyncClients
from ingest_api.fallbacks import FallbackStore
from ingest_api.publisher import UsagePublisher
from ingest_api.settings import ApiSettings
from ingest_api.tokens import RevocationStore, TokenIssuer

if TYPE_CHECKING:
    from ingest_api.metrics import ApiMetrics


@dataclass
class Services:
    settings: ApiSettings
    clients: AsyncClients
    catalog: CatalogStore
    publisher: UsagePublisher
    issuer: TokenIssuer
    revocations: RevocationStore
    fallbacks: FallbackStore
    metrics: ApiMetrics
    queue_url: str
    dlq_url: str

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
