"""Reading the API's answers: error bodies, Retry-After and Cache-Control."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from costkeeper_client.errors import ApiError, AuthenticationFailed, QuotaExceeded

# 408 and 425 are the server asking for the same request again; 429 and 5xx are load or a restart. Anything else in
# 4xx is about the request itself, and the same request would fail the same way.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|=|$)", re.IGNORECASE)


def retry_after_s(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date, RFC 9110 10.2.3); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def max_age_s(response: httpx.Response) -> float:
    """How long the answer may be reused: Cache-Control max-age, 0 when absent, no-store or no-cache."""
    header = response.headers.get("cache-control", "")
    if _NO_CACHE.search(header):
        return 0.0
    match = _MAX_AGE.search(header)
    return float(match.group(1)) if match else 0.0


def api_error(response: httpx.Response) -> ApiError:
    """The API's {"error": {"code", "message", "details"?}} as an exception; a body of another shape still maps."""
    code, message, details = f"HTTP_{response.status_code}", response.reason_phrase or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    elif response.text:
        message = response.text[:200]
    after = retry_after_s(response)
    kind = ApiError
    if response.status_code == 429 and code == "QUOTA_EXCEEDED":
        kind = QuotaExceeded
    return kind(response.status_code, code, message, details, after)


def authentication_failed(error: ApiError) -> AuthenticationFailed:
    return AuthenticationFailed(error.status, error.code, error.message, error.details, error.retry_after_s)
