"""The queue message schema. The worker consumes it, so the worker owns it; the API imports it to enqueue.

One SQS message carries many usage events (up to MAX_EVENTS_PER_MESSAGE and MAX_MESSAGE_BYTES): SQS is paid and
rate-limited per request, so packing events is what keeps the queue cheap at high volume.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from catalog.model import OrgId, Slug

SCHEMA_VERSION = 1
# SQS accepts 256 KiB everywhere (1 MiB in newer regions); stay under the older limit with headroom for attributes.
MAX_MESSAGE_BYTES = 240 * 1024
MAX_EVENTS_PER_MESSAGE = 500

TokenCount = Annotated[int, Field(ge=0, le=10**9, strict=True)]


class UsageEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    org_id: OrgId
    app_id: Slug
    request_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    model_label: Slug
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    timestamp: AwareDatetime
    # When the API accepted the event, for end-to-end latency figures.
    accepted_at: datetime


class UsageMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    events: list[UsageEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_MESSAGE)


class PoisonMessage(ValueError):
    """A body that no retry can make valid."""


def encode(events: list[UsageEvent]) -> str:
    return UsageMessage(events=events).model_dump_json()


def encoded_size(event: UsageEvent) -> int:
    # A comma joins events inside the list.
    return len(event.model_dump_json()) + 1


def decode(body: str) -> UsageMessage:
    try:
        return UsageMessage.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(str(exc)[:1000]) from exc
