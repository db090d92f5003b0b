"""One error shape for every failure, {"error": {"code": ..., "message": ..., "details": ...}}, and the one place
where what went wrong becomes an HTTP status.

Domain modules raise exceptions named for what went wrong (OrgNotFound, TokenExpired, QueueUnavailable, ...) and know
nothing of HTTP; DOMAIN_ERRORS maps each to its status and code, and the app installs `exception_handlers()`.
ApiError is for what only the HTTP layer can tell (a malformed path id, a missing header, a body that is not JSON).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalog.model import LabelConflict, UnknownLabels
from catalog.store import AppNotFound, ConcurrentUpdate, LabelInUse, OrgNotFound, ProfileNotFound, TooManyProfiles
from ingest_api.body_limit import BodyTooLarge
from ingest_api.concurrency import Overloaded
from ingest_api.profile_check import ProfileCheckDisabled, ProfileCheckFailed, ProfileCheckUnavailable
from ingest_api.publisher import QueueBacklogFull, QueueUnavailable
from ingest_api.rate_limits import RateLimited
from ingest_api.spend import DateRangeReversed, DateRangeTooLong, QuotaExceeded
from ingest_api.submission import Rejection
from ingest_api.tokens import InvalidToken, TokenExpired, TokenRevoked

log = logging.getLogger("ingest_api")

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bedrock-cost-keeper"'}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


@dataclass(frozen=True)
class HttpMapping:
    status: int
    code: str
    # A fixed message for the client, where the exception's own text is for the log; None: the exception's text.
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # Headers that depend on the exception's own fields (a quota's Retry-After).
    headers_of: Callable[[Any], dict[str, str]] | None = None


def _quota_headers(exc: QuotaExceeded) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after_s), "Cache-Control": f"private, max-age={exc.max_age_s}"}


def _rate_limit_headers(exc: RateLimited) -> dict[str, str]:
    return {
        "Retry-After": str(exc.retry_after_s),
        "X-RateLimit-Limit": str(exc.limit),
        "X-RateLimit-Remaining": str(exc.remaining),
        # Seconds until there is budget again (like Retry-After), not an epoch: replicas' clocks need not agree.
        "X-RateLimit-Reset": str(exc.retry_after_s),
    }


DOMAIN_ERRORS: dict[type[Exception], HttpMapping] = {
    OrgNotFound: HttpMapping(404, "ORG_NOT_FOUND"),
    AppNotFound: HttpMapping(404, "APP_NOT_FOUND"),
    ConcurrentUpdate: HttpMapping(409, "CONCURRENT_UPDATE"),
    LabelInUse: HttpMapping(409, "LABEL_IN_USE"),
    UnknownLabels: HttpMapping(422, "UNKNOWN_MODEL_LABEL"),
    LabelConflict: HttpMapping(409, "LABEL_CONFLICT"),
    ProfileNotFound: HttpMapping(404, "PROFILE_NOT_FOUND"),
    TooManyProfiles: HttpMapping(422, "TOO_MANY_PROFILES"),
    TokenExpired: HttpMapping(401, "TOKEN_EXPIRED", headers=tuple(BEARER_CHALLENGE.items())),
    InvalidToken: HttpMapping(401, "INVALID_TOKEN", headers=tuple(BEARER_CHALLENGE.items())),
    TokenRevoked: HttpMapping(401, "TOKEN_REVOKED", headers=tuple(BEARER_CHALLENGE.items())),
    QueueUnavailable: HttpMapping(
        503,
        "QUEUE_UNAVAILABLE",
        "usage may not have been queued; retry with the same request_id (a retry is never counted twice)",
        (("Retry-After", "1"),),
    ),
    QueueBacklogFull: HttpMapping(
        503,
        "QUEUE_BACKLOG_FULL",
        "too much usage is waiting for the queue; nothing of this request was queued: retry it later",
        (("Retry-After", "1"),),
    ),
    BodyTooLarge: HttpMapping(413, "PAYLOAD_TOO_LARGE"),
    Overloaded: HttpMapping(503, "OVERLOADED", headers=(("Retry-After", "1"),)),
    # Its code says which check refused the event.
    Rejection: HttpMapping(422, "EVENT_REJECTED"),
    QuotaExceeded: HttpMapping(429, "QUOTA_EXCEEDED", headers_of=_quota_headers),
    RateLimited: HttpMapping(429, "RATE_LIMITED", headers_of=_rate_limit_headers),
    ProfileCheckDisabled: HttpMapping(422, "PROFILE_CHECK_DISABLED"),
    ProfileCheckFailed: HttpMapping(422, "PROFILE_CHECK_FAILED"),
    ProfileCheckUnavailable: HttpMapping(503, "PROFILE_CHECK_UNAVAILABLE", headers=(("Retry-After", "5"),)),
    DateRangeReversed: HttpMapping(400, "INVALID_DATE_RANGE"),
    DateRangeTooLong: HttpMapping(400, "DATE_RANGE_TOO_LONG"),
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def invalid_body(exc: ValidationError) -> ApiError:
    return ApiError(422, "VALIDATION_ERROR", "the request body is not valid", validation_details(exc))


def mapping_of(exc: Exception) -> HttpMapping | None:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            return DOMAIN_ERRORS[cls]
    return None


def domain_error_response(exc: Exception) -> JSONResponse:
    mapping = mapping_of(exc)
    if mapping is None:
        raise TypeError(f"{type(exc).__name__} has no HTTP mapping") from exc
    # An exception may carry its own code and details (a rejection's reason, a quota's per-label standing).
    code = getattr(exc, "code", None) or mapping.code
    status = getattr(exc, "status", None) or mapping.status
    headers = {**dict(mapping.headers), **(mapping.headers_of(exc) if mapping.headers_of else {})}
    message = mapping.message or str(exc)
    return JSONResponse(error_body(code, message, getattr(exc, "details", None)), status, headers=headers)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    return domain_error_response(exc)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers)


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 400: "BAD_REQUEST"}


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Bad input never lands here (it is ApiError or a mapped domain error); this is a fault of ours or a dependency's.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("INTERNAL_ERROR", "internal error"), 500)


def exception_handlers() -> dict[Any, Any]:
    handlers: dict[Any, Any] = {cls: handle_domain_error for cls in DOMAIN_ERRORS}
    handlers.update({ApiError: handle_api_error, HTTPException: handle_http_exception, Exception: handle_unexpected})
    return handlers
