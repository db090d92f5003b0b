"""The queue message schema. The worker consumes it, so the worker owns it; the API imports it to enqueue.

One SQS message carries many usage events (up to MAX_EVENTS_PER_MESSAGE and MAX_MESSAGE_BYTES): SQS is paid and
rate-limited per request, so packing events is what keeps the queue cheap at high volume.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from catalog.model import OrgId, ServiceTier, Slug
from catalog.profiles import RegionName
from catalog.token_counts import TokenCounts

CallStatus = Literal["OK", "ERROR"]

# The version this API writes, and the ones this worker reads: after a change, the previous version stays readable
# for as long as messages of it can be queued (and redriven from the dead-letter queue). Deploy readers first.
# Version 2 added calling_region, service_tier, batch and status (and the 1-hour cache write category); a version 1
# message reads as a Standard-tier, on-demand, successful call with no Region.
SCHEMA_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
# SQS accepts 256 KiB everywhere (1 MiB in newer regions); stay under the older limit with headroom for attributes.
MAX_MESSAGE_BYTES = 240 * 1024
MAX_EVENTS_PER_MESSAGE = 500


class UsageEvent(TokenCounts):
    """One priced-to-be model call; its token counts are the TokenCounts fields (a missing category reads as 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    org_id: OrgId
    app_id: Slug
    request_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    model_label: Slug
    timestamp: AwareDatetime
    # When the API accepted the event, for end-to-end latency figures.
    accepted_at: datetime
    # The Region that served the call: what an inference profile label is priced by.
    calling_region: RegionName | None = None
    service_tier: ServiceTier = "standard"
    batch: bool = Field(default=False, strict=True)
    # ERROR calls are stored and counted (as errors too), priced by the tokens they report.
    status: CallStatus = "OK"


class UsageMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(default=SCHEMA_VERSION, strict=True)
    events: list[UsageEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_MESSAGE)

    @field_validator("v")
    @classmethod
    def _readable(cls, v: int) -> int:
        if v not in READABLE_VERSIONS:
            raise ValueError(f"message schema version {v} is not one of {sorted(READABLE_VERSIONS)}")
        return v


class PoisonMessage(ValueError):
    """A body that no retry can make valid."""


def encode(events: list[UsageEvent]) -> str:
    return UsageMessage(v=SCHEMA_VERSION, events=events).model_dump_json()


def encoded_size(event: UsageEvent) -> int:
    # A comma joins events inside the list.
    return len(event.model_dump_json()) + 1


def decode(body: str) -> UsageMessage:
    try:
        return UsageMessage.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(str(exc)[:1000]) from exc
