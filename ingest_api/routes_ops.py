"""Health, Prometheus metrics and the OpenAPI document. (The pipeline's figures for people are on the dashboard.)

/health is liveness for the load balancer: it answers from the process alone. The deep check and the metrics tell how
the deployment is built and loaded; with CK_OPS_TOKEN set they take it as a bearer token (auth.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest_api.auth import ops_endpoint
from ingest_api.context import services
from ingest_api.openapi import build_openapi


async def liveness(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@ops_endpoint
async def health(request: Request) -> JSONResponse:
    """503 when a table or queue is unreachable; 200 otherwise, "degraded" with its reasons while accepted usage
    may be missing from the aggregates (lag past its bound, dead letters, stream gaps, no recent measurement).
    Degraded is not unhealthy: the API still takes usage, so it stays in service."""
    svc = services(request)
    report = await svc.health.latest()
    degraded = svc.pipeline.degraded(svc.settings.selection_max_lag_s)
    status = ("degraded" if degraded else "ok") if report.healthy else "unhealthy"
    body = {"status": status, "checks": report.checks, "degraded": degraded}
    return JSONResponse(body, 200 if report.healthy else 503)


@ops_endpoint
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
    Route("/health", liveness, methods=["GET"]),
    Route("/health/deep", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
