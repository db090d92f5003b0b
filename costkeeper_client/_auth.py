"""The access token: fetched with the client credentials, refreshed before it expires, fetched afresh when the
refresh token is refused. One fetch or refresh at a time, so concurrent batches never spend a refresh token twice
(the API rotates refresh tokens and treats a second use as reuse)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from costkeeper_client._http import RETRYABLE_STATUSES, api_error, authentication_failed
from costkeeper_client.errors import ApiError

TOKEN_PATH = "/auth/token"  # noqa: S105 - a URL path, not a secret
REFRESH_PATH = "/auth/refresh"


@dataclass(frozen=True)
class _Tokens:
    access_token: str
    refresh_at: float  # clock time from which the access token is renewed before use
    refresh_token: str | None
    refresh_usable_until: float


class TokenManager:
    def __init__(self, client_id: str, client_secret: str, clock: Callable[[], float], refresh_margin_s: float) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._refresh_margin_s = refresh_margin_s
        self._tokens: _Tokens | None = None
        self._lock: asyncio.Lock | None = None
        # Requests made, by kind: what tests and stats look at.
        self.token_requests = 0
        self.refresh_requests = 0

    def bind_to_running_loop(self) -> None:
        """A fresh lock for the loop now running (a lock stays tied to the loop it first waited in)."""
        self._lock = asyncio.Lock()

    def _usable(self, now: float) -> str | None:
        tokens = self._tokens
        return tokens.access_token if tokens is not None and now < tokens.refresh_at else None

    async def access_token(self, http: httpx.AsyncClient) -> str:
        token = self._usable(self._clock())
        if token is not None:
            return token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._clock()
            token = self._usable(now)
            if token is not None:
                return token  # another task renewed it while this one waited
            tokens = self._tokens
            renewed: _Tokens | None = None
            if tokens is not None and tokens.refresh_token is not None and now < tokens.refresh_usable_until:
                renewed = await self._refresh(http, tokens.refresh_token)
            if renewed is None:
                renewed = await self._fetch(http)
            self._tokens = renewed
            return renewed.access_token

    def invalidate(self, access_token: str) -> None:
        """The API refused this access token (expired early, revoked): renew it before the next request."""
        tokens = self._tokens
        if tokens is not None and tokens.access_token == access_token:
            self._tokens = _Tokens("", float("-inf"), tokens.refresh_token, tokens.refresh_usable_until)

    async def _fetch(self, http: httpx.AsyncClient) -> _Tokens:
        self.token_requests += 1
        response = await http.post(
            TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        if response.status_code == 200:
            return self._parse(response)
        error = api_error(response)
        if response.status_code in RETRYABLE_STATUSES:
            raise error
        raise authentication_failed(error)

    async def _refresh(self, http: httpx.AsyncClient, refresh_token: str) -> _Tokens | None:
        """New tokens, or None when the refresh token is refused and the credentials must be used instead."""
        self.refresh_requests += 1
        response = await http.post(REFRESH_PATH, data={"refresh_token": refresh_token})
        if response.status_code == 200:
            return self._parse(response)
        if response.status_code in RETRYABLE_STATUSES:
            raise api_error(response)
        # 401 (expired, revoked, already used) and any other refusal: the credentials still work.
        return None

    def _parse(self, response: httpx.Response) -> _Tokens:
        try:
            body: Any = response.json()
            access_token = body["access_token"]
            expires_in_s = float(body["expires_in"])
            refresh_token = body.get("refresh_token")
            refresh_expires_in_s = float(body.get("refresh_expires_in") or 0)
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(response.status_code, "MALFORMED_TOKEN_RESPONSE", f"unreadable token answer: {exc}") from exc
        if not isinstance(access_token, str) or not access_token:
            raise ApiError(response.status_code, "MALFORMED_TOKEN_RESPONSE", "no access_token in the token answer")
        now = self._clock()
        # Renew early enough that a request never leaves with a token about to expire, but not so early that a
        # short-lived token is renewed on every use.
        margin_s = min(self._refresh_margin_s, expires_in_s / 10)
        return _Tokens(
            access_token=access_token,
            refresh_at=now + expires_in_s - margin_s,
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
            refresh_usable_until=now + refresh_expires_in_s - margin_s,
        )
