"""The API's settings, read once at start-up."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.aws import AwsSettings
from runtime.env import Parse, overrides, path

log = logging.getLogger("ingest_api")


@dataclass(frozen=True)
class ApiSettings:
    aws: AwsSettings
    # Secrets never appear in a repr (logs, tracebacks).
    jwt_secret: str = field(repr=False)
    # None disables the provisioning endpoints (they answer 503 ADMIN_API_DISABLED).
    admin_api_key: str | None = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    access_log: bool = False
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 86400
    # Timestamps up to this far ahead of the server clock are accepted: client clocks drift.
    clock_skew_s: int = 60
    # Events of the previous org-local day are still accepted this long after local midnight.
    late_arrival_grace_s: int = 900
    # How long a "not revoked" answer is trusted before the revoked-tokens table is asked again.
    revocation_cache_ttl_s: float = 2.0
    catalog_cache_ttl_s: float = 5.0
    # A price change takes effect this long after it is saved: longer than the worker's catalog cache plus the
    # clock skew allowed, so an event is always priced with the prices in force at its timestamp.
    price_change_notice_s: float = 300.0
    # SendMessageBatch calls in flight at once; while they are busy, new events gather into the next batch.
    publisher_max_inflight: int = 4
    # The longest a request waits for the queue to acknowledge its events before it is answered 503.
    publish_timeout_s: float = 5.0
    # How long a one-time secret link (provisioning and rotation answers) can be claimed.
    one_time_secret_ttl_s: int = 24 * 3600
    # /metrics and /status measure the queues and the aggregator's lag at most this often (and at least: model
    # selection reads the last measurement).
    metrics_refresh_s: float = 5.0
    # Model selection answers no better than TIGHT, cached this briefly, while the counted spend lags more than this.
    selection_max_lag_s: float = 30.0
    selection_degraded_max_age_s: int = 10
    # Where the publisher's request counters are written as JSON on shutdown; None: nowhere.
    stats_file: Path | None = None
    # Whether a profile registration may ask Bedrock's GetInferenceProfile to confirm it (needs AWS credentials).
    bedrock_profile_check: bool = False

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
            **overrides(env, ENVIRONMENT),
        )


def _flag(raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return raw == "1"


# Each variable and the field it sets; the field's default applies when it is unset. (CK_JWT_SECRET and
# CK_ADMIN_API_KEY are read above: they have no default to fall back on.)
ENVIRONMENT: dict[str, tuple[str, Parse]] = {
    "CK_API_HOST": ("host", str),
    "CK_API_PORT": ("port", int),
    "CK_LOG_LEVEL": ("log_level", str),
    "CK_ACCESS_LOG": ("access_log", _flag),
    "CK_ACCESS_TOKEN_TTL_S": ("access_token_ttl_s", int),
    "CK_REFRESH_TOKEN_TTL_S": ("refresh_token_ttl_s", int),
    "CK_CLOCK_SKEW_S": ("clock_skew_s", int),
    "CK_LATE_ARRIVAL_GRACE_S": ("late_arrival_grace_s", int),
    "CK_REVOCATION_CACHE_TTL_S": ("revocation_cache_ttl_s", float),
    "CK_CATALOG_CACHE_TTL_S": ("catalog_cache_ttl_s", float),
    "CK_PRICE_CHANGE_NOTICE_S": ("price_change_notice_s", float),
    "CK_PUBLISHER_MAX_INFLIGHT": ("publisher_max_inflight", int),
    "CK_PUBLISH_TIMEOUT_S": ("publish_timeout_s", float),
    "CK_ONE_TIME_SECRET_TTL_S": ("one_time_secret_ttl_s", int),
    "CK_METRICS_REFRESH_S": ("metrics_refresh_s", float),
    "CK_SELECTION_MAX_LAG_S": ("selection_max_lag_s", float),
    "CK_SELECTION_DEGRADED_MAX_AGE_S": ("selection_degraded_max_age_s", int),
    "CK_API_STATS_FILE": ("stats_file", path),
    "CK_BEDROCK_PROFILE_CHECK": ("bedrock_profile_check", _flag),
}
