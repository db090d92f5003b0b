"""Rate limits trip and recover, against an API of each test's own (with tight limits over two-second windows) that
shares the session's tables: guessing credentials, admin keys and claim links, and flooding usage and reads."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.client_api import ADMIN, bearer, expect_error
from tests.integration.harness import Tenant, eventually, provision, usage
from tests.integration.own_api import OwnApis

pytestmark = pytest.mark.integration

# Sliding windows of two seconds: a spent budget is whole again within two windows.
RECOVERY_S = 10.0


def expect_limited(r: httpx.Response, limit: int) -> None:
    expect_error(r, 429, "RATE_LIMITED")
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-limit"] == str(limit)
    assert int(r.headers["x-ratelimit-remaining"]) >= 0
    assert int(r.headers["x-ratelimit-reset"]) >= 1


def token_status(http: httpx.Client, client_id: str, secret: str) -> int:
    return http.post("/auth/token", data={"client_id": client_id, "client_secret": secret}).status_code


def test_wrong_secrets_spend_a_client_ids_budget_faster_and_it_recovers(api: httpx.Client, own_api: OwnApis) -> None:
    tenant, other = provision(api), provision(api)
    http = own_api(CK_RATE_AUTH_PER_CLIENT="10 per 2 seconds")
    assert token_status(http, tenant.app_client_id, tenant.app_secret) == 200
    # Two wrong secrets cost 5 each: the budget ten good requests would have had is gone.
    for _ in range(2):
        expect_error(
            http.post("/auth/token", data={"client_id": tenant.app_client_id, "client_secret": "cks_guess"}),
            401,
            "INVALID_CLIENT",
        )
    r = http.post("/auth/token", data={"client_id": tenant.app_client_id, "client_secret": tenant.app_secret})
    expect_limited(r, 10)
    # Refresh is counted against the same client id; another client is not affected.
    assert token_status(http, other.app_client_id, other.app_secret) == 200
    eventually(lambda: token_status(http, tenant.app_client_id, tenant.app_secret) == 200, RECOVERY_S, 0.25)


def test_one_address_guessing_many_client_ids_is_stopped_and_recovers(api: httpx.Client, own_api: OwnApis) -> None:
    tenant = provision(api)
    http = own_api(CK_RATE_AUTH_PER_ADDRESS="20 per 2 seconds")
    for n in range(4):
        r = http.post("/auth/token", data={"client_id": f"org-guess-{n}", "client_secret": "x"})
        expect_error(r, 401, "INVALID_CLIENT")
    expect_limited(http.post("/auth/token", data={"client_id": tenant.app_client_id, "client_secret": "x"}), 20)
    expect_limited(http.post("/auth/refresh", data={"refresh_token": "x"}), 20)
    eventually(lambda: token_status(http, tenant.app_client_id, tenant.app_secret) == 200, RECOVERY_S, 0.25)


def test_wrong_admin_keys_lock_the_address_out_for_a_while(api: httpx.Client, own_api: OwnApis) -> None:
    tenant = provision(api)
    http = own_api(CK_RATE_ADMIN_FAILURES_PER_ADDRESS="3 per 2 seconds")
    org_path = f"/api/v1/orgs/{tenant.org_id}"
    for _ in range(10):  # the right key costs nothing
        assert http.get(org_path, headers=ADMIN).status_code == 200
    expect_error(http.get(org_path, headers={"X-API-Key": "guess-" + "x" * 40}), 401, "INVALID_API_KEY")
    # One failure costs 5, more than the whole budget: the address is locked out, the right key included.
    expect_limited(http.get(org_path, headers=ADMIN), 3)
    eventually(lambda: http.get(org_path, headers=ADMIN).status_code == 200, RECOVERY_S, 0.25)


def test_guessing_claim_links_is_stopped(own_api: OwnApis) -> None:
    http = own_api(CK_RATE_CLAIMS_PER_ADDRESS="10 per 2 seconds")
    claim = "/api/v1/secrets/" + "g" * 43
    for _ in range(2):
        expect_error(http.post(claim), 404, "SECRET_NOT_FOUND")
    expect_limited(http.post(claim), 10)
    eventually(lambda: http.post(claim).status_code == 404, RECOVERY_S, 0.25)


def test_usage_and_reads_are_limited_per_client_with_per_org_overrides(api: httpx.Client, own_api: OwnApis) -> None:
    tight, default = provision(api), provision(api)
    http = own_api(
        CK_RATE_USAGE_PER_CLIENT="6 per 2 seconds",
        CK_RATE_READS_PER_CLIENT="4 per 2 seconds",
        CK_RATE_LIMIT_ORG_OVERRIDES=json.dumps({tight.org_id: {"usage": "2 per 2 seconds"}}),
    )

    def post(tenant: Tenant, token: str) -> httpx.Response:
        return http.post(f"{tenant.app_path}/usage", json=usage(), headers=bearer(token))

    def read(tenant: Tenant, token: str) -> httpx.Response:
        return http.get(f"{tenant.app_path}/aggregates/today", headers=bearer(token))

    tight_token, default_token = tight.token(), default.token()
    assert [post(tight, tight_token).status_code for _ in range(2)] == [202, 202]
    expect_limited(post(tight, tight_token), 2)
    assert [post(default, default_token).status_code for _ in range(6)] == [202] * 6
    expect_limited(post(default, default_token), 6)
    # Reads have a budget of their own, the default one for both orgs.
    assert [read(tight, tight_token).status_code for _ in range(4)] == [200] * 4
    expect_limited(read(tight, tight_token), 4)
    eventually(lambda: post(tight, tight_token).status_code == 202, RECOVERY_S, 0.25)
    eventually(lambda: read(tight, tight_token).status_code == 200, RECOVERY_S, 0.25)
