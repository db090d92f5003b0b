"""The dashboard's SVG charts and HTML views: nothing a strict CSP refuses, the figures in the markup, data escaped."""

from __future__ import annotations

import re
from datetime import date
from xml.etree import ElementTree

from aggregator.aggregates import Totals
from ingest_api.chart_data import PipelineSeries, QuotaRow
from ingest_api.charts import chart_stylesheet, daily_spend_chart, org_spend_chart, pipeline_charts, quota_chart
from ingest_api.dashboard import AdminDashboard, ClientDashboard
from ingest_api.dashboard_page import render_admin, render_client
from ingest_api.health import HealthReport
from ingest_api.selection import select_model
from ingest_api.spend import CACHE_NORMAL_S, ModelChoice, OrgSpend, RangeReport
from tests.unit import factories

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # noqa: S314  (the chart code's own markup, not outside input)


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def assert_csp_clean(svg: str) -> ElementTree.Element:
    root = parse(svg)
    assert not [e for e in root.iter() if local(e.tag) in ("style", "script")]
    assert not [e for e in root.iter() if "style" in e.attrib]
    assert "http://kozea" not in svg and "//kozea.github.io" not in svg  # pygal's CDN script
    assert "pygal-chart" in root.get("class", "")
    return root


def texts(root: ElementTree.Element) -> list[str]:
    return [e.text for e in root.iter() if local(e.tag) == "text" and e.text]


def test_the_quota_chart_marks_each_bar_with_its_state_and_says_the_amounts() -> None:
    rows = [
        QuotaRow("premium", "org", 10_500, 1_000_000),
        QuotaRow("standard", "org", 2_800, 2_900),
        QuotaRow("economy", "org", 105, 100),
        QuotaRow("spare", "org", 3, None),
    ]
    root = assert_csp_clean(quota_chart(rows))
    bars = {e.get("data-state"): float(e.get("width", "0")) for e in root.iter() if e.get("data-state")}
    assert set(bars) == {"NORMAL", "TIGHT", "EXHAUSTED"} and all(width > 0 for width in bars.values())
    assert bars["NORMAL"] < bars["TIGHT"] < bars["EXHAUSTED"]
    words = texts(root)
    assert "premium (org): $0.010500 of $1.000000 (1.1%)" in words
    assert "TIGHT 96.6%" in words and "EXHAUSTED 105.0%" in words
    assert not any("spare" in word for word in words)  # no cap, no bar: the table beside says it


def test_the_daily_chart_draws_a_line_per_label_with_its_total_in_the_legend() -> None:
    root = assert_csp_clean(daily_spend_chart(["06-14", "06-15"], {"premium": [5, 10_500], "economy": [0, 105]}))
    lines = [e.get("d", "") for e in root.iter() if local(e.tag) == "path" and "line" in e.get("class", "").split()]
    series_lines = [d for d in lines if (d.startswith("M") and " L" in d) or "L" in d]
    assert len(series_lines) >= 2
    assert {"premium: $0.010505", "economy: $0.000105"} <= set(texts(root))


def test_the_pipeline_and_org_charts_are_clean_and_an_empty_chart_says_so() -> None:
    messages, lag = pipeline_charts(PipelineSeries([100.0, 105.0], [3, 0], [0, 1], [0.5, 0.1]))
    assert "usage queue" in texts(assert_csp_clean(messages))
    assert "aggregator lag (s)" in texts(assert_csp_clean(lag))
    empty_messages, _ = pipeline_charts(PipelineSeries([], [], [], []))
    assert "no samples yet" in texts(assert_csp_clean(empty_messages))
    assert "$0.013405" in texts(assert_csp_clean(org_spend_chart([("Acme 550e8400", 13_405)])))
    assert "no spend today" in texts(assert_csp_clean(org_spend_chart([])))


def test_the_stylesheet_is_pygals_with_class_selectors_instead_of_chart_ids() -> None:
    css = chart_stylesheet()
    assert ".pygal-chart .color-0" in css and ".pygal-chart .color-23" in css
    assert not re.search(r"#chart-", css)
    assert "@import" not in css and "url(" not in css  # nothing fetched from elsewhere


def client_view(name: str) -> ClientDashboard:
    org = factories.org(quotas={"premium": 100})
    org = org.model_copy(update={"settings": org.settings.model_copy(update={"name": name})})
    app = factories.app()
    selection = select_model(org, app, {"premium": 100}, {"premium": 100})
    day = date(2024, 6, 15)
    recent = RangeReport(org, app, [day], [{"standard": Totals.of(cost_usd_micros=7)}])
    return ClientDashboard(
        org,
        app,
        day,
        [QuotaRow("premium", "org", 100, 100)],
        [ModelChoice(org, app, day, selection, CACHE_NORMAL_S)],
        0,
        recent,
    )


def test_a_client_view_escapes_what_came_from_data_and_has_nothing_inline() -> None:
    page = render_client(client_view('<script>alert(1)</script>"'))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in page
    assert " style=" not in page and "<style" not in page
    assert 'data-view="app"' in page and 'data-chart="quota"' in page and 'data-chart="daily-spend"' in page
    # premium is used up, so the app has fallen back to standard.
    assert 'data-mode="NORMAL"' in page and '<td data-figure="selection.model_label">standard</td>' in page
    assert 'data-label="premium" data-scope="org" data-state="EXHAUSTED"' in page


def test_an_admin_view_before_any_measurement_says_so_and_lists_the_orgs() -> None:
    org = factories.org()
    view = AdminDashboard(
        orgs=[OrgSpend(org, date(2024, 6, 15), Totals.of(cost_usd_micros=13_405, request_count=3))],
        orgs_limit=1,
        status=None,
        samples=[],
        sample_interval_s=5.0,
        health=HealthReport({"table:x": "ACTIVE", "queue:y": "ERROR: EndpointConnectionError"}),
    )
    page = render_admin(view)
    assert "could not be read yet" in page and 'data-samples="0"' in page
    assert 'data-health="unhealthy"' in page and "Only the first 1 orgs are listed." in page
    assert f'<tr data-org="{org.org_id}">' in page and '<td data-figure="spend">$0.013405</td>' in page
