"""ingest_api/body_limit.py and concurrency.py: bodies capped while they stream, requests bounded per process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest_api.body_limit import BodyLimitMiddleware, BodyTooLarge
from ingest_api.concurrency import ConcurrencyLimitMiddleware, Overloaded
from ingest_api.errors import domain_error_response, exception_handlers

LIMIT = 1000


def body_app(read: list[int]) -> Starlette:
    async def echo(request: Request) -> Response:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            read.append(total)
        return JSONResponse({"bytes": total})

    async def ignore(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/echo", echo, methods=["POST"]), Route("/ignore", ignore, methods=["POST"])],
        exception_handlers=exception_handlers(),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=LIMIT)
    return app


async def chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


async def post(app: Starlette, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain"])
def test_a_declared_length_over_the_cap_is_refused_before_any_byte_is_read(content_type: str) -> None:
    read: list[int] = []
    r = asyncio.run(post(body_app(read), "/echo", content=b"x" * (LIMIT + 1), headers={"content-type": content_type}))
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert read == []


def test_a_chunked_body_is_cut_off_once_it_passes_the_cap() -> None:
    read: list[int] = []
    r = asyncio.run(post(body_app(read), "/echo", content=chunks(100 * LIMIT)))
    assert r.status_code == 413
    assert max(read, default=0) <= LIMIT


def test_bodies_within_the_cap_pass_whole_and_unread_ones_are_never_refused() -> None:
    read: list[int] = []
    assert asyncio.run(post(body_app(read), "/echo", content=b"x" * LIMIT)).json() == {"bytes": LIMIT}
    assert asyncio.run(post(body_app([]), "/ignore", content=b"x" * (LIMIT + 1))).status_code == 200


def test_the_concurrency_bound_answers_at_once_past_its_limit_and_exempts_liveness() -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/slow", slow), Route("/health", slow)])
    app.add_middleware(
        ConcurrencyLimitMiddleware, max_requests=2, reject=domain_error_response, exempt_paths=frozenset({"/health"})
    )

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            busy = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
            await asyncio.sleep(0.05)
            refused = await client.get("/slow")  # answered while the two are still running
            alive = asyncio.create_task(client.get("/health"))
            await asyncio.sleep(0.05)
            release.set()
            return [refused, *await asyncio.gather(*busy, alive)]

    refused, *served = asyncio.run(run())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "OVERLOADED"
    assert [r.status_code for r in served] == [200, 200, 200]


def test_the_refusals_are_domain_errors() -> None:
    assert domain_error_response(BodyTooLarge("x")).status_code == 413
    assert domain_error_response(Overloaded("x")).status_code == 503
