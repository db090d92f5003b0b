"""Admin provisioning (X-API-Key): orgs, apps, credential rotation, ending sessions; and the one-time secret claim."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from catalog.credentials import MAX_GRACE_HOURS, Principal
from catalog.model import App, AppSettings, Org, OrgSettings
from catalog.store import Provisioned
from ingest_api.auth import admin_endpoint, client_address, credential_attempt
from ingest_api.context import Services, services
from ingest_api.errors import ApiError
from ingest_api.rate_limits import Policy
from ingest_api.requests import body_as, path_app_id, path_org_id


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_period_hours: int = Field(default=24, ge=0, le=MAX_GRACE_HOURS, strict=True)


def _wants_link(request: Request) -> bool:
    """?one_time_link=true: hand the new secret over as a link that works once, instead of in this response."""
    raw = request.query_params.get("one_time_link", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "INVALID_QUERY", "one_time_link must be true or false")
    return raw in ("true", "1")


async def _credentials(request: Request, svc: Services, client_id: str, secret: str) -> dict[str, Any]:
    if not _wants_link(request):
        return {"client_id": client_id, "client_secret": secret}
    # The secret is parked, not shown: whoever claims the link is the only one who ever sees it.
    claim, expires_at = await svc.one_time_secrets.park(client_id, secret)
    return {
        "client_id": client_id,
        "secret_claim_path": f"/api/v1/secrets/{claim}",
        "secret_claim_expires_at": expires_at,
    }


def _org_body(org: Org) -> dict[str, Any]:
    # When the latest prices take effect (a change waits out a notice period; the first version: always).
    effective_from = org.history().latest.effective_from
    return {
        "org_id": org.org_id,
        "price_version": org.price_version,
        "prices_effective_from": effective_from.isoformat().replace("+00:00", "Z"),
        **org.settings.model_dump(),
    }


def _app_body(app: App) -> dict[str, Any]:
    return {"org_id": app.org_id, "app_id": app.app_id, **app.settings.model_dump()}


async def _respond(request: Request, svc: Services, body: dict[str, Any], provisioned: Provisioned) -> JSONResponse:
    body["client_id"] = provisioned.client_id
    if provisioned.client_secret is not None:
        body["credentials"] = await _credentials(request, svc, provisioned.client_id, provisioned.client_secret)
    return JSONResponse(body, status_code=201 if provisioned.created else 200, headers={"Cache-Control": "no-store"})


@admin_endpoint
async def put_org(request: Request, svc: Services) -> JSONResponse:
    org_id = path_org_id(request)
    settings = await body_as(request, OrgSettings)
    org, provisioned = await svc.catalog.put_org(org_id, settings)
    return await _respond(request, svc, _org_body(org), provisioned)


@admin_endpoint
async def get_org(request: Request, svc: Services) -> JSONResponse:
    org = await svc.catalog.require_org(path_org_id(request))
    apps = await svc.catalog.list_apps(org.org_id)
    return JSONResponse({**_org_body(org), "apps": [a.app_id for a in apps]})


@admin_endpoint
async def put_app(request: Request, svc: Services) -> JSONResponse:
    org_id, app_id = path_org_id(request), path_app_id(request)
    settings = await body_as(request, AppSettings)
    org = await svc.catalog.require_org(org_id)
    app, provisioned = await svc.catalog.put_app(org, app_id, settings)
    return await _respond(request, svc, _app_body(app), provisioned)


@admin_endpoint
async def get_app(request: Request, svc: Services) -> JSONResponse:
    app = await svc.catalog.require_app(path_org_id(request), path_app_id(request))
    return JSONResponse(_app_body(app))


async def _rotate(request: Request, svc: Services, principal: Principal) -> JSONResponse:
    body = await body_as(request, RotateRequest) if await request.body() else RotateRequest()
    secret = await svc.catalog.rotate_secret(principal, body.grace_period_hours)
    return JSONResponse(
        {
            "credentials": await _credentials(request, svc, principal.client_id, secret),
            "grace_period_hours": body.grace_period_hours,
        },
        headers={"Cache-Control": "no-store"},
    )


@admin_endpoint
async def rotate_org(request: Request, svc: Services) -> JSONResponse:
    return await _rotate(request, svc, Principal(path_org_id(request)))


@admin_endpoint
async def rotate_app(request: Request, svc: Services) -> JSONResponse:
    return await _rotate(request, svc, Principal(path_org_id(request), path_app_id(request)))


async def _end_sessions(svc: Services, principal: Principal) -> JSONResponse:
    epoch = await svc.catalog.end_sessions(principal)
    return JSONResponse({"client_id": principal.client_id, "sessions_revoked": True, "session_epoch": epoch})


@admin_endpoint
async def end_org_sessions(request: Request, svc: Services) -> JSONResponse:
    return await _end_sessions(svc, Principal(path_org_id(request)))


@admin_endpoint
async def end_app_sessions(request: Request, svc: Services) -> JSONResponse:
    return await _end_sessions(svc, Principal(path_org_id(request), path_app_id(request)))


async def claim_secret(request: Request) -> JSONResponse:
    svc = services(request)
    claim = str(request.path_params["claim"])
    async with credential_attempt(svc, (Policy.CLAIMS, client_address(request))):
        found = await svc.one_time_secrets.claim(claim) if 20 <= len(claim) <= 100 else None
        if found is None:
            raise ApiError(404, "SECRET_NOT_FOUND", "no such secret, or it was already claimed, or it expired")
    client_id, secret = found
    return JSONResponse({"client_id": client_id, "client_secret": secret}, headers={"Cache-Control": "no-store"})


routes = [
    Route("/api/v1/orgs/{org_id}", put_org, methods=["PUT"]),
    Route("/api/v1/orgs/{org_id}", get_org, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}", put_app, methods=["PUT"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}", get_app, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/credentials/rotate", rotate_org, methods=["POST"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/credentials/rotate", rotate_app, methods=["POST"]),
    Route("/api/v1/orgs/{org_id}/sessions/revoke", end_org_sessions, methods=["POST"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/sessions/revoke", end_app_sessions, methods=["POST"]),
    # POST: a GET with a side effect is consumed by link previews and prefetchers before the person it was for.
    Route("/api/v1/secrets/{claim}", claim_secret, methods=["POST"]),
]
