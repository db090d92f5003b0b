"""The operator's read-outs behind CK_OPS_TOKEN, and liveness that never asks AWS."""

from __future__ import annotations

import secrets

import pytest

from tests.integration.client_api import expect_error
from tests.integration.own_api import OwnApis

pytestmark = pytest.mark.integration


def test_deep_health_metrics_and_status_take_the_ops_token_and_liveness_does_not(own_api: OwnApis) -> None:
    token = secrets.token_urlsafe(32)
    http = own_api(CK_OPS_TOKEN=token)
    assert http.get("/health").json() == {"status": "ok"}
    for path in ("/health/deep", "/metrics", "/status"):
        expect_error(http.get(path), 401, "INVALID_OPS_TOKEN")
        expect_error(http.get(path, headers={"Authorization": "Bearer " + "x" * 43}), 401, "INVALID_OPS_TOKEN")
        r = http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (200, 503), (path, r.status_code)  # /status is 503 until it has measured once
        assert r.status_code != 503 or path == "/status"
    r = http.get("/health/deep", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["status"] == "ok"
