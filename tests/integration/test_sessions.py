"""Sessions end when they should: a rotation retires the sessions of the secrets it retires, a reused refresh token
takes its whole family down, an admin can end every session of a client, and no session outlives its lifetime."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest

from runtime.aws import AwsSettings
from tests.integration.client_api import ADMIN, bearer, expect_error, token_pair
from tests.integration.harness import Tenant, eventually, provision

pytestmark = pytest.mark.integration

# The API's default CK_REVOCATION_CACHE_TTL_S, which also bounds how long a replica trusts a client's session state.
SESSION_CACHE_S = 2.0


def read(http: httpx.Client, tenant: Tenant, access_token: str) -> httpx.Response:
    return http.get(f"{tenant.app_path}/aggregates/today", headers=bearer(access_token))


def works(http: httpx.Client, tenant: Tenant, access_token: str) -> bool:
    r = read(http, tenant, access_token)
    if r.status_code == 401:
        expect_error(r, 401, "TOKEN_REVOKED")
        return False
    assert r.status_code == 200, r.text
    return True


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post("/auth/refresh", data={"refresh_token": refresh_token})


def refreshed(http: httpx.Client, pair: dict[str, Any]) -> dict[str, Any]:
    r = refresh(http, pair["refresh_token"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_rotation_without_grace_ends_every_session_of_the_old_secret_access_and_refresh(api: httpx.Client) -> None:
    tenant = provision(api)
    first = token_pair(api, tenant.app_client_id, tenant.app_secret)
    successor = refreshed(api, first)  # a session carried on by a refresh is still the old secret's session
    org_session = token_pair(api, tenant.org_client_id, tenant.org_secret)
    assert works(api, tenant, first["access_token"]) and works(api, tenant, successor["access_token"])

    r = api.post(f"{tenant.app_path}/credentials/rotate", json={"grace_period_hours": 0}, headers=ADMIN)
    assert r.status_code == 200, r.text
    new_secret = r.json()["credentials"]["client_secret"]

    # At once, not after a cache: this replica made the rotation.
    assert not works(api, tenant, first["access_token"])
    assert not works(api, tenant, successor["access_token"])
    expect_error(refresh(api, successor["refresh_token"]), 401, "TOKEN_REVOKED")
    expect_error(refresh(api, first["refresh_token"]), 401, "TOKEN_REVOKED")
    # The new secret begins sessions that work; the org client's sessions were never the app secret's.
    fresh = token_pair(api, tenant.app_client_id, new_secret)
    assert works(api, tenant, fresh["access_token"])
    assert works(api, tenant, refreshed(api, fresh)["access_token"])
    assert works(api, tenant, org_session["access_token"])


def test_sessions_of_a_graced_secret_end_when_its_grace_does(api: httpx.Client, aws_settings: AwsSettings) -> None:
    tenant = provision(api)
    old = token_pair(api, tenant.app_client_id, tenant.app_secret)
    r = api.post(f"{tenant.app_path}/credentials/rotate", json={"grace_period_hours": 1}, headers=ADMIN)
    assert r.status_code == 200, r.text
    # Within the grace both secrets' sessions work.
    assert works(api, tenant, old["access_token"])
    old = refreshed(api, old)
    new = token_pair(api, tenant.app_client_id, r.json()["credentials"]["client_secret"])

    # An hour passes: the old secret's end is brought forward to a second from now, straight in the config table.
    ddb = aws_settings.dynamodb()
    key = {"pk": {"S": f"ORG#{tenant.org_id}"}, "sk": {"S": f"APP#{tenant.app_id}"}}
    item = ddb.get_item(TableName=aws_settings.names.config_table, Key=key, ConsistentRead=True)["Item"]
    stored = json.loads(item["secrets"]["S"])
    assert [s["not_after"] is None for s in stored] == [True, False]
    stored[1]["not_after"] = int(time.time()) + 1
    ddb.update_item(
        TableName=aws_settings.names.config_table,
        Key=key,
        UpdateExpression="SET secrets = :s",
        ExpressionAttributeValues={":s": {"S": json.dumps(stored)}},
    )

    eventually(lambda: not works(api, tenant, old["access_token"]), timeout_s=SESSION_CACHE_S + 3.0, interval_s=0.2)
    expect_error(refresh(api, old["refresh_token"]), 401, "TOKEN_REVOKED")
    assert works(api, tenant, new["access_token"])


def test_a_reused_refresh_token_revokes_its_whole_family(api: httpx.Client) -> None:
    tenant = provision(api)
    victim = token_pair(api, tenant.app_client_id, tenant.app_secret)
    bystander = token_pair(api, tenant.app_client_id, tenant.app_secret)  # another session of the same client
    # The thief refreshes with a copy first; the victim's own refresh then presents a spent token.
    thief = refreshed(api, victim)
    thief = refreshed(api, thief)
    r = refresh(api, victim["refresh_token"])
    assert expect_error(r, 401, "TOKEN_REVOKED")["message"].startswith("this refresh token was already used")

    # Every token of the family is dead: the victim's, the thief's, and the thief's latest refresh token.
    for token in (victim["access_token"], thief["access_token"]):
        assert not works(api, tenant, token)
    expect_error(refresh(api, thief["refresh_token"]), 401, "TOKEN_REVOKED")
    # The other session of the client, and new ones, are untouched.
    assert works(api, tenant, bystander["access_token"])
    assert works(api, tenant, refreshed(api, bystander)["access_token"])
    assert works(api, tenant, tenant.token())


def test_revoking_a_refresh_token_ends_its_session(api: httpx.Client) -> None:
    tenant = provision(api)
    pair = token_pair(api, tenant.app_client_id, tenant.app_secret)
    assert api.post("/auth/revoke", data={"token": pair["refresh_token"]}).status_code == 200
    assert not works(api, tenant, pair["access_token"])
    expect_error(refresh(api, pair["refresh_token"]), 401, "TOKEN_REVOKED")


def test_an_admin_ends_every_session_of_one_client(api: httpx.Client) -> None:
    tenant = provision(api)
    sessions = [token_pair(api, tenant.app_client_id, tenant.app_secret) for _ in range(2)]
    org_session = token_pair(api, tenant.org_client_id, tenant.org_secret)
    r = api.post(f"{tenant.app_path}/sessions/revoke", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json() == {"client_id": tenant.app_client_id, "sessions_revoked": True, "session_epoch": 1}

    for pair in sessions:
        assert not works(api, tenant, pair["access_token"])
        expect_error(refresh(api, pair["refresh_token"]), 401, "TOKEN_REVOKED")
    # The secret still works (rotate it too after a leak), and so does the org client's session.
    assert works(api, tenant, tenant.token())
    assert works(api, tenant, org_session["access_token"])

    r = api.post(f"/api/v1/orgs/{tenant.org_id}/sessions/revoke", headers=ADMIN)
    assert r.status_code == 200 and r.json()["client_id"] == tenant.org_client_id
    assert not works(api, tenant, org_session["access_token"])

    expect_error(api.post(f"{tenant.app_path}/sessions/revoke"), 401, "INVALID_API_KEY")
    r = api.post(f"/api/v1/orgs/{tenant.org_id}/apps/app-nine/sessions/revoke", headers=ADMIN)
    expect_error(r, 404, "APP_NOT_FOUND")


def test_refreshes_keep_the_session_and_its_absolute_end(api: httpx.Client) -> None:
    tenant = provision(api)
    first = token_pair(api, tenant.app_client_id, tenant.app_secret)
    later = refreshed(api, refreshed(api, first))

    def claims(token: str) -> dict[str, Any]:
        return dict(jwt.decode(token, options={"verify_signature": False}))

    a, b = claims(first["refresh_token"]), claims(later["refresh_token"])
    assert (a["fam"], a["sat"], a["gen"], a["sep"]) == (b["fam"], b["sat"], b["gen"], b["sep"])
    # The default lifetime (30 days) caps the session from its start, not from the latest refresh.
    assert b["exp"] <= a["sat"] + 30 * 86400
    assert claims(first["access_token"])["aud"] == "bedrock-cost-keeper"
