"""The dashboard's views as HTML fragments, which the page's script puts in place. Pure rendering.

Every text that comes from data is escaped here; the charts are charts.py's SVG. Figures sit in elements with data-
attributes (data-figure, data-label, data-state, data-chart, ...) so that scripts and tests read the page without
scraping its layout. No inline style or script anywhere: the page's Content-Security-Policy would refuse them.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable

from ingest_api.chart_data import daily_spend, format_usd, pipeline_series
from ingest_api.charts import daily_spend_chart, org_spend_chart, pipeline_charts, quota_chart
from ingest_api.dashboard import AdminDashboard, ClientDashboard
from ingest_api.spend import ModelChoice

# Orgs drawn in the spend chart; the table below it lists every org.
ORGS_CHARTED = 15


def _e(value: object) -> str:
    return html.escape(str(value))


def _attrs(attributes: dict[str, object]) -> str:
    return "".join(f' {name}="{_e(value)}"' for name, value in attributes.items())


def _cell(value: object, figure: str, alert: bool = False) -> str:
    css = ' class="alert"' if alert else ""
    return f'<td data-figure="{_e(figure)}"{css}>{_e(value)}</td>'


def _table(header: Iterable[str], rows: Iterable[str], css: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _chart(name: str, svg: str) -> str:
    return f'<div class="chart" data-chart="{name}">{svg}</div>'


def _badge(state: str) -> str:
    return f'<span class="state state-{_e(state.lower())}">{_e(state)}</span>'


def _selection_row(choice: ModelChoice) -> str:
    selection = choice.selection
    label = selection.model_label
    model_id = choice.org.settings.models[label].bedrock_model_id if label is not None else "-"
    return (
        f"<tr{_attrs({'data-app': choice.app.app_id, 'data-mode': selection.mode})}>"
        f"<td>{_e(choice.app.app_id)}</td>"
        + _cell(label or "none: every label is used up", figure="selection.model_label")
        + f"<td>{_e(model_id)}</td><td>{_badge(selection.mode)}</td>"
        + f"<td>{'yes, to position ' + str(selection.position) if selection.position > 0 and label else 'no'}</td>"
        + "</tr>"
    )


def render_client(view: ClientDashboard) -> str:
    org = view.org
    settings = org.settings
    scope = "app" if view.app is not None else "org"
    title = f"{settings.name or 'Org'} · app {view.app.app_id}" if view.app is not None else settings.name or "Org"
    quota_rows = [
        f"<tr{_attrs({'data-label': r.model_label, 'data-scope': r.scope, 'data-state': r.state})}>"
        f"<td>{_e(r.model_label)}</td><td>{_e(r.scope)}</td>"
        + _cell(format_usd(r.spend_usd_micros), figure="spend")
        + _cell("-" if r.quota_usd_micros is None else format_usd(r.quota_usd_micros), figure="quota")
        + _cell("-" if r.used_percent is None else f"{r.used_percent:.1f}%", figure="percent")
        + f"<td>{_badge(r.state)}</td></tr>"
        for r in view.quota_rows
    ]
    more_apps = f"<p>{view.apps_not_shown} more apps are not shown.</p>" if view.apps_not_shown else ""
    recent = view.recent
    days = [day.strftime("%m-%d") for day in recent.days]
    return (
        f'<section class="view"{_attrs({"data-view": scope, "data-org": org.org_id})}>'
        f"<h2>{_e(title)} <small>{_e(org.org_id)}</small></h2>"
        f"<p>Today is {_e(view.today.isoformat())} in {_e(settings.timezone)}; quota scope {_e(settings.quota_scope)}."
        " TIGHT: at least 95% of a quota used; EXHAUSTED: all of it.</p>"
        '<section class="panel"><h3>Model selection now</h3>'
        + _table(
            ["app", "model label", "Bedrock model", "mode", "fallback"], map(_selection_row, view.choices), "selection"
        )
        + more_apps
        + "</section>"
        '<section class="panel"><h3>Today\'s spend against each quota</h3>'
        + _chart("quota", quota_chart(view.quota_rows))
        + _table(["label", "quota", "spend", "quota amount", "used", "state"], quota_rows, "quota")
        + "</section>"
        f'<section class="panel"><h3>Spend per label, last {len(recent.days)} days</h3>'
        + _chart("daily-spend", daily_spend_chart(days, daily_spend(recent)))
        + "</section></section>"
    )


def render_admin(view: AdminDashboard) -> str:
    return (
        '<section class="view" data-view="admin"><h2>Operator view</h2>'
        + _orgs(view)
        + _history(view)
        + _figures_now(view)
        + _health(view)
        + "</section>"
    )


def _health(view: AdminDashboard) -> str:
    report = view.health
    rows = (
        f"<tr{_attrs({'data-check': name})}><td>{_e(name)}</td>"
        f"<td>{_badge('OK' if result in ('OK', 'ACTIVE') else 'FAILING')} {_e(result)}</td></tr>"
        for name, result in report.checks.items()
    )
    overall = "healthy" if report.healthy else "unhealthy"
    return (
        f'<section class="panel" data-health="{overall}"><h3>Pipeline health: {overall}</h3>'
        + _table(["table or queue", "status"], rows, "health")
        + "</section>"
    )


def _figure(label: str, figure: str, value: object, alert: bool = False) -> str:
    return f"<tr><td>{_e(label)}</td>{_cell(value, figure, alert)}</tr>"


def _figures_now(view: AdminDashboard) -> str:
    status = view.status
    if status is None:
        unread = '<p class="alert">The pipeline figures could not be read yet.</p>'
        return f'<section class="panel"><h3>Now</h3>{unread}</section>'
    q, d = status.queue, status.dead_letter
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.measured_at))
    rows = [
        _figure(f"usage queue {q.name}: visible", "queue.visible", q.visible),
        _figure("usage queue: in flight", "queue.in_flight", q.in_flight),
        _figure("usage queue: delayed", "queue.delayed", q.delayed),
        # Anything in the dead-letter queue needs an operator: it is marked.
        _figure(f"dead letters {d.name}: visible", "dead_letter.visible", d.visible, alert=d.visible > 0),
        _figure("dead letters: in flight", "dead_letter.in_flight", d.in_flight),
        _figure("aggregator: records pending", "aggregator.pending_records", status.pending_records),
        _figure("aggregator: lag (s)", "aggregator.lag_s", f"{status.lag_s:.1f}"),
        _figure("aggregator: shards", "aggregator.shards", len(status.shards)),
    ]
    return (
        f'<section class="panel"><h3>Now <small>measured {_e(measured)}</small></h3>'
        f'<table class="figures"><tbody>{"".join(rows)}</tbody></table></section>'
    )


def _history(view: AdminDashboard) -> str:
    messages, lag = pipeline_charts(pipeline_series(view.samples))
    return (
        f'<section class="panel" data-samples="{len(view.samples)}"><h3>Last hour</h3>'
        f"<p>{len(view.samples)} samples, one every {view.sample_interval_s:g} s, kept by this API process.</p>"
        + _chart("messages", messages)
        + _chart("lag", lag)
        + "</section>"
    )


def _orgs(view: AdminDashboard) -> str:
    rows = [
        f"<tr{_attrs({'data-org': row.org.org_id})}><td>{_e(row.org.settings.name)}</td><td>{_e(row.org.org_id)}</td>"
        f"<td>{_e(row.day.isoformat())} {_e(row.org.settings.timezone)}</td>"
        + _cell(format_usd(row.total.cost_usd_micros), figure="spend")
        + _cell(row.total.request_count, figure="requests")
        + "</tr>"
        for row in view.orgs
    ]
    charted = [(_org_name(row.org.settings.name, row.org.org_id), row.total.cost_usd_micros) for row in view.orgs]
    charted = [item for item in charted if item[1] > 0][:ORGS_CHARTED]
    capped = f"<p>Only the first {view.orgs_limit} orgs are listed.</p>" if len(view.orgs) >= view.orgs_limit else ""
    return (
        f'<section class="panel"><h3>Spend today by org <small>{len(view.orgs)} orgs, each on its own day</small></h3>'
        + _chart("org-spend", org_spend_chart(charted))
        + capped
        + _table(["org", "org id", "day", "spend", "requests"], rows, "orgs")
        + "</section>"
    )


def _org_name(name: str, org_id: str) -> str:
    """An org as a chart label: its name (which need not be unique) and the start of its id (which is)."""
    return f"{name[:24] or 'org'} {org_id[:8]}"
