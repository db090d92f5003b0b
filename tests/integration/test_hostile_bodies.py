"""Oversized bodies against the real API: refused while they stream, whatever their route and content type, and ten
of 200 MiB at once leave its resident memory where it was."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.client_api import ADMIN, bearer, expect_error
from tests.integration.harness import Pipeline, Tenant, provision
from tests.integration.memory import MB, PeakResident, resident_bytes

pytestmark = pytest.mark.integration

HUGE_BYTES = 200 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)  # one chunk, sent again and again: the test itself never holds a body
MEMORY_BOUND_BYTES = 100 * MB


def huge_body() -> Iterator[bytes]:
    for _ in range(HUGE_BYTES // len(CHUNK)):
        yield CHUNK


def send_huge(
    base_url: str, method: str, path: str, content_type: str, declare_length: bool, headers: dict[str, str]
) -> str:
    """The API's answer (status and error code), or how it cut the connection while the body was still coming."""
    sent_headers = {"content-type": content_type, **headers}
    if declare_length:
        sent_headers["content-length"] = str(HUGE_BYTES)
    with httpx.Client(base_url=base_url, timeout=60) as client:
        try:
            r = client.request(method, path, content=huge_body(), headers=sent_headers)
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # The API answered 413 and closed while the client was still writing: it may never read the answer.
            return f"closed ({type(exc).__name__})"
    return f"{r.status_code} {r.json()['error']['code']}"


def test_oversized_bodies_are_refused_on_every_content_type(api: httpx.Client) -> None:
    tenant = provision(api)
    two_mib = b"a=" + b"x" * (2 * 1024 * 1024)
    for content_type in ("application/x-www-form-urlencoded", "application/json", "text/plain"):
        r = api.post("/auth/token", content=two_mib, headers={"content-type": content_type})
        expect_error(r, 413, "PAYLOAD_TOO_LARGE")

    def streamed() -> Iterator[bytes]:  # chunked: no Content-Length to refuse early
        for _ in range(32):
            yield CHUNK

    r = api.post("/auth/token", content=streamed(), headers={"content-type": "application/x-www-form-urlencoded"})
    expect_error(r, 413, "PAYLOAD_TOO_LARGE")
    r = api.post(f"{tenant.app_path}/usage/batch", content=streamed(), headers=tenant.app_headers())
    expect_error(r, 413, "PAYLOAD_TOO_LARGE")
    # A body at the cap is read; the API still answers normally afterwards.
    r = api.post("/auth/token", data={"client_id": tenant.app_client_id, "client_secret": tenant.app_secret})
    assert r.status_code == 200, r.text


def test_ten_concurrent_200_mib_bodies_leave_resident_memory_within_100_mb(
    pipeline: Pipeline, api: httpx.Client
) -> None:
    tenant: Tenant = provision(api)
    token = tenant.token()
    pid = pipeline.processes["api"].pid
    assert pid is not None
    # Warm: the routes below have each answered once, so the idle level includes what a first call loads.
    assert api.post("/auth/token", data={"client_id": "x", "client_secret": "y"}).status_code == 401
    idle = resident_bytes(pid)

    form, json_type = "application/x-www-form-urlencoded", "application/json"
    attacks = [
        ("POST", "/auth/token", form, False, {}),  # the attack: a form read whole before its size was checked
        ("POST", "/auth/token", form, True, {}),
        ("POST", "/auth/token", json_type, False, {}),
        ("POST", "/auth/refresh", form, False, {}),
        ("POST", "/auth/revoke", "text/plain", True, {}),
        ("POST", f"{tenant.app_path}/usage/batch", json_type, False, bearer(token)),
        ("POST", f"{tenant.app_path}/usage", json_type, True, bearer(token)),
        ("PUT", f"/api/v1/orgs/{tenant.org_id}", json_type, False, ADMIN),
        ("POST", f"{tenant.app_path}/credentials/rotate", "application/octet-stream", False, ADMIN),
        ("PUT", f"{tenant.app_path}", "text/plain", True, ADMIN),
    ]
    with PeakResident(pid) as memory, ThreadPoolExecutor(len(attacks)) as pool:
        outcomes = list(pool.map(lambda a: send_huge(pipeline.base_url, *a), attacks))
    grew = memory.peak - idle
    print(f"API VmRSS idle {idle / MB:.1f} MB, peak {memory.peak / MB:.1f} MB (+{grew / MB:.1f} MB); {outcomes}")
    for (_, path, *_), outcome in zip(attacks, outcomes, strict=True):
        # Refused, or cut off mid-body: never read whole.
        assert outcome.startswith(("413 PAYLOAD_TOO_LARGE", "closed")), (path, outcome)
    assert grew < MEMORY_BOUND_BYTES
    pipeline.check_alive()
    assert api.get("/health").status_code == 200
    assert api.get(f"{tenant.app_path}/aggregates/today", headers=bearer(token)).status_code == 200
