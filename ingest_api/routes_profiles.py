"""An app's inference profiles: register (or replace), list, read and delete them.

Reading takes an org or app token of the app; registering and deleting take an org token, since a profile sets
prices, and an app must not price its own usage.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from catalog.model import Slug, is_slug
from catalog.profiles import InferenceProfile, ProfileId
from ingest_api.auth import ClientCall, client_endpoint
from ingest_api.errors import ApiError
from ingest_api.requests import body_as

BASE = "/api/v1/orgs/{org_id}/apps/{app_id}/inference-profiles"


class ProfileRegistration(InferenceProfile):
    profile_label: Slug
    # The earlier service called the id inference_profile_arn.
    inference_profile_id: ProfileId = Field(
        validation_alias=AliasChoices("inference_profile_id", "inference_profile_arn")
    )
    verify: bool = Field(default=False, strict=True, description="check the routes with Bedrock's GetInferenceProfile")

    def profile(self) -> InferenceProfile:
        return InferenceProfile.model_validate(self.model_dump(include=set(InferenceProfile.model_fields)))


def _body(label: str, profile: InferenceProfile) -> dict[str, Any]:
    return {"profile_label": label, **profile.model_dump(), "supported_regions": sorted(profile.regions)}


def _require_org_token(call: ClientCall) -> None:
    if call.principal.app_id is not None:
        raise ApiError(
            403, "FORBIDDEN", "an inference profile sets prices: registering or deleting one takes an org token"
        )


def _path_label(request: Request) -> str:
    label = str(request.path_params["profile_label"])
    if not is_slug(label):
        raise ApiError(400, "INVALID_PROFILE_LABEL", "profile_label must be a slug (a-z 0-9 _ -)")
    return label


@client_endpoint("app")
async def register(request: Request, call: ClientCall) -> JSONResponse:
    assert call.app_id is not None
    _require_org_token(call)
    registration = await body_as(request, ProfileRegistration)
    profile = registration.profile()
    if registration.verify:
        await call.svc.profile_checker.check(profile)
    org = await call.svc.catalog.require_org(call.org_id)
    app, created = await call.svc.catalog.put_profile(org, call.app_id, registration.profile_label, profile)
    # As for an org's prices: a change to what a profile costs is a new version, in force after a notice period.
    effective_from = app.history().latest.effective_from
    body = {
        **_body(registration.profile_label, profile),
        "price_version": app.profile_version,
        "prices_effective_from": effective_from.isoformat().replace("+00:00", "Z"),
    }
    return JSONResponse(body, status_code=201 if created else 200)


@client_endpoint("app")
async def list_profiles(request: Request, call: ClientCall) -> JSONResponse:
    assert call.app_id is not None
    app = await call.svc.catalog.require_app(call.org_id, call.app_id)
    return JSONResponse({"profiles": [_body(label, p) for label, p in sorted(app.profiles.items())]})


@client_endpoint("app")
async def get_profile(request: Request, call: ClientCall) -> JSONResponse:
    assert call.app_id is not None
    label = _path_label(request)
    app = await call.svc.catalog.require_app(call.org_id, call.app_id)
    profile = app.profiles.get(label)
    if profile is None:
        raise ApiError(404, "PROFILE_NOT_FOUND", f"app {call.app_id} has no inference profile {label!r}")
    return JSONResponse(_body(label, profile))


@client_endpoint("app")
async def delete_profile(request: Request, call: ClientCall) -> Response:
    assert call.app_id is not None
    _require_org_token(call)
    label = _path_label(request)
    org = await call.svc.catalog.require_org(call.org_id)
    await call.svc.catalog.delete_profile(org, call.app_id, label)
    return Response(status_code=204)


routes = [
    Route(BASE, register, methods=["POST"]),
    Route(BASE, list_profiles, methods=["GET"]),
    Route(BASE + "/{profile_label}", get_profile, methods=["GET"]),
    Route(BASE + "/{profile_label}", delete_profile, methods=["DELETE"]),
]
