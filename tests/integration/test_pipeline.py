"""The main path end to end: POST usage -> SQS -> worker -> usage table -> stream -> aggregator -> aggregates."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from runtime.aws import AwsSettings
from tests.integration.harness import (
    ADMIN_KEY,
    eventually,
    org_settings,
    price,
    provision,
    usage,
    usage_items,
    wait_idle,
)

pytestmark = pytest.mark.integration

PREMIUM = (3_000_000, 15_000_000)
STANDARD = (800_000, 4_000_000)


def app_today(http: httpx.Client, tenant: Any, headers: dict[str, str]) -> dict[str, Any]:
    r = http.get(f"{tenant.app_path}/aggregates/today", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def app_today_when(
    http: httpx.Client, tenant: Any, headers: dict[str, str], requests: int, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Today's app aggregate, once it counts this many requests."""

    def ready() -> dict[str, Any] | None:
        body = app_today(http, tenant, headers)
        return body if body["total"]["request_count"] == requests else None

    return eventually(ready, timeout_s, 0.02)


def model_row(body: dict[str, Any], label: str) -> dict[str, Any]:
    return next(m for m in body["models"] if m["model_label"] == label)


def test_single_usage_reaches_the_daily_aggregate_with_exact_cost_within_two_seconds(
    http: httpx.Client, aws_settings: AwsSettings
) -> None:
    tenant = provision(http)
    headers = tenant.app_headers()
    event = usage("premium", input_tokens=1234, output_tokens=567, cache_read_tokens=1000, cache_write_tokens=10)
    posted = time.monotonic()
    r = http.post(f"{tenant.app_path}/usage", json=event, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "accepted", "request_id": event["request_id"]}

    expected = price(1234, 567, *PREMIUM, cr=1000, p_cr=300_000, cw=10, p_cw=3_750_000)
    body = app_today_when(http, tenant, headers, 1)
    lag_s = time.monotonic() - posted
    assert lag_s < 2.0, f"aggregate visible after {lag_s:.2f}s"
    row = model_row(body, "premium")
    # 3702 + 8505 + 300 + 37.5 micro-USD: the half rounds up, once, on the request total.
    assert row["cost_usd_micros"] == expected == 12_545
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        1234,
        567,
        1000,
        10,
    )
    assert row["request_count"] == 1
    assert body["total"]["cost_usd_micros"] == expected

    [item] = usage_items(aws_settings, tenant.org_id)
    assert item["request_id"] == event["request_id"]
    assert item["cost_usd_micros"] == expected
    assert item["price_version"] == 1
    assert item["bedrock_model_id"] == "anthropic.claude-sonnet"
    assert item["model_label"] == "premium"
    assert item["app_id"] == tenant.app_id


def test_batch_usage_is_priced_per_item_and_summed_per_model(http: httpx.Client, aws_settings: AwsSettings) -> None:
    tenant = provision(http)
    headers = tenant.app_headers()
    events = [usage("premium", 100 * i, 10 * i) for i in range(1, 31)] + [
        usage("standard", 2000 + i, 300) for i in range(20)
    ]
    r = http.post(f"{tenant.app_path}/usage/batch", json={"items": events}, headers=headers)
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["accepted"] == 50 and body["rejected"] == 0
    assert [x["status"] for x in body["results"]] == [202] * 50

    premium = sum(price(100 * i, 10 * i, *PREMIUM) for i in range(1, 31))
    standard = sum(price(2000 + i, 300, *STANDARD) for i in range(20))
    agg = app_today_when(http, tenant, headers, 50)
    assert model_row(agg, "premium")["cost_usd_micros"] == premium
    assert model_row(agg, "premium")["request_count"] == 30
    assert model_row(agg, "standard")["cost_usd_micros"] == standard
    assert model_row(agg, "standard")["input_tokens"] == sum(2000 + i for i in range(20))
    assert agg["total"]["cost_usd_micros"] == premium + standard
    assert len(usage_items(aws_settings, tenant.org_id)) == 50


