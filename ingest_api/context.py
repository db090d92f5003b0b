"""Everything a request handler needs, built once in the app's lifespan and reached through request.app.state.

Handlers get stores and services, never AWS clients: what they may do to the tables is what these offer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.requests import Request

from catalog.store import CatalogStore
from ingest_api.health import HealthProbe
from ingest_api.one_time_secrets import OneTimeSecrets
from ingest_api.pipeline_history import PipelineSampler
from ingest_api.pipeline_status import PipelineMonitor
from ingest_api.profile_check import ProfileChecker
from ingest_api.publisher import UsagePublisher
from ingest_api.rate_limits import RateLimiter
from ingest_api.settings import ApiSettings
from ingest_api.spend import SpendService
from ingest_api.tokens import RevocationStore, TokenIssuer

if TYPE_CHECKING:
    from ingest_api.metrics import ApiMetrics


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: ApiSettings
    catalog: CatalogStore
    publisher: UsagePublisher
    issuer: TokenIssuer
    revocations: RevocationStore
    one_time_secrets: OneTimeSecrets
    spend: SpendService
    health: HealthProbe
    pipeline: PipelineMonitor
    pipeline_history: PipelineSampler
    metrics: ApiMetrics
    profile_checker: ProfileChecker
    limits: RateLimiter
    clock: Callable[[], datetime] = field(default=utc_now)

    def now(self) -> datetime:
        return self.clock()


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
