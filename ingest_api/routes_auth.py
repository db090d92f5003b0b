"""OAuth2 client credentials: /auth/token, /auth/refresh, /auth/revoke."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from catalog.credentials import Principal
from ingest_api.auth import client_address, credential_attempt, require_live_session
from ingest_api.context import services
from ingest_api.errors import ApiError
from ingest_api.rate_limits import Policy
from ingest_api.requests import parse_model, read_json
from ingest_api.tokens import InvalidToken, RefreshTokenReused, TokenExpired, TokenPair, TokenRevoked

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    grant_type: str = "client_credentials"
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: str = Field(min_length=1, max_length=200)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    refresh_token: str = Field(min_length=1, max_length=4096)


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token: str = Field(min_length=1, max_length=4096)
    token_type_hint: str | None = None


async def _form_or_json(request: Request) -> dict[str, Any]:
    """RFC 6749 clients send a form; JSON is accepted too. HTTP Basic carries the client credentials if present."""
    content_type = request.headers.get("content-type", "")
    data: dict[str, Any]
    if content_type.startswith("application/x-www-form-urlencoded"):
        body = await request.body()  # capped while it streams (body_limit.py)
        try:
            parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise ApiError(400, "INVALID_FORM", "the form body is not valid UTF-8") from exc
        data = {k: v[0] for k, v in parsed.items()}
    elif request.headers.get("content-length", "0") == "0" and "authorization" in request.headers:
        data = {}
    else:
        raw = await read_json(request)
        if not isinstance(raw, dict):
            raise ApiError(422, "VALIDATION_ERROR", "the request body must be a JSON object")
        data = raw
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(basic[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ApiError(400, "INVALID_AUTHORIZATION", "malformed Basic authorization header") from exc
        data.setdefault("client_id", client_id)
        data.setdefault("client_secret", secret)
    return data


def _token_response(pair: TokenPair, principal: Principal) -> JSONResponse:
    return JSONResponse(
        {
            "access_token": pair.access_token,
            "token_type": "Bearer",
            "expires_in": pair.access_expires_in_s,
            "refresh_token": pair.refresh_token,
            "refresh_expires_in": pair.refresh_expires_in_s,
            "client_id": principal.client_id,
            "org_id": principal.org_id,
            "app_id": principal.app_id,
        },
        headers=_NO_STORE,
    )


def _client_budget(principal: Principal | None) -> tuple[tuple[Policy, str], ...]:
    return () if principal is None else ((Policy.AUTH_CLIENT, principal.client_id),)


async def token(request: Request) -> JSONResponse:
    svc = services(request)
    # Per address before the body is read; per client id once it is known. Every refusal below costs more.
    async with credential_attempt(svc, (Policy.AUTH_ADDRESS, client_address(request))):
        body = parse_model(TokenRequest, await _form_or_json(request))
        if body.grant_type != "client_credentials":
            raise ApiError(400, "UNSUPPORTED_GRANT_TYPE", "grant_type must be client_credentials")
        principal = Principal.parse(body.client_id)
        async with credential_attempt(svc, *_client_budget(principal)):
            grant = None if principal is None else await svc.catalog.authenticate(principal, body.client_secret)
            # One answer for an unknown client and a wrong secret: client ids are not to be probed.
            if principal is None or grant is None:
                raise ApiError(401, "INVALID_CLIENT", "unknown client_id or wrong client_secret")
    return _token_response(svc.issuer.issue(principal, grant), principal)


async def refresh(request: Request) -> JSONResponse:
    svc = services(request)
    async with credential_attempt(svc, (Policy.AUTH_ADDRESS, client_address(request))):
        body = parse_model(RefreshRequest, await _form_or_json(request))
        # The same codes as for access tokens (TOKEN_EXPIRED tells the client to authenticate afresh).
        claims = svc.issuer.decode(body.refresh_token, expected="refresh")
        async with credential_attempt(svc, *_client_budget(claims.principal)):
            await require_live_session(svc, claims)
            if await svc.revocations.family_revoked(claims):
                raise TokenRevoked("this refresh token's session has been revoked")
            # Refresh tokens rotate: the old one is spent here. A second use means two holders, one of them a
            # thief, and nobody can tell which: the whole family goes.
            if not await svc.revocations.spend(claims):
                await svc.revocations.revoke_family(claims)
                raise RefreshTokenReused(
                    "this refresh token was already used or revoked; its whole session is now revoked"
                )
    return _token_response(svc.issuer.renew(claims), claims.principal)


async def revoke(request: Request) -> JSONResponse:
    svc = services(request)
    body = parse_model(RevokeRequest, await _form_or_json(request))
    try:
        claims = svc.issuer.decode(body.token, expected=None)
    except TokenExpired:
        # RFC 7009: revoking a token that is already dead succeeds.
        return JSONResponse({"revoked": True}, headers=_NO_STORE)
    except InvalidToken as exc:
        # Here the token is the request's subject, not its credential: a bad one is bad input (400), not a 401.
        raise ApiError(400, "INVALID_TOKEN", "not a token issued by this service") from exc
    await svc.revocations.revoke(claims)
    if claims.token_type == "refresh":  # noqa: S105 - a token type, not a password
        # RFC 7009 2.1: revoking a refresh token ends its grant, so the access tokens of its session go too.
        await svc.revocations.revoke_family(claims)
    return JSONResponse({"revoked": True, "token_type": claims.token_type}, headers=_NO_STORE)


routes = [
    Route("/auth/token", token, methods=["POST"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/revoke", revoke, methods=["POST"]),
]
