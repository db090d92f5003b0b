"""Test doubles for the client's unit tests: the API behind an httpx.MockTransport, and a clock that tests move.

FakeApi answers like ingest_api (routes_auth, routes_usage, routes_reads): form posts to /auth/token and
/auth/refresh, 207 per-item results for /usage/batch with 422 for unknown labels and repeated ids, the error body
{"error": {"code", "message", "details"?}}. Faults are scripted per endpoint: each queued answer is used once, in
order, before the normal behaviour resumes. No sockets are opened.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from costkeeper_client import ClientOptions, RetryPolicy

ORG_ID = "550e8400-e29b-41d4-a716-446655440000"
APP_ID = "chatbot"
SECRET = "cks_test-secret"
BASE_URL = "http://costkeeper.test"
BATCH_PATH = f"/api/v1/orgs/{ORG_ID}/apps/{APP_ID}/usage/batch"
SELECTION_PATH = f"/api/v1/orgs/{ORG_ID}/apps/{APP_ID}/model-selection"

Answer = httpx.Response | Exception | Callable[[list[dict[str, Any]]], httpx.Response]


def error_response(status: int, code: str, message: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message or code}}, headers=headers)


@dataclass
class Post:
    token: str
    items: list[dict[str, Any]]

    @property
    def request_ids(self) -> list[str]:
        return [item["request_id"] for item in self.items]


@dataclass
class FakeApi:
    labels: set[str] = field(default_factory=lambda: {"premium", "standard", "economy"})
    expires_in_s: int = 3600
    refresh_expires_in_s: int = 2_592_000
    selection_body: dict[str, Any] = field(default_factory=lambda: selection_body())
    selection_cache_control: str | None = "private, max-age=300"

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.token_forms: list[dict[str, str]] = []
        self.refresh_forms: list[dict[str, str]] = []
        self.posts: list[Post] = []
        self.selection_gets = 0
        self.accepted: dict[str, dict[str, Any]] = {}
        self.accepted_times: Counter[str] = Counter()
        self.batch_faults: deque[Answer] = deque()
        self.token_faults: deque[Answer] = deque()
        self.refresh_faults: deque[Answer] = deque()
        self.selection_answers: deque[Answer] = deque()
        self.live_access: set[str] = set()
        self.live_refresh: set[str] = set()
        self._issued = 0
        # While cleared, batch posts wait: a server that does not answer yet (set by default).
        self.gate = threading.Event()
        self.gate.set()

    # -- the transport ---------------------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def options(self, **overrides: Any) -> ClientOptions:
        """Options for a client of this fake: no exit hook (tests close explicitly), quick retries."""
        settings: dict[str, Any] = {
            "transport": self.transport(),
            "flush_at_exit": False,
            "retry": RetryPolicy(initial_delay_s=0.001, max_delay_s=0.004, max_attempts=5, give_up_after_s=60),
        }
        settings.update(overrides)
        return ClientOptions(**settings)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/token":
            return self._token(_form(request))
        if path == "/auth/refresh":
            return self._refresh(_form(request))
        if path == BATCH_PATH and request.method == "POST":
            # The gate is opened from the test's thread, which an asyncio.Event cannot be set from.
            while not self.gate.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            return self._batch(request)
        if path == SELECTION_PATH and request.method == "GET":
            return self._selection(request)
        return error_response(404, "NOT_FOUND", f"no route {request.method} {path}")

    # -- endpoints -------------------------------------------------------------------------------------------------

    def _issue(self) -> httpx.Response:
        self._issued += 1
        access, refresh = f"access-{self._issued}", f"refresh-{self._issued}"
        self.live_access.add(access)
        self.live_refresh.add(refresh)
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in_s,
            "refresh_token": refresh,
            "refresh_expires_in": self.refresh_expires_in_s,
        }
        return httpx.Response(200, json=body, headers={"Cache-Control": "no-store"})

    def _token(self, form: dict[str, str]) -> httpx.Response:
        with self.lock:
            self.token_forms.append(form)
            fault = _next(self.token_faults, [])
            if fault is not None:
                return fault
            if form.get("grant_type") != "client_credentials":
                return error_response(400, "UNSUPPORTED_GRANT_TYPE")
            if form.get("client_id") != f"org-{ORG_ID}-app-{APP_ID}" or form.get("client_secret") != SECRET:
                return error_response(401, "INVALID_CLIENT", "unknown client_id or wrong client_secret")
            return self._issue()

    def _refresh(self, form: dict[str, str]) -> httpx.Response:
        with self.lock:
            self.refresh_forms.append(form)
            fault = _next(self.refresh_faults, [])
            if fault is not None:
                return fault
            token = form.get("refresh_token", "")
            if token not in self.live_refresh:
                return error_response(401, "TOKEN_REVOKED", "this refresh token has already been used")
            self.live_refresh.discard(token)  # refresh tokens rotate
            return self._issue()

    def _authorized(self, request: httpx.Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token if scheme == "Bearer" and token in self.live_access else None

    def _batch(self, request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        with self.lock:
            token = self._authorized(request)
            self.posts.append(Post(token or "", items))
            if token is None:
                return error_response(401, "TOKEN_EXPIRED", "token expired")
            fault = _next(self.batch_faults, items)
            if fault is not None:
                return fault
            return httpx.Response(207, json=self.process(items))

    def process(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """What routes_usage.submit_batch answers, with the worker's dedup applied to `accepted`."""
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            result: dict[str, Any] = {"index": index, "request_id": item["request_id"]}
            if set(item) - {"request_id", "model_label", "timestamp", "service_tier", *TOKEN_FIELDS}:
                result.update(status=422, error={"code": "VALIDATION_ERROR", "message": "extra fields"})
            elif item["model_label"] not in self.labels:
                error = {"code": "UNKNOWN_MODEL_LABEL", "message": f"model_label {item['model_label']!r} is unknown"}
                result.update(status=422, error=error)
            elif item["request_id"] in seen:
                result.update(status=422, error={"code": "DUPLICATE_IN_BATCH", "message": "repeated request_id"})
            else:
                seen.add(item["request_id"])
                self.accepted.setdefault(item["request_id"], item)
                self.accepted_times[item["request_id"]] += 1
                result["status"] = 202
            results.append(result)
        accepted = sum(1 for r in results if r["status"] == 202)
        return {"accepted": accepted, "rejected": len(results) - accepted, "results": results}

    def _selection(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.selection_gets += 1
            if self._authorized(request) is None:
                return error_response(401, "TOKEN_EXPIRED", "token expired")
            fault = _next(self.selection_answers, [])
            if fault is not None:
                return fault
            headers = {} if self.selection_cache_control is None else {"Cache-Control": self.selection_cache_control}
            return httpx.Response(200, json=self.selection_body, headers=headers)

    # -- what tests look at ----------------------------------------------------------------------------------------

    def posted_ids(self) -> list[str]:
        with self.lock:
            return [rid for post in self.posts for rid in post.request_ids]


TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")


def _form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def _next(queue: deque[Answer], items: list[dict[str, Any]]) -> httpx.Response | None:
    if not queue:
        return None
    answer = queue.popleft()
    if isinstance(answer, Exception):
        raise answer
    if isinstance(answer, httpx.Response):
        return answer
    return answer(items)


def selection_body(label: str = "premium", mode: str = "NORMAL") -> dict[str, Any]:
    """The shape routes_reads.model_selection answers with."""
    ordering = ["premium", "standard", "economy"]
    return {
        "org_id": ORG_ID,
        "app_id": APP_ID,
        "date": "2024-06-15",
        "model_label": label,
        "bedrock_model_id": {"premium": "anthropic.claude-sonnet", "standard": "anthropic.claude-haiku"}.get(
            label, "amazon.nova-micro"
        ),
        "mode": mode,
        "fallback": label != "premium",
        "position": ordering.index(label),
        "ordering": ordering,
        "tight_threshold_percent": 95.0,
        "labels": [{"model_label": lab, "available": True, "quota_used_percent": 12.5, "caps": []} for lab in ordering],
    }


class FakeTime:
    """A monotonic clock that moves only when the client sleeps: back-off and linger pass at once, and are recorded."""

    def __init__(self, start_s: float = 1_000.0) -> None:
        self.now_s = start_s
        self.sleeps_s: list[float] = []

    def clock(self) -> float:
        return self.now_s

    async def sleep(self, delay_s: float) -> None:
        self.sleeps_s.append(delay_s)
        self.now_s += delay_s
        await asyncio.sleep(0)

    def advance(self, delay_s: float) -> None:
        self.now_s += delay_s
