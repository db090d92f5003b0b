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
    """503 when a table or queue is unreachable; 200 otherwise, "degraded" with its reasons while accepted usage
    may be missing from the aggregates (lag past its bound, dead letters, stream gaps, no recent measurement).
    Degraded is not unhealthy: the API still takes usage, so a load balancer keeps it in service."""
    svc = services(request)
    report = await svc.health.check()
    degraded = svc.pipeline.degraded(svc.settings.selection_max_lag_s)
    status = ("degraded" if degraded else "ok") if report.healthy else "unhealthy"
    body = {"status": status, "checks": report.checks, "degraded": degraded}
    return JSONResponse(body, 200 if report.healthy else 503)


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
