"""Admin provisioning (X-API-Key): orgs, apps, credential rotation; and the one-time secret claim."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from catalog.credentials import MAX_GRACE_HOURS, Principal
from catalog.model import App, AppSettings, Org, OrgSettings
from catalog.store import ConcurrentUpdate, Provisioned, UnknownPrincipal
from ingest_api.auth import require_admin
from ingest_api.context import Services, services
from ingest_api.errors import ApiError
from ingest_api.one_time_secrets import OneTimeSecrets
from ingest_api.requests import body_as, path_app_id, path_org_id


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_period_hours: int = Field(default=24, ge=0, le=MAX_GRACE_HOURS, strict=True)


def _one_time(svc: Services) -> OneTimeSecrets:
    return OneTimeSecrets(
        svc.clients.dynamodb, svc.settings.aws.names.one_time_secrets_table, svc.settings.one_time_secret_ttl_s
    )


async def _credentials(svc: Services, client_id: str, secret: str) -> dict[str, Any]:
    claim, expires_at = await _one_time(svc).park(client_id, secret)
    return {
        "client_id": client_id,
        "client_secret": secret,
        "secret_claim_path": f"/api/v1/secrets/{claim}",
        "secret_claim_expires_at": expires_at,
    }


def _org_body(org: Org) -> dict[str, Any]:
    return {"org_id": org.org_id, "price_version": org.price_version, **org.settings.model_dump()}


def _app_body(app: App) -> dict[str, Any]:
    return {"org_id": app.org_id, "app_id": app.app_id, **app.settings.model_dump()}


async def _respond(svc: Services, body: dict[str, Any], provisioned: Provisioned) -> JSONResponse:
    body["client_id"] = provisioned.client_id
    if provisioned.client_secret is not None:
        body["credentials"] = await _credentials(svc, provisioned.client_id, provisioned.client_secret)
    return JSONResponse(body, status_code=201 if provisioned.created else 200, headers={"Cache-Control": "no-store"})


async def _org_or_404(svc: Services, org_id: str) -> Org:
    org = await svc.catalog.get_org(org_id)
    if org is None:
        raise ApiError(404, "ORG_NOT_FOUND", f"org {org_id} does not exist")
    return org


async def put_org(request: Request) -> JSONResponse:
    svc = services(request)
    require_admin(request, svc)
    org_id = path_org_id(request)
    settings = await body_as(request, OrgSettings)
    existing = await svc.catalog.get_org(org_id)
    if existing is not None:
        # Removing a label apps still name would break them; the admin must update those apps first.
        for app in await svc.catalog.list_apps(org_id):
            try:
                app.check_against(Org(org_id=org_id, settings=settings, price_version=1))
            except ValueError as exc:
                raise ApiError(409, "LABEL_IN_USE", f"app {app.app_id}: {exc}") from exc
    try:
        org, provisioned = await svc.catalog.put_org(org_id, settings)
    except ConcurrentUpdate as exc:
        raise ApiError(409, "CONCURRENT_UPDATE", str(exc)) from exc
    return await _respond(svc, _org_body(org), provisioned)


async def get_org(request: Request) -> JSONResponse:
    svc = services(request)
    require_admin(request, svc)
    org = await _org_or_404(svc, path_org_id(request))
    apps = await svc.catalog.list_apps(org.org_id)
    return JSONResponse({**_org_body(org), "apps": [a.app_id for a in apps]})


async def put_app(request: Request) -> JSONResponse:
    svc = services(request)
    require_admin(request, svc)
    org_id, app_id = path_org_id(request), path_app_id(request)
    settings = await body_as(request, AppSettings)
    org = await _org_or_404(svc, org_id)
    try:
        app, provisioned = await svc.catalog.put_app(org, app_id, settings)
    except ValueError as exc:
        raise ApiError(422, "UNKNOWN_MODEL_LABEL", str(exc)) from exc
    except ConcurrentUpdate as exc:
        raise ApiError(409, "CONCURRENT_UPDATE", str(exc)) from exc
    return await _respond(svc, _app_body(app), provisioned)


async def get_app(request: Request) -> JSONResponse:
    svc = services(request)
    require_admin(request, svc)
    org_id, app_id = path_org_id(request), path_app_id(request)
    app = await svc.catalog.get_app(org_id, app_id)
    if app is None:
        raise ApiError(404, "APP_NOT_FOUND", f"app {app_id} does not exist in org {org_id}")
    return JSONResponse(_app_body(app))


async def _rotate(request: Request, principal: Principal) -> JSONResponse:
    svc = services(request)
    body = await body_as(request, RotateRequest) if await request.body() else RotateRequest()
    try:
        secret = await svc.catalog.rotate_secret(principal, body.grace_period_hours)
    except UnknownPrincipal as exc:
        code = "ORG_NOT_FOUND" if principal.app_id is None else "APP_NOT_FOUND"
        raise ApiError(404, code, f"{principal.client_id} does not exist") from exc
    except ConcurrentUpdate as exc:
        raise ApiError(409, "CONCURRENT_UPDATE", str(exc)) from exc
    return JSONResponse(
        {
            "credentials": await _credentials(svc, principal.client_id, secret),
            "grace_period_hours": body.grace_period_hours,
        },
        headers={"Cache-Control": "no-store"},
    )


async def rotate_org(request: Request) -> JSONResponse:
    require_admin(request, services(request))
    return await _rotate(request, Principal(path_org_id(request)))


async def rotate_app(request: Request) -> JSONResponse:
    require_admin(request, services(request))
    return await _rotate(request, Principal(path_org_id(request), path_app_id(request)))


async def claim_secret(request: Request) -> JSONResponse:
    svc = services(request)
    claim = str(request.path_params["claim"])
    found = await _one_time(svc).claim(claim) if 20 <= len(claim) <= 100 else None
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
    Route("/api/v1/secrets/{claim}", claim_secret, methods=["GET"]),
]
