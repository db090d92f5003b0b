"""Bedrock's billing dimensions end to end: cache TTLs, service tiers, batch, inference profiles by calling Region,
a Converse usage block posted verbatim, and the earlier service's payload; posted -> priced -> aggregated exactly."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from runtime.aws import AwsSettings
from tests.integration.client_api import ADMIN, expect_error, midday_timezone
from tests.integration.harness import Tenant, eventually, provision, usage_items, wait_idle

pytestmark = pytest.mark.integration

SONNET_ID = "anthropic.claude-sonnet-4-20250514-v1:0"
PROFILE_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
APP_PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/support-bot-42"
# Sonnet 4: $3 / $15 per 1M, cache read $0.30, cache write $3.75 (5 min) / $6 (1 h); Priority at $5.25 / $26.25.
SONNET = {
    "input_per_mtok_usd_micros": 3_000_000,
    "output_per_mtok_usd_micros": 15_000_000,
    "cache_read_per_mtok_usd_micros": 300_000,
    "cache_write_per_mtok_usd_micros": 3_750_000,
    "cache_write_1h_per_mtok_usd_micros": 6_000_000,
}


def org_settings() -> dict[str, Any]:
    return {
        "name": "Billing dimensions",
        "timezone": midday_timezone(),
        "models": {
            "premium": {
                "bedrock_model_id": SONNET_ID,
                "prices": SONNET,
                "priority_prices": {
                    **SONNET,
                    "input_per_mtok_usd_micros": 5_250_000,
                    "output_per_mtok_usd_micros": 26_250_000,
                },
                "batch_discount_percent": 50,
            },
            # Priced from the catalog shipped with the service: Standard, Priority, Flex and batch.
            "economy": {"catalog_model": "amazon.nova-pro-v1:0"},
        },
        "model_ordering": ["premium", "economy"],
        "daily_quotas_usd_micros": {"premium": 5_000_000, "economy": 5_000_000},
    }


def profile_body(label: str = "sonnet-us", profile_id: str = PROFILE_ID) -> dict[str, Any]:
    return {
        "profile_label": label,
        "inference_profile_id": profile_id,
        "description": "Sonnet 4 across US Regions",
        "regions": {
            "us-east-1": {"bedrock_model_id": SONNET_ID, "prices": SONNET},
            "us-west-2": {
                "bedrock_model_id": SONNET_ID,
                "prices": {"input_per_mtok_usd_micros": 3_300_000, "output_per_mtok_usd_micros": 16_500_000},
            },
        },
    }


def event(label: str, **fields: Any) -> dict[str, Any]:
    return {"request_id": str(uuid.uuid4()), "model_label": label, "timestamp": datetime.now(UTC).isoformat(), **fields}


@pytest.fixture
def tenant(api: httpx.Client) -> Tenant:
    return provision(api, org=org_settings(), app={"name": "Bot"})


def register(tenant: Tenant, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    path = f"{tenant.app_path}/inference-profiles"
    return tenant.http.post(path, json=body, headers=headers or tenant.org_headers())


def test_profiles_are_registered_read_and_deleted_with_tenant_checks(api: httpx.Client, tenant: Tenant) -> None:
    path = f"{tenant.app_path}/inference-profiles"
    app_headers, org_headers = tenant.app_headers(), tenant.org_headers()
    # An app token reads, but does not set its own prices.
    expect_error(register(tenant, profile_body(), app_headers), 403, "FORBIDDEN")
    r = register(tenant, profile_body())
    assert r.status_code == 201, r.text
    assert r.json()["supported_regions"] == ["us-east-1", "us-west-2"]
    assert register(tenant, {**profile_body(), "description": "replaced"}).status_code == 200
    # The earlier service's field name for the id, and an application inference profile's ARN.
    legacy = {**profile_body("support"), "inference_profile_arn": APP_PROFILE_ARN}
    del legacy["inference_profile_id"]
    assert register(tenant, legacy).status_code == 201
    listed = api.get(path, headers=app_headers).json()["profiles"]
    assert [(p["profile_label"], p["inference_profile_id"]) for p in listed] == [
        ("sonnet-us", PROFILE_ID),
        ("support", APP_PROFILE_ARN),
    ]
    assert api.get(f"{path}/sonnet-us", headers=app_headers).json()["description"] == "replaced"
    expect_error(api.get(f"{path}/nope", headers=app_headers), 404, "PROFILE_NOT_FOUND")

    other = provision(api, org=org_settings())
    expect_error(api.get(path, headers=other.org_headers()), 403, "FORBIDDEN")
    expect_error(register(tenant, profile_body(), other.org_headers()), 403, "FORBIDDEN")
    expect_error(api.delete(f"{path}/sonnet-us", headers=other.org_headers()), 403, "FORBIDDEN")

    expect_error(register(tenant, profile_body("premium")), 409, "LABEL_CONFLICT")
    expect_error(register(tenant, {**profile_body(), "inference_profile_id": "not-a-profile"}), 422, "VALIDATION_ERROR")
    expect_error(register(tenant, {**profile_body(), "verify": True}), 422, "PROFILE_CHECK_DISABLED")

    # A profile the app's ordering names cannot go; once the ordering moves on, it can.
    r = api.put(tenant.app_path, json={"model_ordering": ["sonnet-us", "premium"]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    expect_error(api.delete(f"{path}/sonnet-us", headers=org_headers), 409, "LABEL_IN_USE")
    assert api.put(tenant.app_path, json={"model_ordering": ["premium"]}, headers=ADMIN).status_code == 200
    assert api.delete(f"{path}/sonnet-us", headers=org_headers).status_code == 204
    expect_error(api.get(f"{path}/sonnet-us", headers=app_headers), 404, "PROFILE_NOT_FOUND")


def test_a_profile_call_is_priced_with_the_profile_prices_in_force_at_its_timestamp(
    api: httpx.Client, tenant: Tenant, aws_settings: AwsSettings
) -> None:
    r = register(tenant, profile_body())
    assert r.status_code == 201 and r.json()["price_version"] == 2, r.text  # version 1: no profiles
    headers = tenant.app_headers()

    def post(timestamp: datetime) -> None:
        call = event("sonnet-us", calling_region="us-east-1", input_tokens=1_000_000, output_tokens=0)
        r = api.post(f"{tenant.app_path}/usage", json={**call, "timestamp": timestamp.isoformat()}, headers=headers)
        assert r.status_code == 202, r.text

    before_change = datetime.now(UTC)
    doubled = profile_body()
    doubled["regions"]["us-east-1"]["prices"] = {**SONNET, "input_per_mtok_usd_micros": 6_000_000}
    r = register(tenant, doubled)
    assert r.status_code == 200 and r.json()["price_version"] == 3, r.text
    effective_from = datetime.fromisoformat(r.json()["prices_effective_from"])
    assert effective_from > before_change
    post(before_change)  # a call made before the change, reported after it: the price then
    while datetime.now(UTC) <= effective_from:
        time.sleep(0.1)
    post(datetime.now(UTC))
    wait_idle(aws_settings)
    items = sorted(usage_items(aws_settings, tenant.org_id), key=lambda i: i["price_version"])
    assert [(i["price_version"], i["cost_usd_micros"]) for i in items] == [(2, 3_000_000), (3, 6_000_000)]


def test_every_dimension_is_priced_exactly_and_aggregated_per_category(api: httpx.Client, tenant: Tenant) -> None:
    assert register(tenant, profile_body()).status_code == 201
    headers = tenant.app_headers()
    converse_usage = {
        "inputTokens": 120,
        "outputTokens": 480,
        "totalTokens": 4_600,
        "cacheReadInputTokens": 2_000,
        "cacheWriteInputTokens": 2_000,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 1_500}, {"ttl": "5m", "inputTokens": 500}],
    }
    posts = [
        # Every category at Standard: 3000 + 7500 + 600 + 3750 + 6000.
        (
            event(
                "premium",
                input_tokens=1_000,
                output_tokens=500,
                cache_read_tokens=2_000,
                cache_write_tokens=1_000,
                cache_write_1h_tokens=1_000,
            ),
            20_850,
        ),
        # Priority: 1000 x $5.25/M + 500 x $26.25/M.
        (event("premium", input_tokens=1_000, output_tokens=500, service_tier="priority"), 18_375),
        # Batch, 50% off Standard: (3000 + 7500) / 2.
        (event("premium", input_tokens=1_000, output_tokens=500, batch=True), 5_250),
        # A Converse response's usage and serviceTier, verbatim: 360 + 7200 + 600 + 1875 + 9000.
        (event("premium", usage=converse_usage, serviceTier={"type": "default"}), 19_035),
        # Nova Pro from the catalog, Flex at half of $0.80 / $3.20: 10000 x $0.40/M + 1000 x $1.60/M.
        (event("economy", input_tokens=10_000, output_tokens=1_000, service_tier="flex"), 5_600),
    ]
    for body, _ in posts:
        r = api.post(f"{tenant.app_path}/usage", json=body, headers=headers)
        assert r.status_code == 202, r.text
    # The profile label, priced by the Region that served each call: 3000 + 7500, then 3300 + 8250.
    profile_calls = [
        (
            event(
                "sonnet-us",
                input_tokens=1_000,
                output_tokens=500,
                calling_region="us-east-1",
                bedrock_model_id=SONNET_ID,
            ),
            10_500,
        ),
        (
            event(
                "sonnet-us",
                input_tokens=1_000,
                output_tokens=500,
                calling_region="us-west-2",
                bedrock_model_id=PROFILE_ID,
            ),
            11_550,
        ),
    ]
    # The earlier service's batch body (`requests`) and payload, one call of them an ERROR.
    reference = [
        (
            event(
                "premium",
                bedrock_model_id=SONNET_ID,
                calling_region="us-east-1",
                input_tokens=1_500,
                output_tokens=800,
                status="OK",
            ),
            16_500,
        ),
        (event("premium", bedrock_model_id=SONNET_ID, input_tokens=100, output_tokens=0, status="ERROR"), 300),
    ]
    r = api.post(
        f"{tenant.app_path}/usage/batch", json={"requests": [b for b, _ in profile_calls + reference]}, headers=headers
    )
    assert r.status_code == 207, r.text
    assert (r.json()["accepted"], r.json()["failed"]) == (4, 0)

    def aggregate() -> dict[str, Any] | None:
        body = api.get(f"{tenant.app_path}/aggregates/today", headers=headers).json()
        return body if body["total"]["request_count"] == 9 else None

    body = eventually(aggregate, 20.0)
    rows = {row["model_label"]: row for row in body["models"]}
    premium = [c for b, c in posts[:4] + reference]
    assert rows["premium"]["cost_usd_micros"] == sum(premium) == 80_310
    assert rows["premium"]["error_count"] == 1 and rows["premium"]["request_count"] == 6
    assert rows["economy"]["cost_usd_micros"] == 5_600
    assert rows["sonnet-us"]["cost_usd_micros"] == 22_050 and rows["sonnet-us"]["request_count"] == 2
    # Per category, exactly: the 1-hour writes of the first call (6000) and of the Converse block (9000).
    assert rows["premium"]["by_category"]["cache_write_1h"] == {"tokens": 2_500, "cost_usd_micros": 15_000}
    for row in rows.values():
        assert sum(c["cost_usd_micros"] for c in row["by_category"].values()) == row["cost_usd_micros"]
    assert body["total"]["cost_usd_micros"] == 80_310 + 5_600 + 22_050


def test_what_would_pick_another_price_is_refused(api: httpx.Client, tenant: Tenant) -> None:
    assert register(tenant, profile_body()).status_code == 201
    headers = tenant.app_headers()

    def post(body: dict[str, Any]) -> httpx.Response:
        return api.post(f"{tenant.app_path}/usage", json=body, headers=headers)

    expect_error(
        post(event("premium", bedrock_model_id="amazon.nova-micro-v1:0", input_tokens=5)), 400, "MODEL_MISMATCH"
    )
    expect_error(post(event("premium", service_tier="flex", input_tokens=5)), 422, "SERVICE_TIER_NOT_PRICED")
    expect_error(post(event("sonnet-us", input_tokens=5)), 422, "CALLING_REGION_REQUIRED")
    expect_error(post(event("sonnet-us", calling_region="eu-west-1", input_tokens=5)), 422, "UNKNOWN_CALLING_REGION")
    r = api.post(
        f"{tenant.app_path}/usage/batch",
        json={"items": [event("premium", bedrock_model_id="amazon.nova-micro-v1:0"), event("premium")]},
        headers=headers,
    )
    assert [x["status"] for x in r.json()["results"]] == [400, 202]
    assert r.json()["results"][0]["error"]["code"] == "MODEL_MISMATCH"


def test_model_selection_names_the_profile_and_its_prices(api: httpx.Client, tenant: Tenant) -> None:
    assert register(tenant, profile_body()).status_code == 201
    r = api.put(tenant.app_path, json={"model_ordering": ["sonnet-us", "premium"]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    choice = api.get(f"{tenant.app_path}/model-selection", headers=tenant.app_headers()).json()
    assert (choice["model_label"], choice["bedrock_model_id"]) == ("sonnet-us", PROFILE_ID)
    assert choice["pricing"]["regions"]["us-west-2"]["prices"]["input_per_mtok_usd_micros"] == 3_300_000
    assert [label["model_label"] for label in choice["labels"]] == ["sonnet-us", "premium"]
    # Once its quota is used, the app falls back to the org's model, with its own prices.
    r = api.put(
        tenant.app_path,
        json={"model_ordering": ["sonnet-us", "premium"], "daily_quotas_usd_micros": {"sonnet-us": 0}},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text

    def fell_back() -> dict[str, Any] | None:
        body = api.get(f"{tenant.app_path}/model-selection", headers=tenant.app_headers()).json()
        return body if body["model_label"] == "premium" else None

    choice = eventually(fell_back, 5.0)
    assert choice["bedrock_model_id"] == SONNET_ID and choice["fallback"] is True
    assert choice["pricing"]["batch_discount_percent"] == 50
