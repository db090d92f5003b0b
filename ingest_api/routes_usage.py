"""Usage submission: one event (202) or a batch of up to 100 with a result per item (207)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from catalog.model import App, Org
from ingest_api.auth import ClientCall, client_endpoint
from ingest_api.context import Services
from ingest_api.errors import validation_details
from ingest_api.publisher import QueueUnavailable
from ingest_api.rate_limits import Policy
from ingest_api.requests import body_as
from ingest_api.submission import (
    BatchSubmission,
    Rejection,
    UsageSubmission,
    canonical_request_id,
    check_against,
    is_request_id,
    to_event,
)
from workers.message import UsageEvent


async def _target(call: ClientCall) -> tuple[Org, App]:
    assert call.app_id is not None
    org = await call.svc.catalog.require_org(call.org_id)
    return org, await call.svc.catalog.require_app(call.org_id, call.app_id)


async def _enqueue(svc: Services, events: list[UsageEvent]) -> None:
    try:
        await svc.publisher.publish(events)
    except QueueUnavailable:
        svc.metrics.events_failed.inc(len(events))
        raise
    svc.metrics.events_accepted.inc(len(events))


def _check(svc: Services, submission: UsageSubmission, org: Org, app: App, now: datetime) -> None:
    check_against(submission, org, app, now, svc.settings.clock_skew_s, svc.settings.late_arrival_grace_s)


@client_endpoint("app", Policy.USAGE)
async def submit(request: Request, call: ClientCall) -> JSONResponse:
    assert call.app_id is not None
    svc = call.svc
    org, app = await _target(call)
    submission = await body_as(request, UsageSubmission)
    now = svc.now()
    try:
        _check(svc, submission, org, app, now)
    except Rejection as exc:
        svc.metrics.events_rejected.labels(exc.code).inc()
        raise
    await _enqueue(svc, [to_event(submission, org.org_id, call.app_id, now)])
    return JSONResponse({"status": "accepted", "request_id": submission.request_id}, status_code=202)


@client_endpoint("app", Policy.USAGE)
async def submit_batch(request: Request, call: ClientCall) -> JSONResponse:
    assert call.app_id is not None
    svc = call.svc
    org, app = await _target(call)
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
            result["request_id"] = canonical_request_id(request_id)
        try:
            submission = UsageSubmission.model_validate(raw)
            _check(svc, submission, org, app, now)
            if submission.request_id in seen:
                raise Rejection("DUPLICATE_IN_BATCH", "this request_id appears earlier in the same batch")
        except ValidationError as exc:
            result.update(
                status=422,
                error={"code": "VALIDATION_ERROR", "message": "invalid item", "details": validation_details(exc)},
            )
            svc.metrics.events_rejected.labels("VALIDATION_ERROR").inc()
        except Rejection as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.details is not None:
                error["details"] = exc.details
            result.update(status=exc.status, error=error)
            svc.metrics.events_rejected.labels(exc.code).inc()
        else:
            seen.add(submission.request_id)
            events.append(to_event(submission, org.org_id, call.app_id, now))
            result["status"] = 202
        results.append(result)
    if events:
        await _enqueue(svc, events)
    accepted = len(events)
    rejected = len(results) - accepted
    # `failed` is the earlier service's name for `rejected`: its clients read it.
    return JSONResponse(
        {"accepted": accepted, "rejected": rejected, "failed": rejected, "results": results}, status_code=207
    )


routes = [
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/usage", submit, methods=["POST"]),
    Route("/api/v1/orgs/{org_id}/apps/{app_id}/usage/batch", submit_batch, methods=["POST"]),
]
