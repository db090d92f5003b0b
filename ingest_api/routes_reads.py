"""Daily aggregates and quota-aware model selection, both from spend rolled up by the aggregator."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aggregator.rollup import Totals
from catalog.model import App, Org
from ingest_api.auth import authorize, require_token
from ingest_api.context import Services, services
from ingest_api.errors import ApiError
from ingest_api.requests import path_app_id, path_org_id
from ingest_api.selection import TIGHT_PERCENT, select_model
from ingest_api.spend import cost_by_label, read_day

CACHE_TIGHT_S = 60
CACHE_NORMAL_S = 300
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


async def _org(svc: Services, org_id: str) -> Org:
    org = await svc.catalog.get_org(org_id)
    if org is None:
        raise ApiError(404, "ORG_NOT_FOUND", f"org {org_id} does not exist")
    return org


async def _app(svc: Services, org_id: str, app_id: str) -> App:
    app = await svc.catalog.get_app(org_id, app_id)
    if app is None:
        raise ApiError(404, "APP_NOT_FOUND", f"app {app_id} does not exist in org {org_id}")
    return app


def _local_today(svc: Services, org: Org) -> date:
    return svc.now().astimezone(ZoneInfo(org.settings.timezone)).date()


def _requested_day(request: Request, svc: Services, org: Org) -> date:
    raw = request.path_params.get("date")
    if raw is None:
        return _local_today(svc, org)
    # fromisoformat alone also takes 20240101 and 2024-W01-1: the documented form is YYYY-MM-DD only.
    if not _DATE.fullmatch(str(raw)):
        raise ApiError(400, "INVALID_DATE", "date must be YYYY-MM-DD")
    try:
        return date.fromisoformat(str(raw))
    except ValueError as exc:
        raise ApiError(400, "INVALID_DATE", "date must be YYYY-MM-DD") from exc


def _model_rows(by_label: dict[str, Totals], org: Org, quotas: dict[str, int | None]) -> list[dict[str, Any]]:
    labels = list(org.settings.model_ordering) + sorted(set(by_label) - set(org.settings.model_ordering))
    rows = []
    for label in labels:
        totals = by_label.get(label, Totals())
        quota = quotas.get(label)
        rows.append(
            {
                "model_label": label,
                **totals.as_dict(),
                "quota_usd_micros": quota,
                "quota_used_percent": None if not quota else round(100.0 * totals.cost_usd_micros / quota, 2),
            }
        )
    return rows


def _total(by_label: dict[str, Totals]) -> dict[str, int]:
    total = Totals()
    for totals in by_label.values():
        total.merge(totals)
    return total.as_dict()


async def org_aggregates(request: Request) -> JSONResponse:
    svc = services(request)
    org_id = path_org_id(request)
    claims = await require_token(request, svc)
    authorize(claims.principal, org_id, None)
    org = await _org(svc, org_id)
    day = _requested_day(request, svc, org)
    spend = await read_day(svc.clients.dynamodb, svc.settings.aws.names.aggregates_table, org_id, day.isoformat())
    by_label = spend.org_by_label()
    quotas: dict[str, int | None] = {
        label: org.settings.daily_quotas_usd_micros.get(label) if org.settings.quota_scope == "ORG" else None
        for label in org.settings.models
    }
    return JSONResponse(
        {
            "org_id": org_id,
            "date": day.isoformat(),
            "timezone": org.settings.timezone,
            "quota_scope": org.settings.quota_scope,
            "total": _total(by_label),
            "models": _model_rows(by_label, org, quotas),
            "apps": sorted({app for app, _ in spend.by_app_label}),
        }
    )


async def app_aggregates(request: Request) -> JSONResponse:
    svc = services(request)
    org_id, app_id = path_org_id(request), path_app_id(request)
    claims = await require_token(request, svc)
    authorize(claims.principal, org_id, app_id)
    org = await _org(svc, org_id)
    app = await _app(svc, org_id, app_id)
    day = _requested_day(request, svc, org)
    spend = await read_day(svc.clients.dynamodb, svc.settings.aws.names.aggregates_table, org_id, day.isoformat())
    by_label = spend.app_by_label(app_id)
    quotas: dict[str, int | None] = {}
    for label in org.settings.models:
        app_quota = app.settings.daily_quotas_usd_micros.get(label)
        if app_quota is None and org.settings.quota_scope == "APP":
            app_quota = org.settings.daily_quotas_usd_micros.get(label)
        quotas[label] = app_quota
    return JSONResponse(
        {
            "org_id": org_id,
            "app_id": app_id,
            "date": day.isoformat(),
            "timezone": org.settings.timezone,
            "quota_scope": org.settings.quota_scope,
            "total": _total(by_label),
            "models": _model_rows(by_label, org, quotas),
        }
    )


async def model_selection(request: Request) -> JSONResponse:
    svc = services(request)
    org_id, app_id = path_org_id(request), path_app_id(request)
    claims = await require_token(request, svc)
    authorize(claims.principal, org_id, app_id)
    org = await _org(svc, org_id)
    app = await _app(svc, org_id, app_id)
    today = _local_today(svc, org).isoformat()
    spend = await read_day(svc.clients.dynamodb, svc.settings.aws.names.aggregates_table, org_id, today)
    sticky = await svc.fallbacks.position(org_id, app_id, today)
    selection = select_model(
        org, app, cost_by_label(spend.org_by_label()), cost_by_label(spend.app_by_label(app_id)), sticky
    )
    if selection.position > sticky:
        await svc.fallbacks.raise_to(org_id, app_id, today, selection.position)
    labels = [
        {
            "model_label": status.model_label,
            "available": status.available,
            "quota_used_percent": None if status.percent is None else round(status.percent, 2),
            "caps": [
                {"scope": c.scope, "spend_usd_micros": c.spend_usd_micros, "quota_usd_micros": c.quota_usd_micros}
                for c in status.caps
            ],
        }
        for status in selection.statuses
    ]
    svc.metrics.selections.labels(selection.mode).inc()
    if selection.model_label is None:
        midnight = datetime.combine(
            date.fromisoformat(today) + timedelta(days=1), datetime.min.time(), ZoneInfo(org.settings.timezone)
        )
        retry_after = max(1, int((midnight - svc.now()).total_seconds()))
        raise ApiError(
            429,
            "QUOTA_EXCEEDED",
            "every model in the ordering has used its daily quota",
            details={"date": today, "labels": labels},
            headers={"Retry-After": str(retry_after), "Cache-Control": f"private, max-age={CACHE_TIGHT_S}"},
        )
    max_age = CACHE_TIGHT_S if selection.mode == "TIGHT" else CACHE_NORMAL_S
    return JSONResponse(
        {
            "org_id": org_id,
            "app_id": app_id,
            "date": today,
            "model_label": selection.model_label,
            "bedrock_model_id": org.settings.models[selection.model_label].bedrock_model_id,
            "mode": selection.mode,
            "fallback": selection.position > 0,
            "position": selection.position,
            "ordering": app.ordering(org),
            "tight_threshold_percent": TIGHT_PERCENT,
            "labels": labels,
        },
        headers={"Cache-Control": f"private, max-age={max_age}"},
    )


routes = [
    Route("/api/v1/orgs/{org_id}/aggregates/today", org_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/aggregates/{date}", org_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/aggregates/today", app_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/aggregates/{date}", app_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/model-selection", model_selection, methods=["GET"]),
]
