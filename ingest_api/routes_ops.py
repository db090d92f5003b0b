"""Health, Prometheus metrics and the OpenAPI document. (The pipeline's figures for people are on the dashboard.)"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest_api.context import services
from ingest_api.openapi import build_openapi


async def health(request: Request) -> JSONResponse:
    report = await services(request).health.check()
    healthy = report.healthy
    return JSONResponse({"status": "ok" if healthy else "unhealthy", "checks": report.checks}, 200 if healthy else 503)


async def metrics(request: Request) -> Response:
    svc = services(request)
    await svc.pipeline.latest()
    return svc.metrics.exposition()


_OPENAPI: dict[str, Any] | None = None


async def openapi(request: Request) -> JSONResponse:
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = build_openapi()
    return JSONResponse(_OPENAPI)


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
