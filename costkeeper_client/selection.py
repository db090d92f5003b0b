"""The answer of GET .../model-selection, and keeping it for as long as its Cache-Control max-age allows."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from costkeeper_client.errors import ApiError, QuotaExceeded


@dataclass(frozen=True, slots=True)
class LabelStatus:
    model_label: str
    available: bool
    quota_used_percent: float | None


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The model the app may use now. mode is NORMAL or TIGHT (at or above the tight threshold of a cap)."""

    model_label: str
    bedrock_model_id: str
    mode: str
    fallback: bool
    position: int
    ordering: tuple[str, ...]
    date: str
    labels: tuple[LabelStatus, ...]
    max_age_s: float
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, body: Any, max_age_s: float, status: int = 200) -> ModelChoice:
        try:
            return cls(
                model_label=str(body["model_label"]),
                bedrock_model_id=str(body["bedrock_model_id"]),
                mode=str(body["mode"]),
                fallback=bool(body["fallback"]),
                position=int(body["position"]),
                ordering=tuple(str(label) for label in body["ordering"]),
                date=str(body["date"]),
                labels=tuple(
                    LabelStatus(str(s["model_label"]), bool(s["available"]), s.get("quota_used_percent"))
                    for s in body.get("labels", [])
                ),
                max_age_s=max_age_s,
                raw=body,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(status, "MALFORMED_SELECTION", f"unreadable model-selection answer: {exc}") from exc


class SelectionCache:
    """One answer (a choice, or QUOTA_EXCEEDED) and the clock time until which it may be reused. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answer: ModelChoice | QuotaExceeded | None = None
        self._stored_at = 0.0
        self._expires_at = float("-inf")

    def store(self, answer: ModelChoice | QuotaExceeded, now: float, max_age_s: float) -> None:
        with self._lock:
            if max_age_s <= 0:
                self._answer = None
                return
            self._answer, self._stored_at, self._expires_at = answer, now, now + max_age_s

    def lookup(self, now: float) -> ModelChoice | None:
        """The cached choice; raises the cached QuotaExceeded anew; None when nothing fresh is kept."""
        with self._lock:
            answer, stored_at, fresh = self._answer, self._stored_at, now < self._expires_at
        if answer is None or not fresh:
            return None
        if isinstance(answer, QuotaExceeded):
            # A new exception each time (a raised one collects tracebacks), its Retry-After aged by the wait so far.
            retry_after_s = None if answer.retry_after_s is None else max(0.0, answer.retry_after_s - (now - stored_at))
            raise QuotaExceeded(answer.status, answer.code, answer.message, answer.details, retry_after_s)
        return answer

    def clear(self) -> None:
        with self._lock:
            self._answer = None
