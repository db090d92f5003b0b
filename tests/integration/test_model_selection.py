"""Quota-aware model selection end to end: spend posted as usage, rolled up by the aggregator, read back as the
model to use, in ORG and APP quota scope, down to 429 once every label of the ordering is spent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.integration.client_api import (
    ADMIN,
    add_app,
    bearer,
    expect_error,
    midday_timezone,
    read_when,
    row,
    token_pair,
)
from tests.integration.harness import Tenant, org_settings, price, provision, usage

pytestmark = pytest.mark.integration

PREMIUM = (3_000_000, 15_000_000)
QUOTAS = {"premium": 1_000_000, "standard": 500_000, "economy": 100_000}


def walk_settings(**kwargs: Any) -> dict[str, Any]:
    """These walks spend a quota in a few large events, beyond the default per-event cap: the org raises its cap, as
    an org with such calls would (catalog/token_caps.py)."""
    return {**org_settings(**kwargs), "max_tokens_per_event": {"input_tokens": 10**9}}


class Walk:
    """One org's spend and selections, as its apps see them."""

    def __init__(self, http: httpx.Client, tenant: Tenant) -> None:
        self.http = http
        self.tenant = tenant
        self.org_headers = tenant.org_headers()

    def app_headers(self, app_id: str, secret: str) -> dict[str, str]:
        client_id = f"org-{self.tenant.org_id}-app-{app_id}"
        return bearer(token_pair(self.http, client_id, secret)["access_token"])

    def spend(self, app_id: str, label: str, input_tokens: int, org_label_cost: int) -> None:
        """Post usage and wait until the org's aggregate for the label shows the expected total."""
        path = f"/api/v1/orgs/{self.tenant.org_id}/apps/{app_id}/usage"
        r = self.http.post(path, json=usage(label, input_tokens, 0), headers=self.org_headers)
        assert r.status_code == 202, r.text
        body = read_when(
            self.http,
            f"/api/v1/orgs/{self.tenant.org_id}/aggregates/today",
            self.org_headers,
            lambda b: row(b, label)["cost_usd_micros"] >= org_label_cost,
        )
        assert row(body, label)["cost_usd_micros"] == org_label_cost

    def select(self, app_id: str, headers: dict[str, str]) -> httpx.Response:
        return self.http.get(f"/api/v1/orgs/{self.tenant.org_id}/apps/{app_id}/model-selection", headers=headers)


def chosen(r: httpx.Response, label: str, mode: str, position: int) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = dict(r.json())
    assert (body["model_label"], body["mode"], body["position"]) == (label, mode, position), body
    assert body["fallback"] == (position > 0)
    max_age = 60 if mode == "TIGHT" else 300
    assert r.headers["cache-control"] == f"private, max-age={max_age}"
    return body


def status(body: dict[str, Any], label: str) -> dict[str, Any]:
    return dict(next(s for s in body["labels"] if s["model_label"] == label))


def seconds_to_local_midnight(timezone: str) -> float:
    now = datetime.now(ZoneInfo(timezone))
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), ZoneInfo(timezone))
    return (midnight - now.astimezone(UTC)).total_seconds()


