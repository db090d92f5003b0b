"""The client API's provisioning, one-time secrets, aggregates by date, health and OpenAPI document, over real HTTP."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from ingest_api.app import ROUTES
from runtime.aws import AwsSettings
from runtime.resources import table_specs
from tests.integration.client_api import ADMIN, add_app, bearer, expect_error, midday_timezone, read_when, row
from tests.integration.harness import org_settings, price, provision, usage

pytestmark = pytest.mark.integration

PREMIUM = (3_000_000, 15_000_000)
STANDARD = (800_000, 4_000_000)
ECONOMY = (35_000, 140_000)


# -- provisioning ---------------------------------------------------------------------------------------------------


def test_put_org_creates_with_credentials_once_and_updates_without_them(api: httpx.Client) -> None:
    org_id = str(uuid.uuid4())
    settings = org_settings(timezone="Europe/Paris")
    r = api.put(f"/api/v1/orgs/{org_id}", json=settings, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["org_id"] == org_id and body["price_version"] == 1
    assert body["client_id"] == f"org-{org_id}"
    assert body["timezone"] == "Europe/Paris" and body["model_ordering"] == ["premium", "standard", "economy"]
    credentials = body["credentials"]
    assert credentials["client_id"] == f"org-{org_id}"
    assert credentials["client_secret"].startswith("cks_")
    assert set(credentials) == {"client_id", "client_secret"}  # no one-time link unless asked for

    # The secret shown works, and the second PUT is an update that never shows a secret again.
    token = api.post("/auth/token", data={"client_id": f"org-{org_id}", "client_secret": credentials["client_secret"]})
    assert token.status_code == 200, token.text
    settings["name"] = "Renamed"
    r = api.put(f"/api/v1/orgs/{org_id}", json=settings, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert "credentials" not in r.json() and "client_secret" not in r.text
    assert r.json()["client_id"] == f"org-{org_id}"
    assert r.json()["price_version"] == 1  # no price changed

    r = api.get(f"/api/v1/orgs/{org_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Renamed" and r.json()["apps"] == []
    assert "client_secret" not in r.text and "secrets" not in r.json()


def test_put_app_needs_a_known_org_and_known_labels(api: httpx.Client) -> None:
    r = api.put(f"/api/v1/orgs/{uuid.uuid4()}/apps/app-one", json={}, headers=ADMIN)
    expect_error(r, 404, "ORG_NOT_FOUND")

    tenant = provision(api)
    base = f"/api/v1/orgs/{tenant.org_id}/apps"
    r = api.put(f"{base}/app-two", json={"daily_quotas_usd_micros": {"gpt-9": 1}}, headers=ADMIN)
    assert "gpt-9" in expect_error(r, 422, "UNKNOWN_MODEL_LABEL")["message"]
    r = api.put(f"{base}/app-two", json={"model_ordering": ["economy", "gpt-9"]}, headers=ADMIN)
    expect_error(r, 422, "UNKNOWN_MODEL_LABEL")
    r = api.put(f"{base}/app-two", json={"model_ordering": ["economy", "economy"]}, headers=ADMIN)
    expect_error(r, 422, "VALIDATION_ERROR")
    expect_error(api.get(f"{base}/app-two", headers=ADMIN), 404, "APP_NOT_FOUND")

    app_settings = {"name": "Two", "model_ordering": ["standard", "economy"], "daily_quotas_usd_micros": {"economy": 7}}
    r = api.put(f"{base}/app-two", json=app_settings, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["client_id"] == f"org-{tenant.org_id}-app-app-two"
    assert r.json()["credentials"]["client_secret"].startswith("cks_")
    r = api.put(f"{base}/app-two", json=app_settings, headers=ADMIN)
    assert r.status_code == 200 and "credentials" not in r.json()
    r = api.get(f"{base}/app-two", headers=ADMIN)
    assert r.status_code == 200
    assert r.json() == {"org_id": tenant.org_id, "app_id": "app-two", **app_settings}
    assert api.get(f"/api/v1/orgs/{tenant.org_id}", headers=ADMIN).json()["apps"] == ["app-one", "app-two"]

    # An org update may not drop a label an app still names.
    narrowed = org_settings()
    del narrowed["models"]["economy"]
    narrowed["model_ordering"] = ["premium", "standard"]
    del narrowed["daily_quotas_usd_micros"]["economy"]
    expect_error(api.put(f"/api/v1/orgs/{tenant.org_id}", json=narrowed, headers=ADMIN), 409, "LABEL_IN_USE")


def test_provisioning_without_the_admin_key_is_refused(api: httpx.Client) -> None:
    tenant = provision(api)
    org = f"/api/v1/orgs/{tenant.org_id}"
    calls = [
        ("PUT", org, org_settings()),
        ("GET", org, None),
        ("PUT", f"{org}/apps/app-one", {}),
        ("GET", f"{org}/apps/app-one", None),
        ("POST", f"{org}/credentials/rotate", {}),
        ("POST", f"{org}/apps/app-one/credentials/rotate", {}),
    ]
    bearer_token = bearer(tenant.token(tenant.org_client_id, tenant.org_secret))
    for method, path, body in calls:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, bearer_token):
            r = api.request(method, path, json=body, headers=headers)
            expect_error(r, 401, "INVALID_API_KEY")
    # None of those calls changed anything: the settings and secrets are still the ones provisioned.
    assert api.get(org, headers=ADMIN).json()["name"] == "Test"
    assert tenant.token(tenant.org_client_id, tenant.org_secret) and tenant.token()


def test_provisioning_rejects_malformed_ids_and_bodies(api: httpx.Client) -> None:
    for bad in ("not-a-uuid", str(uuid.uuid4()).upper(), f"{uuid.uuid4()}%23APP%23x", "%2e%2e", "x" * 300):
        expect_error(api.put(f"/api/v1/orgs/{bad}", json=org_settings(), headers=ADMIN), 400, "INVALID_ORG_ID")
        expect_error(api.get(f"/api/v1/orgs/{bad}", headers=ADMIN), 400, "INVALID_ORG_ID")
    tenant = provision(api)
    for bad in ("App-One", "app%23one", "-app", "app--one", "a" * 65, "%2e%2e", "app one"):
        r = api.put(f"/api/v1/orgs/{tenant.org_id}/apps/{bad}", json={}, headers=ADMIN)
        expect_error(r, 400, "INVALID_APP_ID")

    org = f"/api/v1/orgs/{uuid.uuid4()}"
    expect_error(api.put(org, content=b"{not json", headers=ADMIN), 400, "INVALID_JSON")
    expect_error(api.put(org, content=b"", headers=ADMIN), 400, "INVALID_JSON")
    expect_error(api.put(org, content=b"[" * 100_000, headers=ADMIN), 400, "INVALID_JSON")
    expect_error(api.put(org, json=[org_settings()], headers=ADMIN), 422, "VALIDATION_ERROR")
    bad_zone = {**org_settings(), "timezone": "Mars/Olympus"}
    details = expect_error(api.put(org, json=bad_zone, headers=ADMIN), 422, "VALIDATION_ERROR")["details"]
    assert details[0]["loc"] == ["timezone"] and "Mars/Olympus" in details[0]["message"]
    bad_quota = org_settings(quotas={"premium": -1})
    expect_error(api.put(org, json=bad_quota, headers=ADMIN), 422, "VALIDATION_ERROR")
    unknown = org_settings(quotas={"gpt-9": 1})
    expect_error(api.put(org, json=unknown, headers=ADMIN), 422, "VALIDATION_ERROR")
    # None of the refused PUTs created the org.
    expect_error(api.get(org, headers=ADMIN), 404, "ORG_NOT_FOUND")


def test_a_one_time_secret_link_is_opt_in_shows_no_secret_and_is_claimed_once_by_post(api: httpx.Client) -> None:
    org_id = str(uuid.uuid4())
    r = api.put(f"/api/v1/orgs/{org_id}?one_time_link=true", json=org_settings(), headers=ADMIN)
    assert r.status_code == 201, r.text
    credentials = r.json()["credentials"]
    assert set(credentials) == {"client_id", "secret_claim_path", "secret_claim_expires_at"}
    assert "cks_" not in r.text  # the link is the only way to the secret
    assert credentials["secret_claim_expires_at"] > time.time()
    claim_path = credentials["secret_claim_path"]
    # A GET (a link preview, a prefetcher) does not consume it.
    expect_error(api.get(claim_path), 405, "METHOD_NOT_ALLOWED")
    r = api.post(claim_path)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["client_id"] == f"org-{org_id}"
    secret = r.json()["client_secret"]
    assert api.post("/auth/token", data={"client_id": f"org-{org_id}", "client_secret": secret}).status_code == 200
    expect_error(api.post(claim_path), 404, "SECRET_NOT_FOUND")
    for bogus in ("x" * 43, "short", "y" * 500, "%23" * 10):
        expect_error(api.post(f"/api/v1/secrets/{bogus}"), 404, "SECRET_NOT_FOUND")

    # Apps and rotations take the same option; a value other than true/false is refused.
    r = api.put(f"/api/v1/orgs/{org_id}/apps/app-one?one_time_link=1", json={"name": "A"}, headers=ADMIN)
    assert r.status_code == 201 and "client_secret" not in r.json()["credentials"], r.text
    r = api.post(f"/api/v1/orgs/{org_id}/credentials/rotate?one_time_link=true", headers=ADMIN)
    assert r.status_code == 200 and "client_secret" not in r.json()["credentials"], r.text
    assert api.post(r.json()["credentials"]["secret_claim_path"]).status_code == 200
    r = api.post(f"/api/v1/orgs/{org_id}/credentials/rotate?one_time_link=maybe", headers=ADMIN)
    expect_error(r, 400, "INVALID_QUERY")


# -- aggregates by date ---------------------------------------------------------------------------------------------


def test_aggregates_by_date_and_per_app_against_org_totals(http: httpx.Client) -> None:
    tenant = provision(http, org=org_settings(timezone=midday_timezone()))
    add_app(http, tenant.org_id, "app-two")
    org_headers = tenant.org_headers()
    one = [usage("premium", 1000, 200), usage("economy", 50_000, 1000)]
    two = [usage("premium", 7, 3), usage("standard", 12_345, 678)]
    for app_id, events in (("app-one", one), ("app-two", two)):
        r = http.post(
            f"/api/v1/orgs/{tenant.org_id}/apps/{app_id}/usage/batch", json={"items": events}, headers=org_headers
        )
        assert r.status_code == 207 and r.json()["accepted"] == 2, r.text

    premium_one, premium_two = price(1000, 200, *PREMIUM), price(7, 3, *PREMIUM)
    economy_one, standard_two = price(50_000, 1000, *ECONOMY), price(12_345, 678, *STANDARD)
    org_path = f"/api/v1/orgs/{tenant.org_id}/aggregates"
    today = read_when(http, f"{org_path}/today", org_headers, lambda b: b["total"]["request_count"] == 4)
    assert today["total"]["cost_usd_micros"] == premium_one + premium_two + economy_one + standard_two
    assert today["apps"] == ["app-one", "app-two"]
    assert [m["model_label"] for m in today["models"]] == ["premium", "standard", "economy"]
    premium = row(today, "premium")
    assert premium["cost_usd_micros"] == premium_one + premium_two and premium["request_count"] == 2
    assert premium["input_tokens"] == 1007 and premium["output_tokens"] == 203
    # ORG scope: the org's quotas apply to org totals.
    assert premium["quota_usd_micros"] == 1_000_000
    assert premium["quota_used_percent"] == round(100 * (premium_one + premium_two) / 1_000_000, 2)

    app_one = http.get(f"{tenant.app_path}/aggregates/today", headers=org_headers).json()
    app_two = http.get(f"/api/v1/orgs/{tenant.org_id}/apps/app-two/aggregates/today", headers=org_headers).json()
    assert app_one["total"]["cost_usd_micros"] == premium_one + economy_one
    assert app_two["total"]["cost_usd_micros"] == premium_two + standard_two
    assert row(app_one, "standard")["request_count"] == 0 and row(app_two, "economy")["request_count"] == 0
    for label in ("premium", "standard", "economy"):
        assert (
            row(app_one, label)["cost_usd_micros"] + row(app_two, label)["cost_usd_micros"]
            == (row(today, label)["cost_usd_micros"])
        )
        # ORG scope and no app quotas: an app has no quota of its own.
        assert row(app_one, label)["quota_usd_micros"] is None

    # The same day by its date; the day before is an empty day, not an error.
    local_day = date.fromisoformat(today["date"])
    by_date = http.get(f"{org_path}/{local_day.isoformat()}", headers=org_headers).json()
    assert by_date == today
    assert http.get(f"{tenant.app_path}/aggregates/{local_day}", headers=org_headers).json() == app_one
    yesterday = http.get(f"{org_path}/{local_day - timedelta(days=1)}", headers=org_headers)
    assert yesterday.status_code == 200, yesterday.text
    assert yesterday.json()["date"] == (local_day - timedelta(days=1)).isoformat()
    assert yesterday.json()["total"]["request_count"] == 0 and yesterday.json()["apps"] == []

    for bad in ("2024-13-01", "2024-02-30", "yesterday", "2024-1-1", "2024-01-01%23x", "20240101"):
        expect_error(http.get(f"{org_path}/{bad}", headers=org_headers), 400, "INVALID_DATE")
        expect_error(http.get(f"{tenant.app_path}/aggregates/{bad}", headers=org_headers), 400, "INVALID_DATE")


# -- operations -----------------------------------------------------------------------------------------------------


def test_health_reports_every_table_and_queue(api: httpx.Client, aws_settings: AwsSettings) -> None:
    # Liveness asks nothing of AWS; the deep check asks every table and queue.
    r = api.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    r = api.get("/health/deep")
    assert r.status_code == 200, r.text
    body = r.json()
    names = aws_settings.names
    expected = {f"table:{spec.name}": "ACTIVE" for spec in table_specs(names)}
    expected |= {f"queue:{names.usage_queue}": "OK", f"queue:{names.dead_letter_queue}": "OK"}
    assert body["checks"] == expected
    # Reachable: 200, "ok" or (while usage may be missing from the aggregates) "degraded" with its reasons.
    assert (body["status"], body["degraded"] == []) in {("ok", True), ("degraded", False)}


def test_openapi_is_valid_3_1_and_lists_every_route(api: httpx.Client) -> None:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    document = r.json()
    assert document["openapi"].startswith("3.1")
    validate(document)
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    served = {
        (route.path, method.lower())
        for route in ROUTES
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served - documented == set()
    assert documented - served == set()
    # Every documented path parameter appears in its path (the others are query parameters, as of the range read).
    for path, ops in document["paths"].items():
        for op in ops.values():
            for param in op.get("parameters", []):
                assert param["in"] in ("path", "query"), param
                assert (f"{{{param['name']}}}" in path) == (param["in"] == "path"), (path, param)


def test_unknown_routes_and_methods_answer_with_the_error_shape(api: httpx.Client) -> None:
    expect_error(api.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    r = api.delete(f"/api/v1/orgs/{uuid.uuid4()}", headers=ADMIN)
    expect_error(r, 405, "METHOD_NOT_ALLOWED")
