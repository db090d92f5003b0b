"""OAuth2 client credentials over real HTTP: token in every accepted form, refresh rotation, revocation, expiry,
forged tokens, and credential rotation with and without a grace period."""

from __future__ import annotations

import base64
import time

import httpx
import jwt
import pytest

from runtime.aws import AwsSettings
from tests.integration.client_api import ADMIN, bearer, expect_error, mint, token_pair
from tests.integration.harness import Tenant, eventually, provision

pytestmark = pytest.mark.integration

# The API's default CK_REVOCATION_CACHE_TTL_S: how long it trusts a "not revoked" answer from the table.
REVOCATION_CACHE_S = 2.0


def can_read(http: httpx.Client, tenant: Tenant, access_token: str) -> bool:
    r = http.get(f"{tenant.app_path}/aggregates/today", headers=bearer(access_token))
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def authenticates(http: httpx.Client, client_id: str, secret: str) -> bool:
    r = http.post("/auth/token", data={"client_id": client_id, "client_secret": secret})
    if r.status_code == 401:
        expect_error(r, 401, "INVALID_CLIENT")
        return False
    assert r.status_code == 200, r.text
    return True


# -- /auth/token ----------------------------------------------------------------------------------------------------


def test_token_by_form_json_and_basic(api: httpx.Client) -> None:
    tenant = provision(api)
    form = {"grant_type": "client_credentials", "client_id": tenant.app_client_id, "client_secret": tenant.app_secret}
    basic = (tenant.app_client_id, tenant.app_secret)
    answers = [
        api.post("/auth/token", data=form),
        api.post("/auth/token", json=form),
        api.post("/auth/token", json={"client_id": tenant.app_client_id, "client_secret": tenant.app_secret}),
        api.post("/auth/token", data={"grant_type": "client_credentials"}, auth=basic),
        api.post("/auth/token", auth=basic),
    ]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
        body = r.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600 and body["refresh_expires_in"] == 30 * 86400
        assert (body["client_id"], body["org_id"], body["app_id"]) == (
            tenant.app_client_id,
            tenant.org_id,
            tenant.app_id,
        )
        assert can_read(api, tenant, body["access_token"])
    # Every issue is a fresh token.
    assert len({r.json()["access_token"] for r in answers}) == len(answers)

    org = token_pair(api, tenant.org_client_id, tenant.org_secret)
    assert (org["client_id"], org["org_id"], org["app_id"]) == (tenant.org_client_id, tenant.org_id, None)


def test_token_refuses_wrong_secrets_and_unknown_clients_alike(api: httpx.Client) -> None:
    tenant = provision(api)
    other = provision(api)
    refused = [
        {"client_id": tenant.app_client_id, "client_secret": "cks_wrong"},
        {"client_id": tenant.app_client_id, "client_secret": tenant.org_secret},
        {"client_id": tenant.org_client_id, "client_secret": tenant.app_secret},
        {"client_id": tenant.app_client_id, "client_secret": other.app_secret},
        {"client_id": f"org-{other.org_id}-app-app-nine", "client_secret": tenant.app_secret},
        {"client_id": "org-00000000-0000-0000-0000-000000000000", "client_secret": tenant.org_secret},
        {"client_id": "nobody", "client_secret": "x"},
        {"client_id": f"{tenant.app_client_id}#x", "client_secret": tenant.app_secret},
        {"client_id": tenant.app_client_id.upper(), "client_secret": tenant.app_secret},
    ]
    for form in refused:
        message = expect_error(api.post("/auth/token", data=form), 401, "INVALID_CLIENT")["message"]
        # One answer for all: the response does not tell an unknown client from a wrong secret.
        assert message == "unknown client_id or wrong client_secret"
    r = api.post("/auth/token", auth=(tenant.app_client_id, "cks_wrong"))
    expect_error(r, 401, "INVALID_CLIENT")

    expect_error(
        api.post("/auth/token", data={"grant_type": "password", "client_id": "a", "client_secret": "b"}),
        400,
        "UNSUPPORTED_GRANT_TYPE",
    )
    expect_error(api.post("/auth/token", data={"client_id": tenant.app_client_id}), 422, "VALIDATION_ERROR")
    expect_error(api.post("/auth/token", json=["x"]), 422, "VALIDATION_ERROR")
    expect_error(api.post("/auth/token", json={"client_id": 5, "client_secret": 5}), 422, "VALIDATION_ERROR")
    expect_error(
        api.post("/auth/token", content=b"{oops", headers={"content-type": "application/json"}), 400, "INVALID_JSON"
    )
    deep = api.post("/auth/token", content=b"[" * 100_000, headers={"content-type": "application/json"})
    expect_error(deep, 400, "INVALID_JSON")
    bad_basic = {"Authorization": "Basic !!!not-base64"}
    expect_error(api.post("/auth/token", headers=bad_basic), 400, "INVALID_AUTHORIZATION")
    latin1 = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()}
    expect_error(api.post("/auth/token", headers=latin1), 400, "INVALID_AUTHORIZATION")


