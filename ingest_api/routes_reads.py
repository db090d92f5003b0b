"""Daily and date-range aggregates and quota-aware model selection, rendered from what the spend service reports."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aggregator.aggregates import COUNTERS, Totals
from catalog.model import App, Org
from ingest_api.auth import ClientCall, client_endpoint
from ingest_api.errors import ApiError
from ingest_api.selection import TIGHT_PERCENT, describe_labels
from ingest_api.spend import DayReport, RangeReport, report_labels

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def _parse_day(raw: str, name: str) -> date:
    # fromisoformat alone also takes 20240101 and 2024-W01-1: the documented form is YYYY-MM-DD only.
    if not _DATE.fullmatch(raw):
        raise ApiError(400, "INVALID_DATE", f"{name} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ApiError(400, "INVALID_DATE", f"{name} must be YYYY-MM-DD") from exc


def _requested_day(request: Request) -> date | None:
    """The path's date; None for .../today, which is the org's own today."""
    raw = request.path_params.get("date")
    return None if raw is None else _parse_day(str(raw), "date")


@dataclass(frozen=True)
class RangeQuery:
    first: date
    last: date
    as_csv: bool


def _range_query(request: Request) -> RangeQuery:
    """from and to (org-local days, both included) and the format; whether the days make a range is the service's.

    ?format= decides when given; otherwise the Accept header, CSV only when it names text/csv.
    """
    missing = [name for name in ("from", "to") if not request.query_params.get(name)]
    if missing:
        raise ApiError(400, "MISSING_DATE_RANGE", f"query parameters from and to (YYYY-MM-DD) are required: {missing}")
    chosen = request.query_params.get("format")
    if chosen is not None and chosen not in ("json", "csv"):
        raise ApiError(400, "INVALID_FORMAT", "format must be json or csv")
    as_csv = chosen == "csv" if chosen is not None else "text/csv" in request.headers.get("accept", "")
    return RangeQuery(
        _parse_day(request.query_params["from"], "from"), _parse_day(request.query_params["to"], "to"), as_csv
    )


def _model_rows(report: DayReport) -> list[dict[str, Any]]:
    labels = report_labels(report.org, report.app, set(report.by_label))
    rows = []
    for label in labels:
        totals = report.by_label.get(label, Totals())
        quota = report.quotas.get(label)
        rows.append(
            {
                "model_label": label,
                **totals.as_dict(),
                "by_category": totals.by_category(),
                "quota_usd_micros": quota,
                "quota_used_percent": None if not quota else round(100.0 * totals.cost_usd_micros / quota, 2),
            }
        )
    return rows


def _total(by_label: dict[str, Totals]) -> dict[str, Any]:
    total = Totals()
    for totals in by_label.values():
        total.merge(totals)
    return {**total.as_dict(), "by_category": total.by_category()}


def _label_pricing(org: Org, app: App, label: str) -> dict[str, Any]:
    """What the client should call for a label, and what it costs there."""
    spec = org.settings.models.get(label)
    if spec is not None:
        return {"bedrock_model_id": spec.bedrock_model_id, "inference_profile_id": None, "pricing": spec.described()}
    profile = app.profiles[label]
    return {
        # A profile is invoked by its id or ARN; the model that serves a call depends on the calling Region.
        "bedrock_model_id": profile.inference_profile_id,
        "inference_profile_id": profile.inference_profile_id,
        "pricing": {
            "regions": {
                region: {"bedrock_model_id": route.bedrock_model_id, **route.described()}
                for region, route in profile.regions.items()
            }
        },
    }


def _day_body(report: DayReport) -> dict[str, Any]:
    return {
        "date": report.day.isoformat(),
        "timezone": report.org.settings.timezone,
        "quota_scope": report.org.settings.quota_scope,
        "total": _total(report.by_label),
        "models": _model_rows(report),
    }


@client_endpoint("org")
async def org_aggregates(request: Request, call: ClientCall) -> JSONResponse:
    day = _requested_day(request)
    report = await call.svc.spend.org_day(call.org_id, day)
    return JSONResponse({"org_id": call.org_id, **_day_body(report), "apps": report.apps})


@client_endpoint("app")
async def app_aggregates(request: Request, call: ClientCall) -> JSONResponse:
    assert call.app_id is not None
    day = _requested_day(request)
    report = await call.svc.spend.app_day(call.org_id, call.app_id, day)
    return JSONResponse({"org_id": call.org_id, "app_id": call.app_id, **_day_body(report)})


def _range_row(label: str, totals: Totals) -> dict[str, Any]:
    return {"model_label": label, **totals.as_dict(), "by_category": totals.by_category()}


def _range_body(report: RangeReport) -> dict[str, Any]:
    labels = report.labels
    by_label = report.by_label()
    return {
        "from": report.days[0].isoformat(),
        "to": report.days[-1].isoformat(),
        "timezone": report.org.settings.timezone,
        "total": _total(by_label),
        "models": [_range_row(label, by_label[label]) for label in labels],
        "days": [
            {
                "date": day.isoformat(),
                "total": _total(spend),
                "models": [_range_row(label, spend.get(label, Totals())) for label in labels],
            }
            for day, spend in zip(report.days, report.by_day, strict=True)
        ],
    }


def _range_csv(report: RangeReport) -> str:
    """A row per day and label, every label on every day (zeros included): a sheet that needs no filling in."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "model_label", *COUNTERS])
    for day, spend in zip(report.days, report.by_day, strict=True):
        for label in report.labels:
            counters = spend.get(label, Totals()).as_dict()
            writer.writerow([day.isoformat(), label, *(counters[name] for name in COUNTERS)])
    return out.getvalue()


