"""The operator's read-outs behind CK_OPS_TOKEN, and liveness that never asks AWS."""

from __future__ import annotations

import secrets

import pytest

from tests.integration.client_api import expect_error
from tests.integration.own_api import OwnApis

pytestmark = pytest.mark.integration


def test_deep_health_and_metrics_take_the_ops_token_and_liveness_does_not(own_api: OwnApis) -> None:
    token = secrets.token_urlsafe(32)
    http = own_api(CK_OPS_TOKEN=token)
    assert http.get("/health").json() == {"status": "ok"}
    # (The pipeline's figures for people are on the dashboard, behind the admin key.)
    for path in ("/health/deep", "/metrics"):
        expect_error(http.get(path), 401, "INVALID_OPS_TOKEN")
        expect_error(http.get(path, headers={"Authorization": "Bearer " + "x" * 43}), 401, "INVALID_OPS_TOKEN")
        r = http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, (path, r.status_code)
    r = http.get("/health/deep", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["status"] == "ok"
