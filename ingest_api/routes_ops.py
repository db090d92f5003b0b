"""Health, Prometheus metrics, the HTML status page and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ingest_api.context import services
from ingest_api.openapi import build_openapi
from ingest_api.status_page import render_status, render_unavailable


async def health(request: Request) -> JSONResponse:
    report = await services(request).health.check()
    healthy = report.healthy
    return JSONResponse({"status": "ok" if healthy else "unhealthy", "checks": report.checks}, 200 if healthy else 503)


async def metrics(request: Request) -> Response:
    svc = services(request)
    await svc.pipeline.latest()
    return svc.metrics.exposition()


async def status_page(request: Request) -> HTMLResponse:
    status = await services(request).pipeline.latest()
    if status is None:
        return HTMLResponse(render_unavailable(), status_code=503)
    return HTMLResponse(render_status(status), headers={"Cache-Control": "no-store"})


_OPENAPI: dict[str, Any] | None = None


async def openapi(request: Request) -> JSONResponse:
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = build_openapi()
    return JSONResponse(_OPENAPI)


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/status", status_page, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
