"""Who is calling, resolved once per request here, and may they touch this org or app.

Admin endpoints take the admin API key (X-API-Key). Client endpoints take a bearer access token: an org token may act
on its org and every app of it, an app token only on its own app, and neither on anything of another org. Routes
declare which they are with `admin_endpoint` or `client_endpoint`, or `viewer_endpoint` for a page that shows each
caller their own (the dashboard); nothing else reads credentials, so anything that must happen per caller has this one
home: the rate limits (ingest_api/rate_limits.py) are charged here, including `credential_attempt` for the routes
that take a credential in their body (/auth/token, /auth/refresh, claims).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from catalog.credentials import Principal
from ingest_api.context import Services, services
from ingest_api.errors import BEARER_CHALLENGE, ApiError
from ingest_api.rate_limits import Policy
from ingest_api.requests import path_app_id, path_org_id
from ingest_api.tokens import SessionEnded, TokenClaims, TokenRevoked

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class ClientCall:
    """A client request that passed authentication and authorisation for the org (and app) in its path."""

    svc: Services
    claims: TokenClaims
    org_id: str
    app_id: str | None  # None: an org-wide route

    @property
    def principal(self) -> Principal:
        return self.claims.principal


def require_admin(request: Request, svc: Services) -> None:
    expected = svc.settings.admin_api_key
    if expected is None:
        raise ApiError(503, "ADMIN_API_DISABLED", "provisioning is disabled: CK_ADMIN_API_KEY is not set")
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "INVALID_API_KEY", "a valid X-API-Key header is required")


def client_address(request: Request) -> str:
    """The caller's address; behind the load balancer, the one its X-Forwarded-For names (CK_TRUSTED_PROXIES)."""
    return request.client.host if request.client else "unknown"


@asynccontextmanager
async def credential_attempt(svc: Services, *budgets: tuple[Policy, str], success_cost: int = 1) -> AsyncIterator[None]:
    """An attempt with a credential: refused up front while a budget is spent, then charged by its outcome (a
    failure, whatever raised, costs more)."""
    for policy, key in budgets:
        await svc.limits.admit(policy, key)
    try:
        yield
    except Exception:
        for policy, key in budgets:
            await svc.limits.charge(policy, key, failed=True, success_cost=success_cost)
        raise
    for policy, key in budgets:
        await svc.limits.charge(policy, key, failed=False, success_cost=success_cost)


def access_claims(request: Request, svc: Services) -> TokenClaims:
    """The bearer access token's claims, checked locally (signature, audience, expiry, shape)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "UNAUTHORIZED", "a bearer access token is required", headers=BEARER_CHALLENGE)
    return svc.issuer.decode(token.strip(), expected="access")


async def require_live_token(svc: Services, claims: TokenClaims) -> None:
    """Raises for a token whose session ended or that was revoked."""
    await require_live_session(svc, claims)
    if await svc.revocations.is_revoked(claims):
        raise TokenRevoked("this token has been revoked")


async def bearer_claims(request: Request, svc: Services, limit: Policy = Policy.READS) -> TokenClaims:
    """The bearer access token's claims, counted against its client's `limit`; raises for a missing, invalid,
    expired or revoked token, one whose session ended, or a client past its limit."""
    claims = access_claims(request, svc)
    # Before any table is read for it: a flood on one token costs the tables nothing past the limit.
    await svc.limits.hit(limit, claims.principal.client_id, org_id=claims.principal.org_id)
    await require_live_token(svc, claims)
    return claims


async def require_live_session(svc: Services, claims: TokenClaims) -> None:
    """Raises unless the client still exists and the secret and epoch that began the token's session still stand."""
    state = await svc.catalog.session_state(claims.principal)
    if state is None:
        raise SessionEnded("the client no longer exists")
    if not state.admits(claims.session.grant, int(time.time())):
        raise SessionEnded("this session has ended: its secret was rotated out or its sessions were revoked")


def authorize(principal: Principal, org_id: str, app_id: str | None) -> None:
    """app_id None: the call concerns the whole org, which only an org principal may act on."""
    if principal.org_id != org_id:
        raise ApiError(403, "FORBIDDEN", "this token is not valid for that org")
    if principal.app_id is not None and principal.app_id != app_id:
        raise ApiError(403, "FORBIDDEN", "this token is not valid for that app")


def client_endpoint(
    scope: Literal["org", "app"], limit: Policy = Policy.READS
) -> Callable[[Callable[[Request, ClientCall], Awaitable[Response]]], Endpoint]:
    """A route for bearer tokens, on /orgs/{org_id} (scope org) or /orgs/{org_id}/apps/{app_id} (scope app), counted
    against the client's `limit` (usage submission or the rest)."""

    def decorate(handler: Callable[[Request, ClientCall], Awaitable[Response]]) -> Endpoint:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            svc = services(request)
            # Path ids first: a malformed id is a 400 whoever asks.
            org_id = path_org_id(request)
            app_id = path_app_id(request) if scope == "app" else None
            claims = await bearer_claims(request, svc, limit)
            authorize(claims.principal, org_id, app_id)
            return await handler(request, ClientCall(svc, claims, org_id, app_id))

        return endpoint

    return decorate


def ops_endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Endpoint:
    """An operator's read-out (deep health, metrics, status): open, or with CK_OPS_TOKEN set, for that bearer only."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        expected = services(request).settings.ops_token
        if expected is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
                raise ApiError(401, "INVALID_OPS_TOKEN", "this endpoint takes the operations token as a bearer token")
        return await handler(request)

    return endpoint


def admin_endpoint(handler: Callable[[Request, Services], Awaitable[Response]]) -> Endpoint:
    """A route for the admin API key."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        svc = services(request)
        # Only wrong keys count: an operator with the right one is never slowed down.
        async with credential_attempt(svc, (Policy.ADMIN_FAILURES, client_address(request)), success_cost=0):
            require_admin(request, svc)
        return await handler(request, svc)

    return endpoint


@dataclass(frozen=True)
class Viewer:
    """Whoever may look: the admin (principal None) or a token's own org or app. Nothing in the request names the
    tenant, so there is nothing to authorize beyond the credential itself."""

    svc: Services
    principal: Principal | None


def viewer_endpoint(handler: Callable[[Request, Viewer], Awaitable[Response]]) -> Endpoint:
    """A route for either credential: the admin API key when X-API-Key is sent, a bearer access token otherwise."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        svc = services(request)
        if "x-api-key" in request.headers:
            # As for every admin call: wrong keys are counted against the source address.
            async with credential_attempt(svc, (Policy.ADMIN_FAILURES, client_address(request)), success_cost=0):
                require_admin(request, svc)
            return await handler(request, Viewer(svc, None))
        claims = await bearer_claims(request, svc)
        return await handler(request, Viewer(svc, claims.principal))

    return endpoint
