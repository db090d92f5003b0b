"""Who is calling, and may they touch this org or app.

Admin endpoints take the admin API key (X-API-Key). Client endpoints take a bearer access token: an org token may act
on its org and every app of it, an app token only on its own app, and neither on anything of another org.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from catalog.credentials import Principal
from ingest_api.context import Services
from ingest_api.errors import ApiError
from ingest_api.tokens import InvalidToken, TokenClaims

_BEARER = {"WWW-Authenticate": 'Bearer realm="bedrock-cost-keeper"'}


def require_admin(request: Request, svc: Services) -> None:
    expected = svc.settings.admin_api_key
    if expected is None:
        raise ApiError(503, "ADMIN_API_DISABLED", "provisioning is disabled: CK_ADMIN_API_KEY is not set")
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "INVALID_API_KEY", "a valid X-API-Key header is required")


async def require_token(request: Request, svc: Services) -> TokenClaims:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "UNAUTHORIZED", "a bearer access token is required", headers=_BEARER)
    try:
        claims = svc.issuer.decode(token.strip(), expected="access")
    except InvalidToken as exc:
        code = "TOKEN_EXPIRED" if "expired" in str(exc) else "INVALID_TOKEN"
        raise ApiError(401, code, str(exc), headers=_BEARER) from exc
    if await svc.revocations.is_revoked(claims):
        raise ApiError(401, "TOKEN_REVOKED", "this token has been revoked", headers=_BEARER)
    return claims


def authorize(principal: Principal, org_id: str, app_id: str | None) -> None:
    """app_id None: the call concerns the whole org, which only an org principal may act on."""
    if principal.org_id != org_id:
        raise ApiError(403, "FORBIDDEN", "this token is not valid for that org")
    if principal.app_id is not None and principal.app_id != app_id:
        raise ApiError(403, "FORBIDDEN", "this token is not valid for that app")
