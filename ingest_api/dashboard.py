"""What the dashboard shows each viewer, gathered from the services; dashboard_page.py renders it.

A token's holder sees their own org or app: today's spend against each quota, the model selection's answer now, the
last RECENT_DAYS days. The admin sees every org's spend today and the pipeline: its health, its figures now and over
the last hour (sampled by the API, pipeline_history.py). Nothing here takes a tenant from the request: the viewer's
credential is the only say in whose data is read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date

from catalog.credentials import Principal
from catalog.model import App, Org
from ingest_api.chart_data import QuotaRow, app_quota_rows, org_quota_rows
from ingest_api.context import Services
from ingest_api.health import HealthReport
from ingest_api.pipeline_history import PipelineSample
from ingest_api.pipeline_status import PipelineStatus
from ingest_api.spend import ModelChoice, OrgSpend, RangeReport

RECENT_DAYS = 30
# An org's page shows each app's model selection (two reads each); past this many apps the rest are counted only.
MAX_APPS_SHOWN = 50
# The operator's page lists orgs from a Scan of the config table; past this many the page says so.
MAX_ORGS_SHOWN = 500


@dataclass(frozen=True)
class ClientDashboard:
    org: Org
    app: App | None  # None: an org token's view of the whole org
    today: date
    quota_rows: list[QuotaRow]
    choices: list[ModelChoice]  # one per app shown
    apps_not_shown: int
    recent: RangeReport


@dataclass(frozen=True)
class AdminDashboard:
    orgs: list[OrgSpend]
    orgs_limit: int
    status: PipelineStatus | None  # None: never measured yet
    samples: list[PipelineSample]
    sample_interval_s: float
    health: HealthReport


async def client_dashboard(svc: Services, principal: Principal) -> ClientDashboard:
    spend = svc.spend
    if principal.app_id is None:
        day = await spend.org_day(principal.org_id, None)
        apps = sorted(await svc.catalog.list_apps(principal.org_id), key=lambda app: app.app_id)
        shown = apps[:MAX_APPS_SHOWN]
        choices = list(await asyncio.gather(*(spend.peek_model(day.org, app) for app in shown)))
        rows = org_quota_rows(day)
        apps_not_shown = len(apps) - len(shown)
    else:
        day = await spend.app_day(principal.org_id, principal.app_id, None)
        assert day.app is not None
        choices = [await spend.peek_model(day.org, day.app)]
        rows = app_quota_rows(choices[0].selection, day)
        apps_not_shown = 0
    recent = await spend.recent_days(day.org, day.app, RECENT_DAYS)
    return ClientDashboard(day.org, day.app, day.day, rows, choices, apps_not_shown, recent)


async def admin_dashboard(svc: Services) -> AdminDashboard:
    orgs = await svc.spend.orgs_today(MAX_ORGS_SHOWN)
    history = svc.pipeline_history
    return AdminDashboard(
        orgs=orgs,
        orgs_limit=MAX_ORGS_SHOWN,
        status=await svc.pipeline.latest(),
        samples=history.window.samples(),
        sample_interval_s=history.interval_s,
        health=await svc.health.check(),
    )