def _range_response(query: RangeQuery, report: RangeReport, ids: dict[str, str]) -> Response:
    if query.as_csv:
        name = "-".join(["aggregates", *ids.values(), report.days[0].isoformat(), report.days[-1].isoformat()])
        return Response(
            _range_csv(report),
            media_type=CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return JSONResponse({**ids, **_range_body(report)})


@client_endpoint("org")
async def org_range(request: Request, call: ClientCall) -> Response:
    query = _range_query(request)
    report = await call.svc.spend.org_range(call.org_id, query.first, query.last)
    return _range_response(query, report, {"org_id": call.org_id})


@client_endpoint("app")
async def app_range(request: Request, call: ClientCall) -> Response:
    assert call.app_id is not None
    query = _range_query(request)
    report = await call.svc.spend.app_range(call.org_id, call.app_id, query.first, query.last)
    return _range_response(query, report, {"org_id": call.org_id, "app_id": call.app_id})


@client_endpoint("app")
async def model_selection(request: Request, call: ClientCall) -> JSONResponse:
    assert call.app_id is not None
    choice = await call.svc.spend.choose_model(call.org_id, call.app_id)
    selection = choice.selection
    return JSONResponse(
        {
            "org_id": call.org_id,
            "app_id": call.app_id,
            "date": choice.day.isoformat(),
            "model_label": choice.model_label,
            **_label_pricing(choice.org, choice.app, choice.model_label),
            "mode": selection.mode,
            "fallback": selection.position > 0,
            "position": selection.position,
            "ordering": choice.app.ordering(choice.org),
            "tight_threshold_percent": TIGHT_PERCENT,
            "labels": describe_labels(selection),
            # How recent the spend behind this answer is; degraded: too old to answer NORMAL (kept briefly).
            "metering": {
                "lag_s": None if choice.metering_lag_s is None else round(choice.metering_lag_s, 3),
                "degraded": choice.degraded,
            },
        },
        headers={"Cache-Control": f"private, max-age={choice.max_age_s}"},
    )


routes = [
    Route("/api/v1/orgs/{org_id}/aggregates", org_range, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/aggregates", app_range, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/aggregates/today", org_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/aggregates/{date}", org_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/aggregates/today", app_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/aggregates/{date}", app_aggregates, methods=["GET"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/model-selection", model_selection, methods=["GET"]),
]
