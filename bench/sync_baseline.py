"""The naive design, for comparison: price and write to DynamoDB inside the request, then answer.

Per event, before the response: validate, price, conditional PutItem of the usage item (the same item and condition
as the worker's), and if it was new, UpdateItem ADD of its aggregate (the same update the aggregator commits). The
events of a batch are written concurrently. There is no queue, stream or aggregator, so the aggregate is current the
moment the client has its answer: lag 0 by construction, and two DynamoDB writes per event.

It skips token authentication (the client's bearer token is ignored), which only flatters its figures. Served like the
API: one uvicorn process. `python -m bench.sync_baseline` (CK_RESOURCE_PREFIX, CK_API_PORT, CK_BASELINE_STATS_FILE).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aggregator.aggregates import Totals, aggregate_update
from aggregator.usage_record import UsageRecord
from catalog.model import App, Org
from catalog.store import CatalogStore
from ingest_api.submission import BatchSubmission, Rejection, UsageSubmission, check_against, to_event
from runtime.aws import AwsSettings, open_async_clients
from runtime.stats_file import stats_path, write_stats
from workers.pricing import price_event

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

CLOCK_SKEW_S = 60
LATE_ARRIVAL_GRACE_S = 900


@dataclass
class BaselineStats:
    put_items: int = 0
    update_items: int = 0
    duplicates: int = 0
    events_accepted: int = 0


@dataclass
class _State:
    ddb: DynamoDBClient
    catalog: CatalogStore
    usage_table: str
    aggregates_table: str
    stats: BaselineStats


def _state(request: Request) -> _State:
    state: _State = request.app.state.baseline
    return state


async def _org(state: _State, request: Request) -> tuple[Org, App] | JSONResponse:
    org_id, app_id = str(request.path_params["org_id"]), str(request.path_params["app_id"])
    org = await state.catalog.get_org(org_id)
    app = await state.catalog.get_app(org_id, app_id)
    if org is None or app is None:
        return JSONResponse({"error": {"code": "NOT_FOUND", "message": "no such org or app"}}, 404)
    return org, app


async def _write(state: _State, org: Org, app: App, submission: UsageSubmission, now: datetime) -> None:
    # Priced exactly as the worker prices; check_against has already refused unknown labels.
    event = to_event(submission, org.org_id, app.app_id, now)
    record = price_event(org, app, event, int(time.time() * 1000))
    assert isinstance(record, UsageRecord)
    state.stats.put_items += 1
    try:
        await state.ddb.put_item(
            TableName=state.usage_table, Item=record.to_item(), ConditionExpression="attribute_not_exists(pk)"
        )
    except state.ddb.exceptions.ConditionalCheckFailedException:
        state.stats.duplicates += 1
        return
    totals = Totals()
    totals.add(record)
    state.stats.update_items += 1
    await state.ddb.update_item(
        **aggregate_update(state.aggregates_table, record.aggregate_key, totals, str(int(time.time() * 1000)))
    )


def _checked(raw: object, org: Org, app: App, now: datetime) -> UsageSubmission:
    submission = UsageSubmission.model_validate(raw)
    check_against(submission, org, app, now, CLOCK_SKEW_S, LATE_ARRIVAL_GRACE_S)
    return submission


async def submit(request: Request) -> JSONResponse:
    state = _state(request)
    target = await _org(state, request)
    if isinstance(target, JSONResponse):
        return target
    org, app = target
    now = datetime.now(UTC)
    try:
        submission = _checked(await request.json(), org, app, now)
    except (ValidationError, Rejection) as exc:
        return JSONResponse({"error": {"code": "INVALID", "message": str(exc)[:500]}}, 422)
    await _write(state, org, app, submission, now)
    state.stats.events_accepted += 1
    return JSONResponse({"status": "accepted", "request_id": submission.request_id.lower()}, 202)


async def submit_batch(request: Request) -> JSONResponse:
    state = _state(request)
    target = await _org(state, request)
    if isinstance(target, JSONResponse):
        return target
    org, app = target
    now = datetime.now(UTC)
    try:
        batch = BatchSubmission.model_validate(await request.json())
    except ValidationError as exc:
        return JSONResponse({"error": {"code": "INVALID", "message": str(exc)[:500]}}, 422)
    results: list[dict[str, Any]] = []
    valid: list[UsageSubmission] = []
    for index, raw in enumerate(batch.items):
        try:
            valid.append(_checked(raw, org, app, now))
            results.append({"index": index, "status": 202})
        except (ValidationError, Rejection) as exc:
            results.append({"index": index, "status": 422, "error": {"message": str(exc)[:200]}})
    await asyncio.gather(*(_write(state, org, app, s, now) for s in valid))
    state.stats.events_accepted += len(valid)
    return JSONResponse({"accepted": len(valid), "rejected": len(results) - len(valid), "results": results}, 207)


def create_app(settings: AwsSettings) -> Starlette:
    stats_file = stats_path(os.environ, "CK_BASELINE_STATS_FILE")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_async_clients(settings) as clients:
            stats = BaselineStats()
            app.state.baseline = _State(
                ddb=clients.dynamodb,
                catalog=CatalogStore(clients.dynamodb, settings.names.config_table, 5.0),
                usage_table=settings.names.usage_table,
                aggregates_table=settings.names.aggregates_table,
                stats=stats,
            )
            try:
                yield
            finally:
                if stats_file is not None:
                    write_stats(stats_file, "sync-baseline", dict(vars(stats)))

    return Starlette(
        routes=[
            Route("/health", lambda request: JSONResponse({"status": "ok"}), methods=["GET"]),
            Route("/api/v1/orgs/{org_id}/apps/{app_id}/usage", submit, methods=["POST"]),
            Route("/api/v1/orgs/{org_id}/apps/{app_id}/usage/batch", submit_batch, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    uvicorn.run(
        create_app(AwsSettings.from_env()),
        host="127.0.0.1",
        port=int(os.environ.get("CK_API_PORT", "8090")),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
