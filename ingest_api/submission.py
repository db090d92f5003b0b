"""What a client posts as usage, and the checks that need the org: model label and the org-local day window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeGuard

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from catalog.model import Org
from catalog.token_counts import TokenCounts
from workers.message import UsageEvent

MAX_BATCH_ITEMS = 100
REQUEST_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def canonical_request_id(value: str) -> str:
    """One spelling of a request id from here on: keys, duplicate checks and answers all use the lower-case form."""
    return value.lower()


RequestId = Annotated[
    str,
    Field(pattern=REQUEST_ID_PATTERN, description="UUID the client generates once per model call; retries reuse it"),
    AfterValidator(canonical_request_id),
]


def is_request_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def _representable_in_utc(value: datetime) -> datetime:
    # An offset can carry a timestamp near year 1 or 9999 out of datetime's range once in UTC, where it is compared
    # with the server clock: that is bad input (422), not a server fault (OverflowError, 500).
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp is out of range once converted to UTC") from exc
    return value


class UsageSubmission(TokenCounts):
    """One usage event as a client posts it: the TokenCounts fields (each optional, 0 if absent) plus these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: RequestId
    model_label: str = Field(min_length=1, max_length=64)
    timestamp: Annotated[AwareDatetime, AfterValidator(_representable_in_utc)] = Field(
        description="when the model call happened, ISO 8601 with a UTC offset"
    )


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Items are validated one by one so that one bad item rejects only itself (207).
    items: list[dict[str, object]] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class Rejection(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_against_org(
    submission: UsageSubmission, org: Org, now: datetime, clock_skew_s: int, late_arrival_grace_s: int
) -> None:
    if submission.model_label not in org.settings.models:
        known = ", ".join(org.settings.model_ordering)
        raise Rejection("UNKNOWN_MODEL_LABEL", f"model_label {submission.model_label!r} is not one of: {known}")
    # In UTC: arithmetic and comparisons between datetimes sharing one tzinfo use wall-clock time, which is wrong
    # across a DST change when a caller passes times in the org's own zone.
    now = now.astimezone(UTC)
    timestamp = submission.timestamp.astimezone(UTC)
    if timestamp > now + timedelta(seconds=clock_skew_s):
        raise Rejection("TIMESTAMP_IN_FUTURE", "timestamp is in the future")
    today = org.local_day(now)
    day_start = org.day_start(today)
    # Usage of the previous local day is accepted for a grace period after midnight: calls in flight at midnight.
    if (now - day_start).total_seconds() < late_arrival_grace_s:
        window_start = org.day_start(today - timedelta(days=1))
    else:
        window_start = day_start
    if timestamp < window_start:
        raise Rejection(
            "TIMESTAMP_OUTSIDE_DAY_WINDOW",
            f"timestamp is before the current org-local day ({today.isoformat()} in "
            f"{org.settings.timezone}, from {window_start.isoformat()})",
        )


def to_event(submission: UsageSubmission, org_id: str, app_id: str, accepted_at: datetime) -> UsageEvent:
    return UsageEvent(
        org_id=org_id,
        app_id=app_id,
        request_id=submission.request_id,
        model_label=submission.model_label,
        timestamp=submission.timestamp,
        accepted_at=accepted_at,
        **TokenCounts.of(submission).counts(),
    )
