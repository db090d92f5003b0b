"""No token reaches past its tenant: org A never touches org B, an app never touches a sibling app or the org-wide
view, and forged ids are refused as input (4xx), never as a server fault and never with another tenant's data."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from runtime.aws import AwsSettings
from tests.integration.client_api import ADMIN, add_app, bearer, expect_error, midday_timezone, token_pair
from tests.integration.harness import Tenant, org_settings, provision, usage, wait_idle

pytestmark = pytest.mark.integration


def reads(org_id: str, app_id: str) -> list[str]:
    org = f"/api/v1/orgs/{org_id}"
    app = f"{org}/apps/{app_id}"
    return [
        f"{app}/aggregates/today",
        f"{app}/aggregates/2024-01-01",
        f"{app}/aggregates?from=2024-01-01&to=2024-01-31",
        f"{app}/aggregates?from=2024-01-01&to=2024-01-31&format=csv",
        f"{app}/model-selection",
    ]


def writes(http: httpx.Client, org_id: str, app_id: str, headers: dict[str, str]) -> list[httpx.Response]:
    app = f"/api/v1/orgs/{org_id}/apps/{app_id}"
    return [
        http.post(f"{app}/usage", json=usage("economy"), headers=headers),
        http.post(f"{app}/usage/batch", json={"items": [usage("economy")]}, headers=headers),
    ]


def org_reads(org_id: str) -> list[str]:
    org = f"/api/v1/orgs/{org_id}"
    return [
        f"{org}/aggregates/today",
        f"{org}/aggregates/2024-01-01",
        f"{org}/aggregates?from=2024-01-01&to=2024-01-02",
    ]


def requests_counted(http: httpx.Client, org_id: str, headers: dict[str, str]) -> dict[str, Any]:
    r = http.get(f"/api/v1/orgs/{org_id}/aggregates/today", headers=headers)
    assert r.status_code == 200, r.text
    return {"total": r.json()["total"]["request_count"], "apps": r.json()["apps"]}


@pytest.fixture
def tenants(http: httpx.Client) -> tuple[Tenant, Tenant]:
    # Noon in the orgs' zone: the "today" that counts the writes below cannot turn over mid-test.
    a = provision(http, org=org_settings(timezone=midday_timezone()))
    add_app(http, a.org_id, "app-two")
    return a, provision(http, org=org_settings(timezone=midday_timezone()))


def test_tokens_stay_inside_their_org_and_app(
    http: httpx.Client, aws_settings: AwsSettings, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    a_org, a_one, b_org = a.org_headers(), a.app_headers(), b.org_headers()

    # Org A's tokens, org and app alike, cannot read or write anything of org B.
    for headers in (a_org, a_one):
        for path in reads(b.org_id, b.app_id) + org_reads(b.org_id):
            expect_error(http.get(path, headers=headers), 403, "FORBIDDEN")
        for r in writes(http, b.org_id, b.app_id, headers):
            expect_error(r, 403, "FORBIDDEN")
        # Not even an app of B named like an app of A.
        expect_error(http.get(reads(b.org_id, a.app_id)[0], headers=headers), 403, "FORBIDDEN")
    # An app token of A cannot reach its sibling app, nor the org-wide view.
    for path in reads(a.org_id, "app-two") + org_reads(a.org_id):
        expect_error(http.get(path, headers=a_one), 403, "FORBIDDEN")
    for r in writes(http, a.org_id, "app-two", a_one):
        expect_error(r, 403, "FORBIDDEN")
    # A bearer token is no admin key, whoever's it is.
    expect_error(http.get(f"/api/v1/orgs/{a.org_id}", headers=a_org), 401, "INVALID_API_KEY")

    # An org token acts on every app of its org; an app token on its own app.
    for app_id in ("app-one", "app-two"):
        for path in reads(a.org_id, app_id):
            assert http.get(path, headers=a_org).status_code == 200
        assert [r.status_code for r in writes(http, a.org_id, app_id, a_org)] == [202, 207]
    for path in reads(a.org_id, "app-one"):
        assert http.get(path, headers=a_one).status_code == 200
    assert [r.status_code for r in writes(http, a.org_id, "app-one", a_one)] == [202, 207]

    # Only the allowed writes were counted: six events in org A, none in org B.
    wait_idle(aws_settings)
    assert requests_counted(http, a.org_id, a_org) == {"total": 6, "apps": ["app-one", "app-two"]}
    assert requests_counted(http, b.org_id, b_org) == {"total": 0, "apps": []}


FORGED_ORG_IDS = [
    "{b}%23APP%23app-one",  # a key separator smuggled after a real org id
    "{a}%23",
    "{B}",  # the same UUID in upper case
    "{b}%00",
    "%2e%2e",
    "..%5c{b}",
    "{b}%20",
    "%7B{b}%7D",
]
FORGED_APP_IDS = [
    "app-one%23premium",
    "app-one%23",
    "APP-ONE",
    "%2e%2e",
    "app-one%00",
    "app-one%2e",
    "%E2%80%8Bapp-one",
]
# A %2F becomes a '/' before routing: these name no route at all.
UNROUTABLE = ["..%2F{b}", "app-one%2F..%2F..%2F{b}"]


def test_forged_ids_are_refused_as_input(api: httpx.Client) -> None:
    a = provision(api)
    b = provision(api)
    a_org, a_one = a.org_headers(), a.app_headers()

    def fill(template: str) -> str:
        return template.format(a=a.org_id, b=b.org_id, B=b.org_id.upper())

    for template in FORGED_ORG_IDS:
        org_id = fill(template)
        for path in [*reads(org_id, "app-one"), *org_reads(org_id)]:
            for headers in (a_org, a_one):
                expect_error(api.get(path, headers=headers), 400, "INVALID_ORG_ID")
        for r in writes(api, org_id, "app-one", a_org):
            expect_error(r, 400, "INVALID_ORG_ID")
        expect_error(api.get(f"/api/v1/orgs/{org_id}", headers=ADMIN), 400, "INVALID_ORG_ID")
        expect_error(api.put(f"/api/v1/orgs/{org_id}/apps/x", json={}, headers=ADMIN), 400, "INVALID_ORG_ID")
    for template in FORGED_APP_IDS:
        app_id = fill(template)
        for org_id in (a.org_id, b.org_id):
            for path in reads(org_id, app_id):
                expect_error(api.get(path, headers=a_org), 400, "INVALID_APP_ID")
            for r in writes(api, org_id, app_id, a_org):
                expect_error(r, 400, "INVALID_APP_ID")
        expect_error(api.get(f"/api/v1/orgs/{a.org_id}/apps/{app_id}", headers=ADMIN), 400, "INVALID_APP_ID")
    for template in UNROUTABLE:
        segment = fill(template)
        for path in (
            f"/api/v1/orgs/{segment}/aggregates/today",
            f"/api/v1/orgs/{a.org_id}/apps/{segment}/aggregates/today",
        ):
            r = api.get(path, headers=a_org)
            expect_error(r, 404, "NOT_FOUND")
            assert b.org_id not in r.text

    # A client id naming another tenant, or forged with separators, gets no token.
    for client_id in (
        f"org-{b.org_id}",
        f"org-{a.org_id}-app-app-one#x",
        f"org-{a.org_id}%23",
        f"org-{b.org_id.upper()}",
    ):
        r = api.post("/auth/token", data={"client_id": client_id, "client_secret": a.org_secret})
        expect_error(r, 401, "INVALID_CLIENT")
    # Org A's secret is still org A's only.
    assert token_pair(api, a.org_client_id, a.org_secret)["org_id"] == a.org_id
    r = api.get(
        reads(b.org_id, "app-one")[0], headers=bearer(token_pair(api, a.org_client_id, a.org_secret)["access_token"])
    )
    expect_error(r, 403, "FORBIDDEN")