# -- /auth/refresh and /auth/revoke ---------------------------------------------------------------------------------


def test_refresh_returns_a_new_pair_and_spends_the_old_refresh_token(api: httpx.Client) -> None:
    tenant = provision(api)
    first = token_pair(api, tenant.app_client_id, tenant.app_secret)
    r = api.post("/auth/refresh", data={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert (second["org_id"], second["app_id"]) == (tenant.org_id, tenant.app_id)
    assert can_read(api, tenant, second["access_token"])
    # Refreshing does not end the old access token: it lives until it expires or is revoked.
    assert can_read(api, tenant, first["access_token"])

    # Refresh works by JSON too, and each refresh token once: a reuse is refused, by form and by JSON alike (and
    # revokes its whole session: test_sessions.py).
    r = api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 200, r.text
    expect_error(api.post("/auth/refresh", data={"refresh_token": first["refresh_token"]}), 401, "TOKEN_REVOKED")
    expect_error(api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401, "TOKEN_REVOKED")

    # An access token is not a refresh token, nor the other way round.
    expect_error(api.post("/auth/refresh", data={"refresh_token": second["access_token"]}), 401, "INVALID_TOKEN")
    r = api.get(f"{tenant.app_path}/aggregates/today", headers=bearer(r.json()["refresh_token"]))
    expect_error(r, 401, "INVALID_TOKEN")
    expect_error(api.post("/auth/refresh", data={"refresh_token": "garbage"}), 401, "INVALID_TOKEN")
    expect_error(api.post("/auth/refresh", json={}), 422, "VALIDATION_ERROR")
    expect_error(api.post("/auth/refresh"), 400, "INVALID_JSON")


def test_a_revoked_token_is_refused_at_once(api: httpx.Client) -> None:
    tenant = provision(api)
    pair = token_pair(api, tenant.app_client_id, tenant.app_secret)
    assert can_read(api, tenant, pair["access_token"])  # caches "not revoked" in the API for 2 s
    r = api.post("/auth/revoke", data={"token": pair["access_token"], "token_type_hint": "access_token"})
    assert r.status_code == 200, r.text
    assert r.json() == {"revoked": True, "token_type": "access"}
    # The API revoked it itself, so its own cache of "not revoked" answers is no obstacle: refused at once.
    r = api.get(f"{tenant.app_path}/aggregates/today", headers=bearer(pair["access_token"]))
    expect_error(r, 401, "TOKEN_REVOKED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    # Revoking twice is fine.
    assert api.post("/auth/revoke", json={"token": pair["access_token"]}).status_code == 200

    # A revoked refresh token cannot be refreshed, and the other tokens of the client are untouched.
    assert api.post("/auth/revoke", json={"token": pair["refresh_token"]}).json()["token_type"] == "refresh"
    expect_error(api.post("/auth/refresh", data={"refresh_token": pair["refresh_token"]}), 401, "TOKEN_REVOKED")
    assert can_read(api, tenant, tenant.token())

    expect_error(api.post("/auth/revoke", data={"token": "not-a-token"}), 400, "INVALID_TOKEN")
    expect_error(api.post("/auth/revoke", json={"token": mint(tenant, secret="x" * 48)}), 400, "INVALID_TOKEN")
    # RFC 7009: revoking a token that has already expired succeeds.
    expired = mint(tenant, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    assert api.post("/auth/revoke", json={"token": expired}).json() == {"revoked": True}
    expect_error(api.post("/auth/revoke", json={}), 422, "VALIDATION_ERROR")


def test_a_revocation_by_another_replica_is_honoured_within_the_cache_bound(
    api: httpx.Client, aws_settings: AwsSettings
) -> None:
    tenant = provision(api)
    access = tenant.token()
    assert can_read(api, tenant, access)  # this API process now trusts "not revoked" for up to 2 s
    claims = jwt.decode(access, options={"verify_signature": False})
    # What another API replica's /auth/revoke writes: this process learns of it only from the table.
    aws_settings.dynamodb().put_item(
        TableName=aws_settings.names.revoked_tokens_table,
        Item={
            "pk": {"S": claims["jti"]},
            "sub": {"S": claims["sub"]},
            "typ": {"S": "access"},
            "expires_at": {"N": str(claims["exp"])},
        },
    )

    def refused() -> bool:
        return not can_read(api, tenant, access)

    # Refused once the cached answer runs out: within the cache TTL, with a second of slack for a busy machine.
    eventually(refused, timeout_s=REVOCATION_CACHE_S + 1.0, interval_s=0.1)
    expect_error(api.get(f"{tenant.app_path}/aggregates/today", headers=bearer(access)), 401, "TOKEN_REVOKED")


def test_expired_and_forged_tokens_are_refused(api: httpx.Client) -> None:
    tenant = provision(api)
    now = int(time.time())
    path = f"{tenant.app_path}/aggregates/today"
    assert can_read(api, tenant, mint(tenant))  # the minted shape is what the API accepts

    expired = mint(tenant, iat=now - 7200, exp=now - 60)
    r = api.get(path, headers=bearer(expired))
    expect_error(r, 401, "TOKEN_EXPIRED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    expired_refresh = mint(tenant, typ="refresh", iat=now - 7200, exp=now - 60)
    expect_error(api.post("/auth/refresh", data={"refresh_token": expired_refresh}), 401, "TOKEN_EXPIRED")

    forged = [
        mint(tenant, secret="another-secret-" + "x" * 40),  # not signed by the service
        mint(tenant, app_id="app-two"),  # claims disagree with the subject
        mint(tenant, org_id=provision(api).org_id),
        mint(tenant, sub=f"org-{tenant.org_id}"),  # an org subject carrying an app claim
        mint(tenant, typ="id"),
        mint(tenant, iss="someone-else"),
        mint(tenant, jti=None),
        mint(tenant, exp=None),
        jwt.encode({"sub": tenant.app_client_id, "typ": "access"}, "", algorithm="none"),  # unsigned
        "abc.def.ghi",
    ]
    for token in forged:
        expect_error(api.get(path, headers=bearer(token)), 401, "INVALID_TOKEN")
    for header in ({}, {"Authorization": "Bearer"}, {"Authorization": "Token abc"}):
        expect_error(api.get(path, headers=header), 401, "UNAUTHORIZED")
    basic = {
        "Authorization": "Basic " + base64.b64encode(f"{tenant.app_client_id}:{tenant.app_secret}".encode()).decode()
    }
    expect_error(api.get(path, headers=basic), 401, "UNAUTHORIZED")


# -- credential rotation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("principal", ["org", "app"])
def test_rotation_with_and_without_a_grace_period(api: httpx.Client, principal: str) -> None:
    tenant = provision(api)
    org = (tenant.org_client_id, tenant.org_secret, f"/api/v1/orgs/{tenant.org_id}")
    app = (tenant.app_client_id, tenant.app_secret, tenant.app_path)
    (client_id, original, rotate), (other_id, other_secret, _) = (org, app) if principal == "org" else (app, org)
    rotate += "/credentials/rotate"
    issued_before = tenant.token(client_id, original)
    other_session = tenant.token(other_id, other_secret)

    # Grace 0: the old secret is refused at once, the new one works.
    r = api.post(rotate, json={"grace_period_hours": 0}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["grace_period_hours"] == 0
    instant = r.json()["credentials"]
    assert instant["client_id"] == client_id and instant["client_secret"] != original
    assert not authenticates(api, client_id, original)
    assert authenticates(api, client_id, instant["client_secret"])
    # The sessions the old secret began end with it (test_sessions.py has the whole story).
    assert not can_read(api, tenant, issued_before)

    # Grace > 0: old and new both work.
    r = api.post(rotate, json={"grace_period_hours": 2}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["grace_period_hours"] == 2
    fresh = r.json()["credentials"]["client_secret"]
    assert authenticates(api, client_id, instant["client_secret"])
    assert authenticates(api, client_id, fresh)
    assert not authenticates(api, client_id, original)
    # The org's and the app's secrets are separate: rotating one leaves the other, and its sessions, alone.
    assert authenticates(api, other_id, other_secret)
    assert can_read(api, tenant, other_session)

    # No body: the default grace period.
    r = api.post(rotate, headers=ADMIN)
    assert r.status_code == 200 and r.json()["grace_period_hours"] == 24
    assert authenticates(api, client_id, fresh)

    for bad in ({"grace_period_hours": 169}, {"grace_period_hours": -1}, {"grace_period_hours": "24"}, {"x": 1}, [1]):
        expect_error(api.post(rotate, json=bad, headers=ADMIN), 422, "VALIDATION_ERROR")
    expect_error(api.post(rotate, content=b"{", headers=ADMIN), 400, "INVALID_JSON")
    assert authenticates(api, client_id, fresh)


def test_rotating_an_unknown_principal_is_404(api: httpx.Client) -> None:
    tenant = provision(api)
    r = api.post("/api/v1/orgs/00000000-0000-4000-8000-000000000000/credentials/rotate", headers=ADMIN)
    expect_error(r, 404, "ORG_NOT_FOUND")
    r = api.post(f"/api/v1/orgs/{tenant.org_id}/apps/app-nine/credentials/rotate", headers=ADMIN)
    expect_error(r, 404, "APP_NOT_FOUND")
