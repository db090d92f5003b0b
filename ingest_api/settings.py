"""The API's settings, read once at start-up."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ingest_api.rate_limits import org_overrides, rate
from runtime.aws import AwsSettings
from runtime.env import InvalidSetting, Parse, overrides, path

log = logging.getLogger("ingest_api")
# HS256 keys and API keys shorter than this are guessable offline (a JWT is a hash to test guesses against).
MIN_SECRET_BYTES = 32


def _strong_secret(variable: str, value: str | None) -> str | None:
    if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
        raise InvalidSetting(
            f"{variable} must be at least {MIN_SECRET_BYTES} bytes; generate one with `openssl rand -base64 48`"
        )
    return value


@dataclass(frozen=True)
class ApiSettings:
    aws: AwsSettings
    # Secrets never appear in a repr (logs, tracebacks).
    jwt_secret: str = field(repr=False)
    # None disables the provisioning endpoints (they answer 503 ADMIN_API_DISABLED).
    admin_api_key: str | None = field(repr=False)
    # None leaves /health/deep and /metrics open (behind the load balancer's rules); set, they take it.
    ops_token: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    access_log: bool = False
    # Tokens name the deployment they are for: another deployment's tokens are refused even under the same key.
    jwt_audience: str = "bedrock-cost-keeper"
    # How far a token's iat/nbf may lie ahead of this replica's clock (another replica minted it).
    jwt_leeway_s: int = 10
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 86400
    # A session (its first token, then every refresh) ends this long after it began, however often it is refreshed.
    session_max_lifetime_s: int = 30 * 86400
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
    # Events (and their encoded bytes) waiting for a send; past either, a request is refused at once with a 503.
    publisher_max_pending_events: int = 20_000
    publisher_max_pending_bytes: int = 16 * 1024 * 1024
    # Requests one process works on at once; past it, 503 OVERLOADED at once (liveness exempt).
    max_concurrent_requests: int = 256
    # How long a one-time secret link (provisioning and rotation answers) can be claimed.
    one_time_secret_ttl_s: int = 24 * 3600
    # /metrics and the dashboard measure the queues and the aggregator's lag at most this often; the dashboard's
    # history samples them this often too (at least every second).
    metrics_refresh_s: float = 5.0
    # /health/deep asks the tables and queues at most this often.
    health_cache_s: float = 5.0
    # Model selection answers no better than TIGHT, cached this briefly, while the counted spend lags more than this
    # (it reads the last measurement, which the API keeps fresh every metrics_refresh_s).
    selection_max_lag_s: float = 30.0
    selection_degraded_max_age_s: int = 10
    # Where the publisher's request counters are written as JSON on shutdown; None: nowhere.
    stats_file: Path | None = None
    # Whether a profile registration may ask Bedrock's GetInferenceProfile to confirm it (needs AWS credentials).
    bedrock_profile_check: bool = False
    # Rate limits in the `limits` notation (ingest_api/rate_limits.py); a refused credential costs rate_failure_cost.
    rate_auth_per_client: str = "30/minute"
    rate_auth_per_address: str = "120/minute"
    rate_admin_failures_per_address: str = "10/minute"
    rate_claims_per_address: str = "10/minute"
    rate_usage_per_client: str = "30000/minute"
    rate_reads_per_client: str = "6000/minute"
    rate_failure_cost: int = 5
    # {"<org_id>": {"usage": "<limit>", "reads": "<limit>"}}
    rate_limit_org_overrides: str = "{}"
    # memory:// counts per replica; redis://host:6379 (with limits[redis]) shares the counts between replicas.
    rate_limit_storage: str = "memory://"
    # Addresses whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips): the load balancer's.
    trusted_proxies: str = "127.0.0.1"

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
            jwt_secret=_strong_secret("CK_JWT_SECRET", jwt_secret) or jwt_secret,
            admin_api_key=_strong_secret("CK_ADMIN_API_KEY", env.get("CK_ADMIN_API_KEY") or None),
            ops_token=_strong_secret("CK_OPS_TOKEN", env.get("CK_OPS_TOKEN") or None),
            **overrides(env, ENVIRONMENT),
        )


def _flag(raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return raw == "1"


# Each variable and the field it sets; the field's default applies when it is unset. (CK_JWT_SECRET and
# CK_ADMIN_API_KEY and CK_OPS_TOKEN are read above: they have no default to fall back on.)
ENVIRONMENT: dict[str, tuple[str, Parse]] = {
    "CK_API_HOST": ("host", str),
    "CK_API_PORT": ("port", int),
    "CK_LOG_LEVEL": ("log_level", str),
    "CK_ACCESS_LOG": ("access_log", _flag),
    "CK_JWT_AUDIENCE": ("jwt_audience", str),
    "CK_JWT_LEEWAY_S": ("jwt_leeway_s", int),
    "CK_ACCESS_TOKEN_TTL_S": ("access_token_ttl_s", int),
    "CK_REFRESH_TOKEN_TTL_S": ("refresh_token_ttl_s", int),
    "CK_SESSION_MAX_LIFETIME_S": ("session_max_lifetime_s", int),
    "CK_CLOCK_SKEW_S": ("clock_skew_s", int),
    "CK_LATE_ARRIVAL_GRACE_S": ("late_arrival_grace_s", int),
    "CK_REVOCATION_CACHE_TTL_S": ("revocation_cache_ttl_s", float),
    "CK_CATALOG_CACHE_TTL_S": ("catalog_cache_ttl_s", float),
    "CK_PRICE_CHANGE_NOTICE_S": ("price_change_notice_s", float),
    "CK_PUBLISHER_MAX_INFLIGHT": ("publisher_max_inflight", int),
    "CK_PUBLISH_TIMEOUT_S": ("publish_timeout_s", float),
    "CK_PUBLISHER_MAX_PENDING_EVENTS": ("publisher_max_pending_events", int),
    "CK_PUBLISHER_MAX_PENDING_BYTES": ("publisher_max_pending_bytes", int),
    "CK_MAX_CONCURRENT_REQUESTS": ("max_concurrent_requests", int),
    "CK_ONE_TIME_SECRET_TTL_S": ("one_time_secret_ttl_s", int),
    "CK_METRICS_REFRESH_S": ("metrics_refresh_s", float),
    "CK_HEALTH_CACHE_S": ("health_cache_s", float),
    "CK_SELECTION_MAX_LAG_S": ("selection_max_lag_s", float),
    "CK_SELECTION_DEGRADED_MAX_AGE_S": ("selection_degraded_max_age_s", int),
    "CK_API_STATS_FILE": ("stats_file", path),
    "CK_BEDROCK_PROFILE_CHECK": ("bedrock_profile_check", _flag),
    "CK_RATE_AUTH_PER_CLIENT": ("rate_auth_per_client", rate),
    "CK_RATE_AUTH_PER_ADDRESS": ("rate_auth_per_address", rate),
    "CK_RATE_ADMIN_FAILURES_PER_ADDRESS": ("rate_admin_failures_per_address", rate),
    "CK_RATE_CLAIMS_PER_ADDRESS": ("rate_claims_per_address", rate),
    "CK_RATE_USAGE_PER_CLIENT": ("rate_usage_per_client", rate),
    "CK_RATE_READS_PER_CLIENT": ("rate_reads_per_client", rate),
    "CK_RATE_FAILURE_COST": ("rate_failure_cost", int),
    "CK_RATE_LIMIT_ORG_OVERRIDES": ("rate_limit_org_overrides", org_overrides),
    "CK_RATE_LIMIT_STORAGE": ("rate_limit_storage", str),
    "CK_TRUSTED_PROXIES": ("trusted_proxies", str),
}
