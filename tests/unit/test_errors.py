"""ingest_api/errors.py: every domain error becomes its HTTP answer in one place."""

from __future__ import annotations

import json
from datetime import date

import pytest

from catalog.model import UnknownLabels
from catalog.store import AppNotFound, ConcurrentUpdate, LabelInUse, OrgNotFound
from ingest_api.errors import DOMAIN_ERRORS, domain_error_response, exception_handlers
from ingest_api.publisher import QueueUnavailable
from ingest_api.spend import DateRangeReversed, DateRangeTooLong, QuotaExceeded
from ingest_api.submission import Rejection
from ingest_api.tokens import InvalidToken, TokenExpired, TokenRevoked
from tests.unit.factories import ORG_ID


def answer(exc: Exception) -> tuple[int, dict[str, object], dict[str, str]]:
    response = domain_error_response(exc)
    body = json.loads(bytes(response.body))
    return response.status_code, body["error"], dict(response.headers)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (OrgNotFound(ORG_ID), 404, "ORG_NOT_FOUND"),
        (AppNotFound(ORG_ID, "chatbot"), 404, "APP_NOT_FOUND"),
        (ConcurrentUpdate("busy"), 409, "CONCURRENT_UPDATE"),
        (LabelInUse("app x names premium"), 409, "LABEL_IN_USE"),
        (UnknownLabels("gpt-9"), 422, "UNKNOWN_MODEL_LABEL"),
        (InvalidToken("token invalid"), 401, "INVALID_TOKEN"),
        # A subclass is mapped as itself, not as its base.
        (TokenExpired("token expired"), 401, "TOKEN_EXPIRED"),
        (TokenRevoked("revoked"), 401, "TOKEN_REVOKED"),
        (QueueUnavailable("timeout"), 503, "QUEUE_UNAVAILABLE"),
        (Rejection("TIMESTAMP_IN_FUTURE", "timestamp is in the future"), 422, "TIMESTAMP_IN_FUTURE"),
        (DateRangeReversed("to is before from"), 400, "INVALID_DATE_RANGE"),
        (DateRangeTooLong("93 days"), 400, "DATE_RANGE_TOO_LONG"),
    ],
)
def test_each_domain_error_has_its_status_and_code(exc: Exception, status: int, code: str) -> None:
    got_status, error, _ = answer(exc)
    assert (got_status, error["code"]) == (status, code)
    assert isinstance(error["message"], str) and error["message"]


def test_token_errors_carry_the_bearer_challenge() -> None:
    for exc in (InvalidToken("x"), TokenExpired("x"), TokenRevoked("x")):
        assert answer(exc)[2]["www-authenticate"].startswith("Bearer")


def test_queue_unavailable_tells_the_client_to_retry_with_the_same_ids_not_the_internal_reason() -> None:
    _, error, headers = answer(QueueUnavailable("SendMessageBatch timed out after 5s on host 10.0.0.7"))
    assert "10.0.0.7" not in str(error["message"]) and "request_id" in str(error["message"])
    assert headers["retry-after"] == "1"


def test_quota_exceeded_says_until_when_and_how_long_to_cache() -> None:
    labels: list[dict[str, object]] = [{"model_label": "premium", "available": False}]
    status, error, headers = answer(QuotaExceeded(date(2024, 6, 15), labels, retry_after_s=3600))
    assert status == 429 and error["details"] == {"date": "2024-06-15", "labels": labels}
    assert headers["retry-after"] == "3600" and headers["cache-control"] == "private, max-age=60"


def test_every_mapped_error_is_installed_as_a_handler() -> None:
    assert set(DOMAIN_ERRORS) <= set(exception_handlers())


def test_an_unmapped_exception_is_not_turned_into_a_client_error() -> None:
    with pytest.raises(TypeError, match="no HTTP mapping"):
        domain_error_response(KeyError("bug"))