def test_a_duplicate_request_id_counts_once(http: httpx.Client, aws_settings: AwsSettings) -> None:
    tenant = provision(http)
    headers = tenant.app_headers()
    event = usage("standard", 5000, 1000)
    for _ in range(3):
        assert http.post(f"{tenant.app_path}/usage", json=event, headers=headers).status_code == 202
    r = http.post(f"{tenant.app_path}/usage/batch", json={"items": [event, usage("standard", 1, 1)]}, headers=headers)
    assert r.json()["accepted"] == 2
    wait_idle(aws_settings)
    agg = app_today(http, tenant, headers)
    assert model_row(agg, "standard")["request_count"] == 2
    assert model_row(agg, "standard")["cost_usd_micros"] == price(5000, 1000, *STANDARD) + price(1, 1, *STANDARD)
    assert len(usage_items(aws_settings, tenant.org_id)) == 2


def test_the_same_request_id_in_two_apps_is_two_requests(http: httpx.Client, aws_settings: AwsSettings) -> None:
    tenant = provision(http)
    r = http.put(f"/api/v1/orgs/{tenant.org_id}/apps/app-two", json={}, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 201
    org_headers = tenant.org_headers()
    event = usage("economy", 10_000, 10_000)
    for app in (tenant.app_id, "app-two"):
        r = http.post(f"/api/v1/orgs/{tenant.org_id}/apps/{app}/usage", json=event, headers=org_headers)
        assert r.status_code == 202
    wait_idle(aws_settings)
    r = http.get(f"/api/v1/orgs/{tenant.org_id}/aggregates/today", headers=org_headers)
    assert model_row(r.json(), "economy")["request_count"] == 2
    assert r.json()["apps"] == ["app-one", "app-two"]


def test_aggregates_fall_on_the_org_local_day(http: httpx.Client, aws_settings: AwsSettings) -> None:
    # Kiritimati is UTC+14: its local day differs from the UTC day for 14 hours of every UTC day.
    tenant = provision(http, org=org_settings(timezone="Pacific/Kiritimati"))
    headers = tenant.app_headers()
    event = usage("premium", 1000, 0)
    assert http.post(f"{tenant.app_path}/usage", json=event, headers=headers).status_code == 202
    wait_idle(aws_settings)
    local_day = (datetime.now(UTC) + timedelta(hours=14)).date().isoformat()
    body = app_today(http, tenant, headers)
    assert body["date"] == local_day
    assert body["timezone"] == "Pacific/Kiritimati"
    assert model_row(body, "premium")["cost_usd_micros"] == 3000
    by_date = http.get(f"{tenant.app_path}/aggregates/{local_day}", headers=headers).json()
    assert model_row(by_date, "premium")["cost_usd_micros"] == 3000
    [item] = usage_items(aws_settings, tenant.org_id)
    assert item["org_timezone"] == "Pacific/Kiritimati"


def test_usage_is_priced_with_the_prices_in_force_at_its_timestamp(
    http: httpx.Client, aws_settings: AwsSettings
) -> None:
    tenant = provision(http)
    headers = tenant.app_headers()

    def post(label: str, timestamp: datetime) -> None:
        event = {**usage(label, 1_000_000, 0), "timestamp": timestamp.isoformat()}
        r = http.post(f"{tenant.app_path}/usage", json=event, headers=headers)
        assert r.status_code == 202, r.text

    before_change = datetime.now(UTC)
    post("economy", before_change)
    wait_idle(aws_settings)
    doubled = org_settings()
    doubled["models"]["economy"]["prices"]["input_per_mtok_usd_micros"] = 70_000
    r = http.put(f"/api/v1/orgs/{tenant.org_id}", json=doubled, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 200 and r.json()["price_version"] == 2
    # In force after the notice period (1 s in tests, 5 minutes by default), when every worker has read it.
    effective_from = datetime.fromisoformat(r.json()["prices_effective_from"])
    assert effective_from > before_change
    # A call made before the change, reported after it (a backlog, a retry, a redrive): the old price.
    post("economy", before_change + timedelta(milliseconds=1))
    while datetime.now(UTC) <= effective_from:
        time.sleep(0.1)
    post("economy", datetime.now(UTC))
    wait_idle(aws_settings)
    items = sorted(usage_items(aws_settings, tenant.org_id), key=lambda i: (i["price_version"], i["timestamp"]))
    assert [(i["price_version"], i["cost_usd_micros"]) for i in items] == [(1, 35_000), (1, 35_000), (2, 70_000)]
    assert model_row(app_today(http, tenant, headers), "economy")["cost_usd_micros"] == 140_000
