"""GET /status: the figures of `costkeeper queue` as a small HTML page that refreshes itself, for a browser tab.

Pure rendering: the route hands in the PipelineStatus the metrics refresh already measured. Every figure sits in a
cell with a data-figure attribute, so scripts (and tests) can read the page without scraping its layout.
"""

from __future__ import annotations

import html
import time

from ingest_api.pipeline_status import PipelineStatus

REFRESH_S = 5

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:.3em .8em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    ".alert{color:#b00;font-weight:bold}"
)


def _row(label: str, figure: str, value: object, alert: bool = False) -> str:
    css = ' class="alert"' if alert else ""
    return f'<tr><td>{html.escape(label)}</td><td data-figure="{figure}"{css}>{html.escape(str(value))}</td></tr>'


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def render_status(status: PipelineStatus, title: str = "Bedrock Cost Keeper") -> str:
    q, d = status.queue, status.dead_letter
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.measured_at))
    queue_rows = "".join(
        [
            _row("visible", "queue.visible", q.visible),
            _row("in flight", "queue.in_flight", q.in_flight),
            _row("delayed", "queue.delayed", q.delayed),
        ]
    )
    # Anything in the dead-letter queue needs an operator: it is shown in red.
    dead_rows = "".join(
        [
            _row("visible", "dead_letter.visible", d.visible, alert=d.visible > 0),
            _row("in flight", "dead_letter.in_flight", d.in_flight),
        ]
    )
    aggregator_rows = "".join(
        [
            _row("records pending", "aggregator.pending_records", status.pending_records),
            _row("lag (s)", "aggregator.lag_s", f"{status.lag_s:.1f}"),
            _row("shards", "aggregator.shards", len(status.shards)),
        ]
    )
    body = (
        f"<p>Measured {html.escape(measured)}; this page reloads every {REFRESH_S} s.</p>"
        f"<h2>Usage queue <small>{html.escape(q.name)}</small></h2><table>{queue_rows}</table>"
        f"<h2>Dead letters <small>{html.escape(d.name)}</small></h2><table>{dead_rows}</table>"
        f"<h2>Aggregator</h2><table>{aggregator_rows}</table>"
    )
    return _page(title, body)


def render_unavailable(title: str = "Bedrock Cost Keeper") -> str:
    return _page(title, '<p class="alert">The pipeline figures could not be read; see the API log.</p>')
