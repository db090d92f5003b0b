"""Health, Prometheus metrics, the HTML status page and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from infra.resources import table_specs
from ingest_api.context import services
from ingest_api.openapi import build_openapi
from ingest_api.status_page import render_status, render_unavailable

HEALTH_CHECK_TIMEOUT_S = 2.0


async def health(request: Request) -> JSONResponse:
    svc = services(request)
    names = svc.settings.aws.names

    async def table(name: str) -> str:
        description = await svc.clients.dynamodb.describe_table(TableName=name)
        return str(description["Table"].get("TableStatus", "UNKNOWN"))

    async def queue(url: str) -> str:
        await svc.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return "OK"

    checks: dict[str, Any] = {f"table:{s.name}": table(s.name) for s in table_specs(names)}
    checks[f"queue:{names.usage_queue}"] = queue(svc.queue_url)
    checks[f"queue:{names.dead_letter_queue}"] = queue(svc.dlq_url)
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            results[name] = await asyncio.wait_for(check, HEALTH_CHECK_TIMEOUT_S)
        except Exception as exc:
            results[name] = f"ERROR: {type(exc).__name__}"
    healthy = all(v in ("ACTIVE", "OK") for v in results.values())
    return JSONResponse({"status": "ok" if healthy else "unhealthy", "checks": results}, 200 if healthy else 503)


async def metrics(request: Request) -> Response:
    svc = services(request)
    await svc.metrics.refresh(svc.clients, svc.settings.aws.names, svc.settings.metrics_refresh_s)
    return svc.metrics.exposition()


async def status_page(request: Request) -> HTMLResponse:
    svc = services(request)
    # The same measurement as /metrics, so a browser tab left open costs no more than a scraper does.
    await svc.metrics.refresh(svc.clients, svc.settings.aws.names, svc.settings.metrics_refresh_s)
    status = svc.metrics.last_status
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
