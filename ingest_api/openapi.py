"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from catalog.model import ORG_ID_PATTERN, SLUG_PATTERN, AppSettings, OrgSettings
from ingest_api.routes_auth import RefreshRequest, RevokeRequest, TokenRequest
from ingest_api.routes_dashboard import ASSET_TYPES
from ingest_api.routes_profiles import ProfileRegistration
from ingest_api.routes_provisioning import RotateRequest
from ingest_api.spend import MAX_RANGE_DAYS
from ingest_api.submission import MAX_BATCH_ITEMS, UsageSubmission

_MODELS: list[type[BaseModel]] = [
    OrgSettings,
    AppSettings,
    RotateRequest,
    TokenRequest,
    RefreshRequest,
    RevokeRequest,
    UsageSubmission,
    ProfileRegistration,
]

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}

ORG_ID = {"name": "org_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": ORG_ID_PATTERN}}
APP_ID = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": SLUG_PATTERN}}
DATE = {"name": "date", "in": "path", "required": True, "schema": {"type": "string", "format": "date"}}
CLAIM = {"name": "claim", "in": "path", "required": True, "schema": {"type": "string"}}
PROFILE_LABEL = {
    "name": "profile_label",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": SLUG_PATTERN},
}
RANGE = [
    {"name": name, "in": "query", "required": True, "description": what, "schema": {"type": "string", "format": "date"}}
    for name, what in (
        ("from", "first org-local day, included"),
        ("to", f"last org-local day, included; at most {MAX_RANGE_DAYS} days"),
    )
]
FORMAT = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "csv: a row per day and model label; default: JSON, or CSV when Accept names text/csv",
    "schema": {"type": "string", "enum": ["json", "csv"]},
}


def _close_keyed_objects(schema: Any) -> Any:
    """Pydantic states a dict's key pattern as patternProperties but leaves other keys open; the server refuses them."""
    if isinstance(schema, dict):
        if "patternProperties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_keyed_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _close_keyed_objects(value)
    return schema


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _body(schema: dict[str, Any], form: bool = False) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}}
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"required": True, "content": content}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "error", "content": {"application/json": {"schema": ERROR}}} for code in codes}


def _responses(*codes: int, ok: int = 200) -> dict[str, Any]:
    return {str(ok): {"description": "success", "content": {"application/json": {"schema": {}}}}, **_errors(*codes)}


