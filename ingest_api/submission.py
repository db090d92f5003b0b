"""What a client posts as usage, and the checks that need its org and app: label, Region, tier, model, day window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeGuard

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from catalog.model import (
    App,
    CallingRegionRequired,
    Org,
    ServiceTier,
    TierNotPriced,
    UnknownCallingRegion,
    UnknownModelLabel,
    resolve_label,
)
from catalog.profiles import RegionName
from catalog.token_caps import TokensOverCap, check_caps
from catalog.token_counts import TOKEN_FIELDS, TokenCounts
from ingest_api.bedrock_usage import ConverseUsage, service_tier_name
from workers.message import CallStatus, UsageEvent

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
    """One usage event as a client posts it: the TokenCounts fields (each optional, 0 if absent) plus these.

    The earlier service's payload is accepted as it is (bedrock_model_id, calling_region, status), and so is a
    Bedrock Converse response's `usage` block with its `serviceTier`, copied verbatim.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: RequestId
    model_label: str = Field(min_length=1, max_length=64)
    timestamp: Annotated[AwareDatetime, AfterValidator(_representable_in_utc)] = Field(
        description="when the model call happened, ISO 8601 with a UTC offset"
    )
    bedrock_model_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="the model (or inference profile) called; must be the label's, so no client picks another price",
    )
    calling_region: RegionName | None = Field(default=None, description="the Region that served the call")
    status: CallStatus = "OK"
    service_tier: Annotated[ServiceTier, BeforeValidator(service_tier_name)] = Field(
        default="standard",
        validation_alias=AliasChoices("service_tier", "serviceTier"),
        description='standard (Bedrock\'s "default"), priority or flex; Bedrock\'s {"type": ...} is taken too',
    )
    batch: bool = Field(default=False, strict=True, description="a batch inference (CreateModelInvocationJob) call")
    usage: ConverseUsage | None = Field(
        default=None, description="a Converse TokenUsage block, verbatim, instead of the *_tokens fields"
    )

    @model_validator(mode="after")
    def _counts_from_usage(self) -> UsageSubmission:
        if self.usage is None:
            return self
        given = sorted(set(TOKEN_FIELDS) & self.model_fields_set)
        if given:
            raise ValueError(f"give token counts as a usage block or as fields, not both (also given: {given})")
        return self.model_copy(update=self.usage.token_counts())


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Items are validated one by one so that one bad item rejects only itself (207). The earlier service called
    # them `requests`.
    items: list[dict[str, object]] = Field(
        min_length=1, max_length=MAX_BATCH_ITEMS, validation_alias=AliasChoices("items", "requests")
    )


class Rejection(ValueError):
    """An event refused for what it says, not for how it is written."""

    def __init__(self, code: str, message: str, status: int = 422, details: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details


def check_against(
    submission: UsageSubmission, org: Org, app: App, now: datetime, clock_skew_s: int, late_arrival_grace_s: int
) -> None:
    try:
        resolved = resolve_label(org, app, submission.model_label, submission.calling_region)
        resolved.pricing.rate_card(submission.service_tier, submission.batch)
    except (UnknownModelLabel, CallingRegionRequired, UnknownCallingRegion, TierNotPriced) as exc:
        raise Rejection(exc.code, str(exc)) from exc
    try:
        check_caps(TokenCounts.of(submission), org.settings.max_tokens_per_event)
    except TokensOverCap as exc:
        raise Rejection(exc.code, str(exc), details=exc.details) from exc
    claimed = submission.bedrock_model_id
    if claimed is not None and claimed not in (resolved.bedrock_model_id, resolved.inference_profile_id):
        raise Rejection(
            "MODEL_MISMATCH",
            f"{submission.model_label!r} is {resolved.bedrock_model_id}"
            + (f" in {resolved.calling_region}" if resolved.inference_profile_id else "")
            + f", not {claimed}",
            status=400,
        )
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
        calling_region=submission.calling_region,
        service_tier=submission.service_tier,
        batch=submission.batch,
        status=submission.status,
        **TokenCounts.of(submission).counts(),
    )
