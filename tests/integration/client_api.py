"""Helpers for the client API tests: the error contract, admin calls, tokens minted by hand, a safe org time zone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from tests.integration.harness import ADMIN_KEY, JWT_SECRET, Tenant, eventually

ADMIN = {"X-API-Key": ADMIN_KEY}


def expect_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape: {"error": {"code", "message", "details"?}} and nothing else, as JSON."""
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    return dict(error)


def midday_timezone() -> str:
    """A fixed-offset zone where it is now about noon: tests that read 'today' never straddle a local midnight."""
    offset_h = 12 - datetime.now(UTC).hour  # -11..+12, every one a valid Etc/GMT zone
    if offset_h == 0:
        return "Etc/GMT"
    # POSIX-style names invert the sign: Etc/GMT-5 is UTC+5.
    return f"Etc/GMT{'-' if offset_h > 0 else '+'}{abs(offset_h)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_pair(http: httpx.Client, client_id: str, secret: str) -> dict[str, Any]:
    r = http.post(
        "/auth/token", data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def mint(tenant: Tenant, app: bool = True, secret: str = JWT_SECRET, **overrides: Any) -> str:
    """A token shaped like the API's own, signed with the pipeline's JWT secret; an override of None drops a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "bedrock-cost-keeper",
        "sub": tenant.app_client_id if app else tenant.org_client_id,
        "org_id": tenant.org_id,
        "typ": "access",
        "aud": "bedrock-cost-keeper",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        # A session begun with the tenant's first secret (generation 0) before any revocation (epoch 0).
        "gen": 0,
        "sep": 0,
        "fam": str(uuid.uuid4()),
        "sat": now,
    }
    if app:
        claims["app_id"] = tenant.app_id
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


def add_app(http: httpx.Client, org_id: str, app_id: str, settings: dict[str, Any] | None = None) -> str:
    """Provision another app; its client secret."""
    r = http.put(f"/api/v1/orgs/{org_id}/apps/{app_id}", json=settings or {"name": app_id}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["credentials"]["client_secret"])


def row(body: dict[str, Any], label: str) -> dict[str, Any]:
    return dict(next(m for m in body["models"] if m["model_label"] == label))


def read_when(
    http: httpx.Client, path: str, headers: dict[str, str], ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET path until its JSON body satisfies ready: the aggregator rolls spend up a moment after it is posted."""

    def check() -> dict[str, Any] | None:
        r = http.get(path, headers=headers)
        assert r.status_code == 200, r.text
        body = dict(r.json())
        return body if ready(body) else None

    return eventually(check, timeout_s=15.0, interval_s=0.05)
