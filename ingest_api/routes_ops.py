"""Health, Prometheus metrics, the HTML status page and the OpenAPI document.

/health is liveness for the load balancer: it answers from the process alone. The deep check, metrics and the status
page tell how the deployment is built and loaded; with CK_OPS_TOKEN set they take it as a bearer token (auth.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ingest_api.auth import ops_endpoint
from ingest_api.context import services
from ingest_api.openapi import build_openapi
from ingest_api.status_page import render_status, render_unavailable


async def liveness(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@ops_endpoint
async def health(request: Request) -> JSONResponse:
    report = await services(request).health.latest()
    healthy = report.healthy
    return JSONResponse({"status": "ok" if healthy else "unhealthy", "checks": report.checks}, 200 if healthy else 503)


@ops_endpoint
async def metrics(request: Request) -> Response:
    svc = services(request)
    await svc.pipeline.latest()
    return svc.metrics.exposition()


@ops_endpoint
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
    Route("/health", liveness, methods=["GET"]),
    Route("/health/deep", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/status", status_page, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
