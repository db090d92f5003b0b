"""Reading request bodies and path ids, with every failure mapped to a 4xx JSON error."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from catalog.model import is_org_id, is_slug
from ingest_api.errors import ApiError, invalid_body

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> Any:
    # The body is capped while it streams, under every route (body_limit.py).
    body = await request.body()
    if not body:
        raise ApiError(400, "INVALID_JSON", "the request body is empty; a JSON object is expected")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer past Python's digit limit; nesting
        # deeper than the interpreter's recursion limit is a RecursionError. All are the client's input, not a 500.
        raise ApiError(400, "INVALID_JSON", f"the request body is not valid JSON: {exc}") from exc


def parse_model(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(422, "VALIDATION_ERROR", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_body(exc) from exc


async def body_as(request: Request, model: type[M]) -> M:
    return parse_model(model, await read_json(request))


def path_org_id(request: Request) -> str:
    org_id = str(request.path_params["org_id"])
    if not is_org_id(org_id):
        raise ApiError(400, "INVALID_ORG_ID", "org_id must be a lowercase UUID")
    return org_id


def path_app_id(request: Request) -> str:
    app_id = str(request.path_params["app_id"])
    if not is_slug(app_id):
        raise ApiError(400, "INVALID_APP_ID", "app_id must be 1-64 of a-z 0-9 _ - starting and ending alphanumeric")
    return app_id