def _range_responses(*codes: int) -> dict[str, Any]:
    responses = _responses(*codes)
    responses["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    return responses


def _op(
    summary: str,
    security: str | None,
    params: list[dict[str, Any]],
    responses: dict[str, Any],
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if security:
        op["security"] = [{security: []}]
    if body:
        op["requestBody"] = body
    return op


def build_openapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = _close_keyed_objects(model.model_json_schema(ref_template="#/components/schemas/{model}"))
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    events = {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ITEMS, "items": _ref(UsageSubmission)}
    # `requests` is the earlier service's name for `items`: one of the two.
    batch = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {"items": events, "requests": events},
    }
    auth_errors = (400, 401, 403, 404, 422)
    paths: dict[str, Any] = {
        "/auth/token": {
            "post": _op(
                "Client credentials -> access and refresh token",
                None,
                [],
                _responses(400, 401, 422),
                _body(_ref(TokenRequest), form=True),
            )
        },
        "/auth/refresh": {
            "post": _op(
                "Refresh token -> new token pair (the old refresh token is spent)",
                None,
                [],
                _responses(400, 401, 422),
                _body(_ref(RefreshRequest), form=True),
            )
        },
        "/auth/revoke": {
            "post": _op(
                "Revoke an access or refresh token",
                None,
                [],
                _responses(400, 422),
                _body(_ref(RevokeRequest), form=True),
            )
        },
        "/api/v1/orgs/{org_id}": {
            "put": _op(
                "Create or update an org",
                "apiKey",
                [ORG_ID],
                {**_responses(400, 401, 409, 422), "201": {"description": "created; carries the client secret once"}},
                _body(_ref(OrgSettings)),
            ),
            "get": _op("Read an org's settings", "apiKey", [ORG_ID], _responses(400, 401, 404)),
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}": {
            "put": _op(
                "Create or update an app",
                "apiKey",
                [ORG_ID, APP_ID],
                {
                    **_responses(400, 401, 404, 409, 422),
                    "201": {"description": "created; carries the client secret once"},
                },
                _body(_ref(AppSettings)),
            ),
            "get": _op("Read an app's settings", "apiKey", [ORG_ID, APP_ID], _responses(400, 401, 404)),
        },
        "/api/v1/orgs/{org_id}/credentials/rotate": {
            "post": _op(
                "Rotate the org's client secret with a grace period",
                "apiKey",
                [ORG_ID],
                _responses(400, 401, 404, 409, 422),
                {"required": False, "content": {"application/json": {"schema": _ref(RotateRequest)}}},
            )
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/credentials/rotate": {
            "post": _op(
                "Rotate an app's client secret with a grace period",
                "apiKey",
                [ORG_ID, APP_ID],
                _responses(400, 401, 404, 409, 422),
                {"required": False, "content": {"application/json": {"schema": _ref(RotateRequest)}}},
            )
        },
        "/api/v1/orgs/{org_id}/sessions/revoke": {
            "post": _op("End every session of the org client", "apiKey", [ORG_ID], _responses(400, 401, 404, 409))
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/sessions/revoke": {
            "post": _op(
                "End every session of an app client", "apiKey", [ORG_ID, APP_ID], _responses(400, 401, 404, 409)
            )
        },
        "/api/v1/secrets/{claim}": {"post": _op("Claim a one-time secret", None, [CLAIM], _responses(404, 429))},
        "/api/v1/orgs/{org_id}/apps/{app_id}/usage": {
            "post": _op(
                "Submit one usage event",
                "bearer",
                [ORG_ID, APP_ID],
                {**_responses(*auth_errors, 503, ok=202)},
                _body(_ref(UsageSubmission)),
            )
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/usage/batch": {
            "post": _op(
                "Submit up to 100 usage events; a result per item",
                "bearer",
                [ORG_ID, APP_ID],
                {**_responses(*auth_errors, 503, ok=207)},
                _body(batch),
            )
        },
        "/api/v1/orgs/{org_id}/aggregates": {
            "get": _op(
                "Org-wide spend per model label on each day of a range, as JSON or CSV",
                "bearer",
                [ORG_ID, *RANGE, FORMAT],
                _range_responses(*auth_errors),
            )
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/aggregates": {
            "get": _op(
                "One app's spend per model label on each day of a range, as JSON or CSV",
                "bearer",
                [ORG_ID, APP_ID, *RANGE, FORMAT],
                _range_responses(*auth_errors),
            )
        },
        "/api/v1/orgs/{org_id}/aggregates/today": {
            "get": _op("Today's org-wide spend per model label", "bearer", [ORG_ID], _responses(*auth_errors))
        },
        "/api/v1/orgs/{org_id}/aggregates/{date}": {
            "get": _op("A day's org-wide spend per model label", "bearer", [ORG_ID, DATE], _responses(*auth_errors))
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/aggregates/today": {
            "get": _op("Today's spend of one app", "bearer", [ORG_ID, APP_ID], _responses(*auth_errors))
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/aggregates/{date}": {
            "get": _op("A day's spend of one app", "bearer", [ORG_ID, APP_ID, DATE], _responses(*auth_errors))
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/model-selection": {
            "get": _op(
                "The model to use now under the daily quotas", "bearer", [ORG_ID, APP_ID], _responses(*auth_errors, 429)
            )
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/inference-profiles": {
            "post": _op(
                "Register (201) or replace (200) an inference profile of the app (org token)",
                "bearer",
                [ORG_ID, APP_ID],
                {**_responses(*auth_errors, 409, 503, ok=200), "201": {"description": "registered"}},
                _body(_ref(ProfileRegistration)),
            ),
            "get": _op("The app's inference profiles", "bearer", [ORG_ID, APP_ID], _responses(*auth_errors)),
        },
        "/api/v1/orgs/{org_id}/apps/{app_id}/inference-profiles/{profile_label}": {
            "get": _op("One inference profile", "bearer", [ORG_ID, APP_ID, PROFILE_LABEL], _responses(*auth_errors)),
            "delete": {
                **_op(
                    "Delete an inference profile no ordering or quota names (org token)",
                    "bearer",
                    [ORG_ID, APP_ID, PROFILE_LABEL],
                    _responses(*auth_errors, 409),
                ),
                "responses": {
                    "204": {"description": "deleted"},
                    **{k: v for k, v in _responses(*auth_errors, 409).items() if k != "200"},
                },
            },
        },
        "/health": {"get": {"summary": "Liveness: the process answers", "responses": {"200": {"description": "ok"}}}},
        "/health/deep": {"get": _op("Tables and queues reachable (cached)", None, [], _responses(401, 503))},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
        "/dashboard": {
            "get": {
                "summary": "The spend and pipeline dashboard: a page that signs in with a pasted token or admin key",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
            }
        },
        "/dashboard/assets/{name}": {
            "get": {
                "summary": "The dashboard's script, stylesheets and icon, shipped in the package",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(ASSET_TYPES)},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "the asset",
                        "content": {
                            media_type.split(";")[0]: {"schema": {"type": "string"}}
                            for media_type in ASSET_TYPES.values()
                        },
                    },
                    **_errors(404),
                },
            }
        },
        "/dashboard/view": {
            "get": {
                "summary": "The dashboard's view for the caller: their org's or app's spend, quotas and model "
                "selection for a bearer token; every org's spend and the pipeline for the admin key",
                "security": [{"bearer": []}, {"apiKey": []}],
                "responses": {
                    "200": {"description": "HTML fragment", "content": {"text/html": {"schema": {"type": "string"}}}},
                    **_errors(401, 404, 503),
                },
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "JSON"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bedrock Cost Keeper", "version": "1.0.0"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }
