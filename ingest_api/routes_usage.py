"""Usage submission: one event (202) or a batch of up to 100 with a result per item (207)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from catalog.model import Org
from ingest_api.auth import authorize, require_token
from ingest_api.context import Services, services
from ingest_api.errors import ApiError, invalid_body, validation_details
from ingest_api.publisher import QueueUnavailable
from ingest_api.requests import body_as, path_app_id, path_org_id
from ingest_api.submission import (
    BatchSubmission,
    Rejection,
    UsageSubmission,
    check_against_org,
    is_request_id,
    to_event,
)
from workers.message import UsageEvent


async def _target(request: Request, svc: Services) -> tuple[Org, str]:
    org_id, app_id = path_org_id(request), path_app_id(request)
    claims = await require_token(request, svc)
    authorize(claims.principal, org_id, app_id)
    org = await svc.catalog.get_org(org_id)
    if org is None:
        raise ApiError(404, "ORG_NOT_FOUND", f"org {org_id} does not exist")
    if await svc.catalog.get_app(org_id, app_id) is None:
        raise ApiError(404, "APP_NOT_FOUND", f"app {app_id} does not exist in org {org_id}")
    return org, app_id


async def _enqueue(svc: Services, events: list[UsageEvent]) -> None:
    try:
        await svc.publisher.publish(events)
    except QueueUnavailable as exc:
        svc.metrics.events_failed.inc(len(events))
        raise ApiError(
            503,
            "QUEUE_UNAVAILABLE",
            "usage may not have been queued; retry with the same request_id (a retry is never counted twice)",
            headers={"Retry-After": "1"},
        ) from exc
    svc.metrics.events_accepted.inc(len(events))


async def submit(request: Request) -> JSONResponse:
    svc = services(request)
    org, app_id = await _target(request, svc)
    submission = await body_as(request, UsageSubmission)
    now = svc.now()
    try:
        check_against_org(submission, org, now, svc.settings.clock_skew_s, svc.settings.late_arrival_grace_s)
    except Rejection as exc:
        svc.metrics.events_rejected.labels(exc.code).inc()
        raise ApiError(422, exc.code, exc.message) from exc
    await _enqueue(svc, [to_event(submission, org.org_id, app_id, now)])
    return JSONResponse({"status": "accepted", "request_id": submission.request_id.lower()}, status_code=202)


async def submit_batch(request: Request) -> JSONResponse:
    svc = services(request)
    org, app_id = await _target(request, svc)
    batch = await body_as(request, BatchSubmission)
    now = svc.now()
    results: list[dict[str, Any]] = []
    events: list[UsageEvent] = []
    seen: set[str] = set()
    for index, raw in enumerate(batch.items):
        result: dict[str, Any] = {"index": index}
        request_id = raw.get("request_id")
        # Echoed only when well-formed: a client's garbage (a megabyte of it, a lone surrogate that no UTF-8
        # encoder takes) must not make the whole answer huge or unrenderable.
        if is_request_id(request_id):
            result["request_id"] = request_id.lower()
        try:
            submission = UsageSubmission.model_validate(raw)
            check_against_org(submission, org, now, svc.settings.clock_skew_s, svc.settings.late_arrival_grace_s)
            if submission.request_id.lower() in seen:
                raise Rejection("DUPLICATE_IN_BATCH", "this request_id appears earlier in the same batch")
        except ValidationError as exc:
            error = invalid_body(exc)
            result.update(
                status=422, error={"code": error.code, "message": "invalid item", "details": validation_details(exc)}
            )
            svc.metrics.events_rejected.labels(error.code).inc()
        except Rejection as exc:
            result.update(status=422, error={"code": exc.code, "message": exc.message})
            svc.metrics.events_rejected.labels(exc.code).inc()
        else:
            seen.add(submission.request_id.lower())
            events.append(to_event(submission, org.org_id, app_id, now))
            result["status"] = 202
        results.append(result)
    if events:
        await _enqueue(svc, events)
    accepted = len(events)
    return JSONResponse(
        {"accepted": accepted, "rejected": len(results) - accepted, "results": results}, status_code=207
    )


routes = [
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/usage", submit, methods=["POST"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/usage/batch", submit_batch, methods=["POST"]),
]