def test_org_scope_walk_from_token_to_quota_exceeded(http: httpx.Client) -> None:
    timezone = midday_timezone()
    tenant = provision(
        http, org=walk_settings(timezone=timezone), app={"daily_quotas_usd_micros": {"standard": 400_000}}
    )
    two_secret = add_app(http, tenant.org_id, "app-two")
    walk = Walk(http, tenant)
    one, two = tenant.app_headers(), walk.app_headers("app-two", two_secret)

    # A fresh day: the first label, plenty of headroom, a long cache.
    body = chosen(walk.select("app-one", one), "premium", "NORMAL", 0)
    assert body["bedrock_model_id"] == "anthropic.claude-sonnet"
    assert body["ordering"] == ["premium", "standard", "economy"]
    assert body["tight_threshold_percent"] == 95.0
    assert status(body, "premium") == {
        "model_label": "premium",
        "available": True,
        "quota_used_percent": 0.0,
        "caps": [{"scope": "org", "spend_usd_micros": 0, "quota_usd_micros": 1_000_000}],
    }
    # ORG scope with an app quota: the app's own cap comes on top of the org's.
    assert [c["scope"] for c in status(body, "standard")["caps"]] == ["org", "app"]

    # Usage -> aggregates, priced exactly: 1234 * $3 + 567 * $15 per million tokens.
    r = http.post(f"{tenant.app_path}/usage", json=usage("premium", 1234, 567), headers=one)
    assert r.status_code == 202, r.text
    agg = read_when(http, f"{tenant.app_path}/aggregates/today", one, lambda b: b["total"]["request_count"] == 1)
    assert row(agg, "premium")["cost_usd_micros"] == price(1234, 567, *PREMIUM) == 12_207
    spent = 12_207

    # The sibling app spends the org up to 96% of the premium quota: in ORG scope that is app-one's cap too.
    walk.spend("app-two", "premium", 315_931, spent + 947_793)
    body = chosen(walk.select("app-one", one), "premium", "TIGHT", 0)
    assert status(body, "premium")["quota_used_percent"] == 96.0
    assert status(body, "premium")["caps"][0]["spend_usd_micros"] == 960_000

    # Past the quota: fall back to standard, no longer tight.
    walk.spend("app-one", "premium", 13_334, 1_000_002)
    body = chosen(walk.select("app-one", one), "standard", "NORMAL", 1)
    assert body["bedrock_model_id"] == "anthropic.claude-haiku"
    assert status(body, "premium")["available"] is False

    # The org raises the premium quota the same day: app-one stays on standard (sticky) although premium has room.
    raised = walk_settings(timezone=timezone, quotas={**QUOTAS, "premium": 50_000_000})
    assert http.put(f"/api/v1/orgs/{tenant.org_id}", json=raised, headers=ADMIN).status_code == 200
    body = read_when(http, f"{tenant.app_path}/model-selection", one, lambda b: status(b, "premium")["available"])
    assert (body["model_label"], body["position"], body["fallback"]) == ("standard", 1, True)
    # Stickiness is per app: app-two never fell back today, so it gets premium again.
    chosen(walk.select("app-two", two), "premium", "NORMAL", 0)

    # app-one's own standard cap (400_000 of the org's 500_000) runs out first: economy.
    walk.spend("app-one", "standard", 500_000, 400_000)
    body = chosen(walk.select("app-one", one), "economy", "NORMAL", 2)
    standard = status(body, "standard")
    assert standard["available"] is False and standard["quota_used_percent"] == 100.0
    assert standard["caps"] == [
        {"scope": "org", "spend_usd_micros": 400_000, "quota_usd_micros": 500_000},
        {"scope": "app", "spend_usd_micros": 400_000, "quota_usd_micros": 400_000},
    ]

    # Economy spent too (2_857_143 tokens at $0.035 per million round to exactly $0.10): nothing left.
    walk.spend("app-one", "economy", 2_857_143, 100_000)
    expected_retry_s = seconds_to_local_midnight(timezone)
    r = walk.select("app-one", one)
    error = expect_error(r, 429, "QUOTA_EXCEEDED")
    assert abs(int(r.headers["retry-after"]) - expected_retry_s) <= 5
    assert r.headers["cache-control"] == "private, max-age=60"
    labels = {s["model_label"]: s["available"] for s in error["details"]["labels"]}
    assert labels == {"premium": True, "standard": False, "economy": False}
    assert error["details"]["date"] == datetime.now(ZoneInfo(timezone)).date().isoformat()
    # Still answered, and still 429, on the next call.
    expect_error(walk.select("app-one", one), 429, "QUOTA_EXCEEDED")
    # The sibling, never fallen back today, still gets premium under the raised quota.
    chosen(walk.select("app-two", two), "premium", "NORMAL", 0)


def test_app_scope_caps_each_app_on_its_own_spend(http: httpx.Client) -> None:
    tenant = provision(
        http,
        org=walk_settings(timezone=midday_timezone(), scope="APP"),
        app={"daily_quotas_usd_micros": {"premium": 200_000}},
    )
    two_secret = add_app(http, tenant.org_id, "app-two")
    walk = Walk(http, tenant)
    one, two = tenant.app_headers(), walk.app_headers("app-two", two_secret)

    # app-two exhausts its premium quota, which is the org's quota used as the per-app default.
    walk.spend("app-two", "premium", 333_334, 1_000_002)
    body = chosen(walk.select("app-two", two), "standard", "NORMAL", 1)
    assert status(body, "premium")["caps"] == [
        {"scope": "app", "spend_usd_micros": 1_000_002, "quota_usd_micros": 1_000_000}
    ]
    # The org as a whole is past 1_000_000 of premium, but in APP scope that caps nobody: app-one is untouched.
    body = chosen(walk.select("app-one", one), "premium", "NORMAL", 0)
    assert status(body, "premium")["caps"] == [{"scope": "app", "spend_usd_micros": 0, "quota_usd_micros": 200_000}]

    # app-one's own quota of 200_000: tight at 95%, then exhausted.
    walk.spend("app-one", "premium", 63_334, 1_000_002 + 190_002)
    chosen(walk.select("app-one", one), "premium", "TIGHT", 0)
    walk.spend("app-one", "premium", 3_334, 1_000_002 + 200_004)
    chosen(walk.select("app-one", one), "standard", "NORMAL", 1)

    # Aggregates carry each app's quota in APP scope, and none org-wide.
    one_agg = http.get(f"{tenant.app_path}/aggregates/today", headers=one).json()
    two_agg = http.get(f"/api/v1/orgs/{tenant.org_id}/apps/app-two/aggregates/today", headers=two).json()
    assert (row(one_agg, "premium")["quota_usd_micros"], row(one_agg, "premium")["quota_used_percent"]) == (
        200_000,
        100.0,
    )
    assert row(one_agg, "standard")["quota_usd_micros"] == 500_000
    assert (row(two_agg, "premium")["quota_usd_micros"], row(two_agg, "premium")["quota_used_percent"]) == (
        1_000_000,
        100.0,
    )
    org_agg = http.get(f"/api/v1/orgs/{tenant.org_id}/aggregates/today", headers=walk.org_headers).json()
    assert org_agg["quota_scope"] == "APP"
    assert all(m["quota_usd_micros"] is None for m in org_agg["models"])
    assert row(org_agg, "premium")["cost_usd_micros"] == 1_200_006


def test_selection_of_an_unknown_app_is_404(api: httpx.Client) -> None:
    tenant = provision(api)
    org_headers = tenant.org_headers()
    r = api.get(f"/api/v1/orgs/{tenant.org_id}/apps/app-nine/model-selection", headers=org_headers)
    expect_error(r, 404, "APP_NOT_FOUND")
