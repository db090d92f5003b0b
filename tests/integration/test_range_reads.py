"""Spend over a range of org-local days, per label and per day, as JSON and as CSV, over real HTTP."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from aggregator.aggregates import COUNTERS
from ingest_api.spend import MAX_RANGE_DAYS
from tests.integration.client_api import add_app, expect_error, midday_timezone, read_when
from tests.integration.harness import Tenant, org_settings, price, provision, usage

pytestmark = pytest.mark.integration

PREMIUM = (3_000_000, 15_000_000)
ECONOMY = (35_000, 140_000)


def post(http: httpx.Client, tenant: Tenant, app_id: str, events: list[dict[str, Any]]) -> None:
    r = http.post(
        f"/api/v1/orgs/{tenant.org_id}/apps/{app_id}/usage/batch", json={"items": events}, headers=tenant.org_headers()
    )
    assert r.status_code == 207 and r.json()["accepted"] == len(events), r.text


def csv_rows(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(r.text)))


def json_as_csv_rows(body: dict[str, Any]) -> list[dict[str, str]]:
    """The JSON answer flattened as the CSV states it: a row per day and label, its counters (the JSON's nested
    per-category breakdown is the same counters again)."""
    return [
        {"date": day["date"], "model_label": model["model_label"], **{k: str(model[k]) for k in COUNTERS}}
        for day in body["days"]
        for model in day["models"]
    ]


@dataclass(frozen=True)
class Spent:
    tenant: Tenant
    timezone: str
    today: date  # org-local
    costs: dict[str, int]  # per app and label


@pytest.fixture
def spent(http: httpx.Client) -> Spent:
    """A tenant with spend today in two apps."""
    timezone = midday_timezone()
    tenant = provision(http, org=org_settings(timezone=timezone))
    add_app(http, tenant.org_id, "app-two")
    post(http, tenant, "app-one", [usage("premium", 1000, 500), usage("economy", 40_000, 2000)])
    post(http, tenant, "app-two", [usage("premium", 10, 20)])
    headers = tenant.org_headers()
    today = read_when(
        http, f"/api/v1/orgs/{tenant.org_id}/aggregates/today", headers, lambda b: b["total"]["request_count"] == 3
    )
    costs = {
        "app-one-premium": price(1000, 500, *PREMIUM),
        "app-one-economy": price(40_000, 2000, *ECONOMY),
        "app-two-premium": price(10, 20, *PREMIUM),
    }
    return Spent(tenant, timezone, date.fromisoformat(today["date"]), costs)


def test_a_range_reports_each_org_local_day_per_label_for_the_org_and_for_an_app(
    http: httpx.Client, spent: Spent
) -> None:
    tenant, today, costs = spent.tenant, spent.today, spent.costs
    headers = tenant.org_headers()
    first = today - timedelta(days=2)
    query = {"from": first.isoformat(), "to": today.isoformat()}

    r = http.get(f"/api/v1/orgs/{tenant.org_id}/aggregates", params=query, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["org_id"], body["from"], body["to"]) == (tenant.org_id, first.isoformat(), today.isoformat())
    assert body["timezone"] == spent.timezone
    assert [d["date"] for d in body["days"]] == [(first + timedelta(days=i)).isoformat() for i in range(3)]
    # Every label on every day, in the org's order; the days before today are empty, not missing.
    for day in body["days"]:
        assert [m["model_label"] for m in day["models"]] == ["premium", "standard", "economy"]
    assert all(day["total"]["request_count"] == 0 for day in body["days"][:2])
    today_models = {m["model_label"]: m for m in body["days"][2]["models"]}
    assert today_models["premium"]["cost_usd_micros"] == costs["app-one-premium"] + costs["app-two-premium"]
    assert today_models["premium"]["input_tokens"] == 1010 and today_models["premium"]["request_count"] == 2
    assert today_models["economy"]["cost_usd_micros"] == costs["app-one-economy"]
    assert body["total"]["cost_usd_micros"] == sum(costs.values())
    assert {m["model_label"]: m["cost_usd_micros"] for m in body["models"]} == {
        "premium": costs["app-one-premium"] + costs["app-two-premium"],
        "standard": 0,
        "economy": costs["app-one-economy"],
    }
    # The range's today is the day the daily read calls today: both are the org's local day.
    daily = http.get(f"/api/v1/orgs/{tenant.org_id}/aggregates/today", headers=headers).json()
    assert body["days"][2]["total"] == daily["total"]

    r = http.get(f"{tenant.app_path}/aggregates", params=query, headers=tenant.app_headers())
    assert r.status_code == 200, r.text
    app = r.json()
    assert (app["org_id"], app["app_id"]) == (tenant.org_id, "app-one")
    assert app["total"]["cost_usd_micros"] == costs["app-one-premium"] + costs["app-one-economy"]
    assert {m["model_label"]: m["request_count"] for m in app["days"][2]["models"]} == {
        "premium": 1,
        "standard": 0,
        "economy": 1,
    }


def test_the_same_range_as_csv_by_format_or_accept(http: httpx.Client, spent: Spent) -> None:
    tenant, today = spent.tenant, spent.today
    headers = tenant.org_headers()
    path = f"/api/v1/orgs/{tenant.org_id}/aggregates"
    query = {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}
    as_json = http.get(path, params=query, headers=headers).json()

    by_format = http.get(path, params={**query, "format": "csv"}, headers=headers)
    assert by_format.text.splitlines()[0] == ",".join(["date", "model_label", *COUNTERS])
    assert 'filename="aggregates-' in by_format.headers["content-disposition"]
    rows = csv_rows(by_format)
    assert len(rows) == 2 * 3
    assert rows == json_as_csv_rows(as_json)
    assert csv_rows(http.get(path, params=query, headers={**headers, "Accept": "text/csv"})) == rows
    # An explicit format wins over the Accept header.
    explicit_json = http.get(path, params={**query, "format": "json"}, headers={**headers, "Accept": "text/csv"})
    assert explicit_json.headers["content-type"] == "application/json" and explicit_json.json() == as_json

    app_rows = csv_rows(http.get(f"{tenant.app_path}/aggregates", params={**query, "format": "csv"}, headers=headers))
    assert len(app_rows) == 2 * 3
    assert (
        sum(int(r["cost_usd_micros"]) for r in app_rows)
        == spent.costs["app-one-premium"] + spent.costs["app-one-economy"]
    )


def test_bad_ranges_are_refused_with_a_code_that_says_why(api: httpx.Client) -> None:
    tenant = provision(api)
    headers = tenant.org_headers()
    path = f"/api/v1/orgs/{tenant.org_id}/aggregates"
    start = date(2024, 1, 1)
    longest = {"from": start.isoformat(), "to": (start + timedelta(days=MAX_RANGE_DAYS - 1)).isoformat()}
    r = api.get(path, params=longest, headers=headers)
    assert r.status_code == 200 and len(r.json()["days"]) == MAX_RANGE_DAYS

    cases: list[tuple[dict[str, str], str]] = [
        ({}, "MISSING_DATE_RANGE"),
        ({"from": "2024-01-01"}, "MISSING_DATE_RANGE"),
        ({"to": "2024-01-01", "from": ""}, "MISSING_DATE_RANGE"),
        ({"from": "2024-01-01", "to": "2024-02-30"}, "INVALID_DATE"),
        ({"from": "20240101", "to": "2024-01-02"}, "INVALID_DATE"),
        ({"from": "2024-01-02", "to": "2024-01-01"}, "INVALID_DATE_RANGE"),
        ({**longest, "to": (start + timedelta(days=MAX_RANGE_DAYS)).isoformat()}, "DATE_RANGE_TOO_LONG"),
        ({"from": "0001-01-01", "to": "9999-12-31"}, "DATE_RANGE_TOO_LONG"),
        ({"from": "2024-01-01", "to": "2024-01-02", "format": "xml"}, "INVALID_FORMAT"),
    ]
    for params, code in cases:
        # Errors stay JSON whatever format was asked for.
        for accept in ("application/json", "text/csv"):
            expect_error(api.get(path, params=params, headers={**headers, "Accept": accept}), 400, code)
            expect_error(
                api.get(f"{tenant.app_path}/aggregates", params=params, headers={**headers, "Accept": accept}),
                400,
                code,
            )
