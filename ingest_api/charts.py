"""The dashboard's charts, drawn on the server as SVG by pygal.

pygal (maintained, pure Python, no JavaScript needed to draw) builds each chart. Its SVG normally carries an inline
<style>, an inline <script> and a style attribute, all of which the dashboard's Content-Security-Policy refuses
(style-src 'self', script-src 'self'): an XML filter takes them out of every chart, and the stylesheet pygal would
have inlined is served once, as a file (`chart_stylesheet`), with each chart's id selector made a class selector.
The tooltips go too (they need pygal's script); a chart's figures are printed on it or in its legend instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pygal
from pygal.style import Style

from ingest_api.chart_data import PipelineSeries, QuotaRow, format_usd

CHART_CLASS = "pygal-chart"
QUOTA_AXIS_PERCENT = 125.0
SERIES_COLOURS = ("#3f51b5", "#00897b", "#8e24aa", "#f9a825", "#6d4c41", "#039be5", "#d81b60", "#7cb342")
# The most series any chart has: the stylesheet carries a colour class for each.
MAX_SERIES = 24
STYLE = Style(
    background="transparent",
    plot_background="#ffffff",
    foreground="#333333",
    foreground_strong="#111111",
    foreground_subtle="#888888",
    font_family="'DejaVu Sans', 'Liberation Sans', Arial, sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    value_font_size=12,
    legend_font_size=13,
    colors=SERIES_COLOURS,
)


def _strict_csp(root: Any) -> Any:
    """Drop what the page's CSP would refuse (and log as a console error): inline <style>/<script>, style attributes,
    and the tooltip overlay that only pygal's script animates."""
    for parent in list(root.iter()):
        for child in list(parent):
            tag = str(child.tag).rsplit("}", 1)[-1]
            if tag in ("style", "script") or "tooltip-overlay" in child.get("class", ""):
                parent.remove(child)
    for element in root.iter():
        element.attrib.pop("style", None)
    return root


def _chart(kind: Callable[..., Any], name: str, height: int, **config: Any) -> Any:
    """A chart with the dashboard's look; `name` becomes its class `chart-{name}`, for tests and the stylesheet."""
    chart = kind(
        style=STYLE,
        js=[],  # pygal's default loads its tooltip script from a CDN
        disable_xml_declaration=True,  # embedded in HTML
        classes=[CHART_CLASS, f"chart-{name}"],
        width=900,
        height=height,
        margin=12,
        legend_at_bottom=True,
        truncate_legend=-1,
        truncate_label=-1,
        **config,
    )
    chart.add_xml_filter(_strict_csp)
    return chart


def _render(chart: Any) -> str:
    svg: str = chart.render(is_unicode=True)
    return svg


def _usd_axis(value: float) -> str:
    return format_usd(round(value))


def quota_chart(rows: Sequence[QuotaRow]) -> str:
    """Each label's use of each cap today: the axis says the amounts, a bar its share; each bar carries its state
    (data-state), which dashboard.css colours (TIGHT orange, EXHAUSTED red) and which the bar's text names."""
    capped = [row for row in rows if row.quota_usd_micros is not None]
    chart = _chart(
        pygal.HorizontalBar,
        "quota",
        height=80 + 42 * max(len(capped), 1),
        # Room past 100% for an exhausted bar's text.
        range=(0, QUOTA_AXIS_PERCENT),
        y_labels=[0, 25, 50, 75, 100, QUOTA_AXIS_PERCENT],
        print_values=True,
        print_values_position="top",
        value_formatter=lambda percent: f"{percent:.0f}%",
        show_legend=False,
        no_data_text="no quotas",
    )
    # pygal draws the first bar at the bottom.
    shown = list(reversed(capped))
    chart.x_labels = [f"{row.model_label} ({row.scope}): {row.describe()}" for row in shown]
    chart.add(
        "quota used",
        [
            {"value": _bar_percent(row), "formatter": _state_text(row), "node": {"data-state": row.state}}
            for row in shown
        ],
    )
    return _render(chart)


def _bar_percent(row: QuotaRow) -> float:
    return min(row.used_percent or 0.0, QUOTA_AXIS_PERCENT)


def _state_text(row: QuotaRow) -> Callable[[float], str]:
    def text(_: float) -> str:
        percent = f"{row.used_percent or 0.0:.1f}%"
        return percent if row.state == "NORMAL" else f"{row.state} {percent}"

    return text


def daily_spend_chart(days: Sequence[str], spend: dict[str, list[int]]) -> str:
    """Spend per label per day; the legend carries each label's total over the days shown."""
    chart = _chart(
        pygal.Line,
        "daily-spend",
        height=380,
        value_formatter=_usd_axis,
        x_label_rotation=0,
        show_minor_x_labels=False,
        x_labels_major_every=max(1, len(days) // 6),
        max_scale=6,
        dots_size=2,
        no_data_text="no spend",
        include_x_axis=True,
    )
    chart.x_labels = list(days)
    for label, values in spend.items():
        chart.add(f"{label}: {format_usd(sum(values))}", values)
    return _render(chart)


def org_spend_chart(rows: Sequence[tuple[str, int]]) -> str:
    """Spend today per org (name and amount), the biggest first."""
    chart = _chart(
        pygal.HorizontalBar,
        "org-spend",
        height=110 + 36 * max(len(rows), 1),
        print_values=True,
        print_values_position="top",
        value_formatter=_usd_axis,
        max_scale=5,
        show_legend=False,
        no_data_text="no spend today",
    )
    # pygal draws the first bar at the bottom.
    chart.x_labels = [name for name, _ in reversed(rows)]
    chart.add("spend today", [spend for _, spend in reversed(rows)])
    return _render(chart)


def pipeline_charts(series: PipelineSeries) -> tuple[str, str]:
    """Messages waiting (usage queue and dead letters), and the aggregator's lag, over the samples' times."""
    times = [datetime.fromtimestamp(at_s, UTC) for at_s in series.at_s]
    common: dict[str, Any] = {
        "height": 300,
        "show_dots": len(times) < 2,
        "x_value_formatter": lambda at: at.strftime("%H:%M:%S"),
        "x_label_rotation": 0,
        "include_x_axis": True,
        "max_scale": 5,
        "no_data_text": "no samples yet",
    }
    messages = _chart(pygal.DateTimeLine, "messages", value_formatter=lambda n: f"{n:g}", **common)
    messages.add("usage queue", list(zip(times, series.queued, strict=True)))
    messages.add("dead letters", list(zip(times, series.dead_letters, strict=True)))
    lag = _chart(pygal.DateTimeLine, "lag", value_formatter=lambda s: f"{s:.1f} s", **common)
    lag.add("aggregator lag (s)", list(zip(times, series.lag_s, strict=True)))
    return _render(messages), _render(lag)


@cache
def chart_stylesheet() -> str:
    """pygal's stylesheet for these charts, as one file for every chart on the page.

    pygal writes it per chart, scoped to the chart's id and holding colour classes for that chart's series; rendering
    one chart with MAX_SERIES series and making the id selector a class selector gives rules that fit them all.
    """
    captured: list[str] = []

    def capture(root: Any) -> Any:
        for element in root.iter():
            if str(element.tag).rsplit("}", 1)[-1] == "style" and element.text:
                captured.append(element.text)
        return root

    chart = pygal.Line(style=STYLE, js=[], disable_xml_declaration=True)
    chart.add_xml_filter(capture)
    for index in range(MAX_SERIES):
        chart.add(str(index), [index])
    chart.render()
    css = "\n".join(captured)
    return re.sub(r"#chart-[0-9a-f-]+", f".{CHART_CLASS}", css)
