"""The API's settings, read once at start-up."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.aws import AwsSettings
from runtime.stats_file import stats_path

log = logging.getLogger("ingest_api")


@dataclass(frozen=True)
class ApiSettings:
    aws: AwsSettings
    jwt_secret: str
    # None disables the provisioning endpoints (they answer 503 ADMIN_API_DISABLED).
    admin_api_key: str | None
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 86400
    # Timestamps up to this far ahead of the server clock are accepted: client clocks drift.
    clock_skew_s: int = 60
    # Events of the previous org-local day are still accepted this long after local midnight.
    late_arrival_grace_s: int = 900
    # How long a "not revoked" answer is trusted before the revoked-tokens table is asked again.
    revocation_cache_ttl_s: float = 2.0
    catalog_cache_ttl_s: float = 5.0
    # SendMessageBatch calls in flight at once; while they are busy, new events gather into the next batch.
    publisher_max_inflight: int = 4
    # The longest a request waits for the queue to acknowledge its events before it is answered 503.
    publish_timeout_s: float = 5.0
    one_time_secret_ttl_s: int = 24 * 3600
    metrics_refresh_s: float = 5.0
    # Where the publisher's request counters are written as JSON on shutdown; None: nowhere.
    stats_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if env is None else env
        jwt_secret = env.get("CK_JWT_SECRET")
        if not jwt_secret:
            # Tokens then die with the process and differ between replicas: fine for a laptop, never for production.
            log.warning("CK_JWT_SECRET is not set; using a random secret for this process only")
            jwt_secret = secrets.token_urlsafe(48)
        return cls(
            aws=AwsSettings.from_env(env),
            jwt_secret=jwt_secret,
            admin_api_key=env.get("CK_ADMIN_API_KEY") or None,
            access_token_ttl_s=int(env.get("CK_ACCESS_TOKEN_TTL_S", "3600")),
            refresh_token_ttl_s=int(env.get("CK_REFRESH_TOKEN_TTL_S", str(30 * 86400))),
            clock_skew_s=int(env.get("CK_CLOCK_SKEW_S", "60")),
            late_arrival_grace_s=int(env.get("CK_LATE_ARRIVAL_GRACE_S", "900")),
            revocation_cache_ttl_s=float(env.get("CK_REVOCATION_CACHE_TTL_S", "2")),
            catalog_cache_ttl_s=float(env.get("CK_CATALOG_CACHE_TTL_S", "5")),
            publisher_max_inflight=int(env.get("CK_PUBLISHER_MAX_INFLIGHT", "4")),
            publish_timeout_s=float(env.get("CK_PUBLISH_TIMEOUT_S", "5")),
            one_time_secret_ttl_s=int(env.get("CK_ONE_TIME_SECRET_TTL_S", str(24 * 3600))),
            metrics_refresh_s=float(env.get("CK_METRICS_REFRESH_S", "5")),
            stats_file=stats_path(env, "CK_API_STATS_FILE"),
        )
