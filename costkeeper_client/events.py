"""A usage event as the client keeps it, and the report of one that could not be delivered."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from costkeeper_client.errors import InvalidUsage

# The API's limits (ingest_api/submission.py, workers/message.py): checked here so a bad event fails in the caller's
# hands, where it can be fixed, instead of as a 422 reported later from the background.
MAX_TOKENS = 10**9
MAX_MODEL_LABEL_CHARS = 64
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _new_request_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


def _empty_ttls() -> Mapping[str, int]:
    return MappingProxyType({})


def _check_tokens(name: str, value: object) -> None:
    # bool is an int to Python but not to the API (strict integers).
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidUsage(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TOKENS:
        raise InvalidUsage(f"{name} must be between 0 and {MAX_TOKENS}, got {value}")


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One model call's usage. request_id is made once per event, so every retry of it carries the same id.

    cache_write_tokens is the total written to the cache, whatever the TTL; cache_write_tokens_by_ttl ("5m", "1h")
    says how much of it had which TTL, since the two are priced apart. service_tier is the tier that served the call
    ("default", "priority", "flex"; None: Standard).
    """

    model_label: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    timestamp: datetime = field(default_factory=_now)
    request_id: str = field(default_factory=_new_request_id)
    cache_write_tokens_by_ttl: Mapping[str, int] = field(default_factory=_empty_ttls)
    service_tier: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_label, str) or not 1 <= len(self.model_label) <= MAX_MODEL_LABEL_CHARS:
            raise InvalidUsage(f"model_label must be a string of 1 to {MAX_MODEL_LABEL_CHARS} characters")
        for name in TOKEN_FIELDS:
            _check_tokens(name, getattr(self, name))
        if not isinstance(self.timestamp, datetime) or self.timestamp.utcoffset() is None:
            raise InvalidUsage("timestamp must be a timezone-aware datetime (the API needs its UTC offset)")
        try:
            request_id = str(uuid.UUID(str(self.request_id)))
        except ValueError as exc:
            raise InvalidUsage(f"request_id must be a UUID, got {self.request_id!r}") from exc
        # The API keys usage by the lowercase form; normalising here makes failures and results match by equality.
        object.__setattr__(self, "request_id", request_id)
        by_ttl = dict(self.cache_write_tokens_by_ttl)
        for ttl, tokens in by_ttl.items():
            _check_tokens(f"cache_write_tokens_by_ttl[{ttl!r}]", tokens)
        object.__setattr__(self, "cache_write_tokens_by_ttl", MappingProxyType(by_ttl))
        if sum(by_ttl.values()) > self.cache_write_tokens:
            raise InvalidUsage("cache_write_tokens_by_ttl adds up to more than cache_write_tokens")

    def api_item(self) -> dict[str, Any]:
        """The event as the API takes it: cache writes split into 5-minute (cache_write_tokens) and 1-hour ones.

        A write whose TTL Bedrock did not state is a 5-minute write, as the API reads it too.
        """
        one_hour = self.cache_write_tokens_by_ttl.get("1h", 0)
        item: dict[str, Any] = {
            "request_id": self.request_id,
            "model_label": self.model_label,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens - one_hour,
            "timestamp": self.timestamp.isoformat(),
        }
        if one_hour:
            item["cache_write_1h_tokens"] = one_hour
        if self.service_tier is not None:
            item["service_tier"] = self.service_tier
        return item


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """An event the client gave up on, and why.

    code is the API's error code when the API refused the event (e.g. UNKNOWN_MODEL_LABEL from a 422 item, FORBIDDEN
    for the whole batch), or one of the client's own: RETRIES_EXHAUSTED (the API stayed unreachable or kept answering
    429/5xx), NOT_SENT_BEFORE_CLOSE (close() or interpreter exit ran out of time first).
    """

    event: UsageEvent
    code: str
    message: str
    status: int | None = None
    details: Any = None
    attempts: int = 0


RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
NOT_SENT_BEFORE_CLOSE = "NOT_SENT_BEFORE_CLOSE"
