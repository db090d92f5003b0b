"""The OpenAPI document against the application it describes: the same operations, examples the API accepts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Route

from catalog.model import APP_SETTINGS_EXAMPLE, ORG_SETTINGS_EXAMPLE, AppSettings, OrgSettings, is_slug
from ingest_api.app import ROUTES
from ingest_api.openapi import build_openapi

METHODS = ("get", "put", "post", "delete", "patch")


def documented_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in build_openapi()["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_operation_is_routed() -> None:
    routed = {
        (method, route.path)
        for route in ROUTES
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette adds HEAD to every GET
    }
    assert routed == documented_operations()


def test_the_examples_are_accepted_by_the_models_they_illustrate() -> None:
    schemas = build_openapi()["components"]["schemas"]
    assert schemas["OrgSettings"]["examples"] == [ORG_SETTINGS_EXAMPLE]
    assert schemas["AppSettings"]["examples"] == [APP_SETTINGS_EXAMPLE]
    org = OrgSettings.model_validate(ORG_SETTINGS_EXAMPLE)
    app = AppSettings.model_validate(APP_SETTINGS_EXAMPLE)
    # The app example names only labels the org example prices, so the two can be provisioned together.
    assert set(app.daily_quotas_usd_micros) <= set(org.models)


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def test_maps_keyed_by_label_refuse_other_keys_in_the_document_as_the_models_do() -> None:
    keyed = [s for s in _walk(build_openapi()["components"]["schemas"]) if "patternProperties" in s]
    # models, daily quotas of the org and of the app, an inference profile's Regions.
    assert len(keyed) == 4
    assert all(s["additionalProperties"] is False for s in keyed)
    with pytest.raises(ValueError, match="daily_quotas_usd_micros"):
        AppSettings.model_validate({"daily_quotas_usd_micros": {"Not-A-Slug": 1}})


def test_labels_and_ids_carry_their_patterns() -> None:
    document = build_openapi()
    org = document["components"]["schemas"]["OrgSettings"]["properties"]
    [pattern] = org["models"]["patternProperties"]
    assert org["model_ordering"]["items"]["pattern"] == pattern
    # The documented pattern is the validator's rule, short of the '--' the validator refuses besides.
    for label in ("premium", "premium-2", "a", "a_b", "Premium", "-a", "a-", "", "x" * 65, "a b", "é"):
        assert bool(re.fullmatch(pattern, label)) == is_slug(label), label
    assert re.fullmatch(pattern, "a--b") and not is_slug("a--b")
    params = document["paths"]["/api/v1/orgs/{org_id}/apps/{app_id}"]["get"]["parameters"]
    assert {p["name"]: p["schema"]["pattern"] for p in params}["app_id"] == pattern
