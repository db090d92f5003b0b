"""Usage submission refuses bad input with a 4xx JSON error, never a 5xx; a batch answers per item and counts only
the items it accepted."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from runtime.aws import AwsSettings
from tests.integration.client_api import ADMIN, expect_error, midday_timezone, read_when, row
from tests.integration.harness import Tenant, org_settings, price, provision, usage, wait_idle

pytestmark = pytest.mark.integration

STANDARD = (800_000, 4_000_000)


@pytest.fixture
def tenant(api: httpx.Client) -> Tenant:
    # Noon in the org's zone: "yesterday" and "today" are unambiguous whatever the UTC time of the run.
    return provision(api, org=org_settings(timezone=midday_timezone()))


def post(http: httpx.Client, tenant: Tenant, body: Any, headers: dict[str, str], batch: bool = False) -> httpx.Response:
    path = f"{tenant.app_path}/usage/batch" if batch else f"{tenant.app_path}/usage"
    return http.post(path, json=body, headers=headers)


def test_malformed_bodies_are_400_or_413(api: httpx.Client, tenant: Tenant) -> None:
    headers = {**tenant.app_headers(), "content-type": "application/json"}
    for path in (f"{tenant.app_path}/usage", f"{tenant.app_path}/usage/batch"):
        for content in (
            b"{not json",
            b"",
            b'{"request_id": ',
            b"\xff\xfe\x00",
            b"[" * 100_000,  # nesting deeper than the parser's recursion limit
            b'{"input_tokens": ' + b"9" * 5000 + b"}",  # digits beyond Python's int conversion limit
        ):
            expect_error(api.post(path, content=content, headers=headers), 400, "INVALID_JSON")
        too_big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
        expect_error(api.post(path, content=too_big, headers=headers), 413, "PAYLOAD_TOO_LARGE")
        for json_text in (json.dumps([usage()]), '"usage"', "42", "null", "true"):
            expect_error(api.post(path, content=json_text, headers=headers), 422, "VALIDATION_ERROR")


def test_bad_fields_are_422_with_details(api: httpx.Client, tenant: Tenant) -> None:
    headers = tenant.app_headers()
    now = datetime.now(UTC)
    invalid = {
        "input_tokens": usage(input_tokens=-1),
        "output_tokens": {**usage(), "output_tokens": 1.5},
        "cache_read_tokens": usage(cache_read_tokens=True),
        "cache_write_tokens": usage(cache_write_tokens=10**9 + 1),
        "timestamp": usage(timestamp=now.replace(tzinfo=None).isoformat()),
        "request_id": usage(request_id="not-a-uuid"),
        "model_label": usage(model_label=""),
        "surprise": usage(surprise=1),
    }
    # Offsets that carry a timestamp out of datetime's range once in UTC.
    for timestamp in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"):
        invalid[f"timestamp {timestamp}"] = usage(timestamp=timestamp)
    for field, body in invalid.items():
        details = expect_error(post(api, tenant, body, headers), 422, "VALIDATION_ERROR")["details"]
        assert [d["loc"] for d in details] == [[field.split()[0]]], details
    missing = usage()
    del missing["timestamp"]
    details = expect_error(post(api, tenant, missing, headers), 422, "VALIDATION_ERROR")["details"]
    assert details[0]["loc"] == ["timestamp"] and details[0]["type"] == "missing"

    checks = [
        (usage(timestamp=(now + timedelta(minutes=10)).isoformat()), "TIMESTAMP_IN_FUTURE"),
        (usage(timestamp=(now - timedelta(days=1)).isoformat()), "TIMESTAMP_OUTSIDE_DAY_WINDOW"),
        (usage(timestamp="2000-01-01T00:00:00+14:00"), "TIMESTAMP_OUTSIDE_DAY_WINDOW"),
        (usage(timestamp="9999-12-31T23:59:59+00:00"), "TIMESTAMP_IN_FUTURE"),
        (usage("gpt-9"), "UNKNOWN_MODEL_LABEL"),
        (usage("PREMIUM"), "UNKNOWN_MODEL_LABEL"),
    ]
    for body, code in checks:
        expect_error(post(api, tenant, body, headers), 422, code)

    # Within the clock skew allowance a timestamp a little ahead is fine; an upper-case request id is normalised.
    ahead = usage(timestamp=(now + timedelta(seconds=20)).isoformat(), request_id=str(uuid.uuid4()).upper())
    r = post(api, tenant, ahead, headers)
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "accepted", "request_id": ahead["request_id"].lower()}


def lone_surrogate(body: Any) -> bytes:
    """JSON text with every "LONE" string replaced by an escaped lone UTF-16 surrogate, valid JSON that no UTF-8
    encoder can write back out."""
    return json.dumps(body).replace('"LONE"', '"\\ud800"').encode()


def test_lone_surrogates_are_refused_and_never_break_the_answer(api: httpx.Client, tenant: Tenant) -> None:
    headers = {**tenant.app_headers(), "content-type": "application/json"}
    for body in ({**usage(), "model_label": "LONE"}, {**usage(), "LONE": 1}, {**usage(), "request_id": "LONE"}):
        r = api.post(f"{tenant.app_path}/usage", content=lone_surrogate(body), headers=headers)
        expect_error(r, 422, "VALIDATION_ERROR")
    items = [{"request_id": "LONE"}, {**usage("economy"), "model_label": "LONE"}, usage("economy")]
    r = api.post(f"{tenant.app_path}/usage/batch", content=lone_surrogate({"items": items}), headers=headers)
    assert r.status_code == 207, r.text
    assert r.json()["accepted"] == 1
    assert [x["status"] for x in r.json()["results"]] == [422, 422, 202]
    assert "request_id" not in r.json()["results"][0]

    org = org_settings()
    org["models"]["LONE"] = org["models"].pop("economy")
    r = api.put(
        f"/api/v1/orgs/{tenant.org_id}",
        content=lone_surrogate(org),
        headers={**ADMIN, "content-type": "application/json"},
    )
    expect_error(r, 422, "VALIDATION_ERROR")
    r = api.post("/auth/token", content=lone_surrogate({"client_id": "LONE", "client_secret": "x"}), headers=headers)
    expect_error(r, 422, "VALIDATION_ERROR")


def test_batch_shape_is_checked_as_a_whole(api: httpx.Client, tenant: Tenant) -> None:
    headers = tenant.app_headers()
    too_many = {"items": [usage("economy") for _ in range(101)]}
    details = expect_error(post(api, tenant, too_many, headers, batch=True), 422, "VALIDATION_ERROR")["details"]
    assert details[0]["loc"] == ["items"] and details[0]["type"] == "too_long"
    shapes: list[dict[str, Any]] = [
        {"items": []},
        {},
        {"items": {}},
        {"items": [usage()], "extra": 1},
        {"items": ["x"]},
    ]
    for body in shapes:
        expect_error(post(api, tenant, body, headers, batch=True), 422, "VALIDATION_ERROR")
    exactly = {"items": [usage("economy", 1, 1) for _ in range(100)]}
    r = post(api, tenant, exactly, headers, batch=True)
    assert r.status_code == 207 and r.json()["accepted"] == 100, r.text


def test_a_mixed_batch_is_207_and_counts_only_the_good_items(http: httpx.Client, aws_settings: AwsSettings) -> None:
    tenant = provision(http, org=org_settings(timezone=midday_timezone()))
    headers = tenant.app_headers()
    now = datetime.now(UTC)
    good = [usage("standard", 1000 * i, 100 * i) for i in range(1, 4)]
    repeated = dict(good[0], request_id=good[0]["request_id"].upper(), input_tokens=999_999)
    items: list[Any] = [
        good[0],
        usage("standard", -5, 1),
        good[1],
        usage("gpt-9"),
        repeated,  # the same request id as item 0: refused, not counted twice
        usage("standard", timestamp=(now + timedelta(hours=1)).isoformat()),
        usage("standard", timestamp=(now - timedelta(days=1)).isoformat()),
        {"request_id": "A" * 10_000},
        usage("standard", timestamp="9999-12-31T23:59:59-12:00"),
        good[2],
    ]
    r = post(http, tenant, {"items": items}, headers, batch=True)
    assert r.status_code == 207, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (3, 7)
    results = body["results"]
    assert [x["index"] for x in results] == list(range(len(items)))
    assert [x["status"] for x in results] == [202, 422, 202, 422, 422, 422, 422, 422, 422, 202]
    codes = [x.get("error", {}).get("code") for x in results]
    assert codes == [
        None,
        "VALIDATION_ERROR",
        None,
        "UNKNOWN_MODEL_LABEL",
        "DUPLICATE_IN_BATCH",
        "TIMESTAMP_IN_FUTURE",
        "TIMESTAMP_OUTSIDE_DAY_WINDOW",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        None,
    ]
    assert results[1]["error"]["details"][0]["loc"] == ["input_tokens"]
    assert [x["request_id"] for x in results if x["status"] == 202] == [g["request_id"] for g in good]
    assert results[4]["request_id"] == good[0]["request_id"]
    assert "request_id" not in results[7]  # a malformed id is not echoed back

    expected = sum(price(1000 * i, 100 * i, *STANDARD) for i in range(1, 4))
    read_when(http, f"{tenant.app_path}/aggregates/today", headers, lambda b: b["total"]["request_count"] >= 3)
    wait_idle(aws_settings)  # so that anything wrongly accepted would be counted by now
    agg = http.get(f"{tenant.app_path}/aggregates/today", headers=headers).json()
    assert agg["total"]["request_count"] == 3
    assert row(agg, "standard")["cost_usd_micros"] == expected
    assert row(agg, "standard")["input_tokens"] == 6000
    assert agg["total"]["cost_usd_micros"] == expected
