"""The dashboard in a real browser (headless Chromium) against the running pipeline, and its HTTP contract.

Usage is posted through the API, rolled up by the real worker and aggregator, and the page, signed in with a pasted
token, must show it: the charts' SVG holds the amounts and non-empty shapes, TIGHT and EXHAUSTED are marked, the
console stays free of errors (a CSP violation is one), and a screenshot is kept in .run/artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from tests.integration.browser import chromium, console_errors, screenshot, wait_for
from tests.integration.client_api import ADMIN, add_app, bearer, expect_error, midday_timezone, read_when
from tests.integration.harness import ADMIN_KEY, Pipeline, Tenant, org_settings, price, provision, usage

pytestmark = pytest.mark.integration

PREMIUM = price(1000, 500, 3_000_000, 15_000_000)  # 10,500 micro-USD
STANDARD = price(1000, 500, 800_000, 4_000_000)  # 2,800
ECONOMY = price(1000, 500, 35_000, 140_000)  # 105
# Org-wide quotas that put each label in a different state once the three calls above are counted.
QUOTAS = {"premium": 1_000_000, "standard": 2_900, "economy": 100}  # 1.05% NORMAL, 96.6% TIGHT, 105% EXHAUSTED


@dataclass(frozen=True)
class Spent:
    tenant: Tenant
    org_name: str


@pytest.fixture
def spent(http: httpx.Client) -> Spent:
    """An org whose app spent on each label today, rolled up by the aggregator."""
    settings = {**org_settings(timezone=midday_timezone(), quotas=QUOTAS), "name": "Dashboard Test Org"}
    tenant = provision(http, org=settings)
    events = [usage(label) for label in ("premium", "standard", "economy")]
    r = http.post(f"{tenant.app_path}/usage/batch", json={"items": events}, headers=tenant.app_headers())
    assert r.status_code == 207 and r.json()["accepted"] == 3, r.text
    read_when(
        http,
        f"/api/v1/orgs/{tenant.org_id}/aggregates/today",
        tenant.org_headers(),
        lambda body: body["total"]["request_count"] == 3,
    )
    return Spent(tenant, str(settings["name"]))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def sign_in(driver: WebDriver, base_url: str, credential: str, view: str) -> None:
    driver.get(f"{base_url}/dashboard")
    driver.find_element(By.ID, "credential").send_keys(credential)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait_for(driver, f"return document.querySelector('#view[data-loaded-at] [data-view=\"{view}\"]') !== null")


def texts(driver: WebDriver, selector: str) -> list[str]:
    return [
        str(t)
        for t in driver.execute_script(f"return [...document.querySelectorAll({selector!r})].map(e => e.textContent)")
    ]


def drawn_paths(driver: WebDriver, chart: str) -> list[str]:
    """The `d` of every line pygal drew for a chart's series (not its axes)."""
    selector = f'[data-chart="{chart}"] .series path.line'
    return [
        str(d)
        for d in driver.execute_script(
            f"return [...document.querySelectorAll({selector!r})].map(p => p.getAttribute('d'))"
        )
    ]


def test_a_client_sees_its_spend_quotas_and_model_choice_in_the_browser(
    browser: WebDriver, pipeline: Pipeline, spent: Spent
) -> None:
    tenant = spent.tenant
    sign_in(browser, pipeline.base_url, tenant.token(), "app")

    # The model selection's answer now: premium, the first label of the ordering, with headroom.
    [row] = browser.find_elements(By.CSS_SELECTOR, "table.selection tr[data-app='app-one']")
    assert row.get_attribute("data-mode") == "NORMAL"
    assert row.find_element(By.CSS_SELECTOR, "[data-figure='selection.model_label']").text == "premium"

    # Today's spend against each quota, each label in its state.
    states = {
        r.get_attribute("data-label"): (
            r.get_attribute("data-state"),
            r.find_element(By.CSS_SELECTOR, "[data-figure=spend]").text,
        )
        for r in browser.find_elements(By.CSS_SELECTOR, "table.quota tr[data-scope=org]")
    }
    assert states == {
        "premium": ("NORMAL", "$0.010500"),
        "standard": ("TIGHT", "$0.002800"),
        "economy": ("EXHAUSTED", "$0.000105"),
    }
    # The quota chart: a bar per label in its state's colour (the stylesheet applied under the CSP), its amounts.
    bars: list[dict[str, Any]] = browser.execute_script(
        "return [...document.querySelectorAll('[data-chart=quota] rect[data-state]')].map(r => ({"
        "state: r.dataset.state, width: r.getBBox().width, fill: getComputedStyle(r).fill}))"
    )
    assert sorted(b["state"] for b in bars) == ["EXHAUSTED", "NORMAL", "TIGHT"]
    assert all(b["width"] > 0 for b in bars), bars
    assert {b["state"]: b["fill"] for b in bars} == {
        "NORMAL": "rgb(46, 125, 50)",
        "TIGHT": "rgb(239, 108, 0)",
        "EXHAUSTED": "rgb(198, 40, 40)",
    }
    quota_text = " ".join(texts(browser, "[data-chart=quota] text"))
    for expected in (
        "$0.010500 of $1.000000",
        "$0.002800 of $0.002900",
        "$0.000105 of $0.000100",
        "TIGHT 96.6%",
        "EXHAUSTED 105.0%",
    ):
        assert expected in quota_text, quota_text

    # The last 30 days: a drawn line per label that has spend, each labelled with its amount.
    paths = drawn_paths(browser, "daily-spend")
    assert len(paths) == 3 and all(d.startswith("M") and len(d) > 20 for d in paths), paths
    legend = texts(browser, "[data-chart=daily-spend] .legend text")
    assert legend == ["premium: $0.010500", "standard: $0.002800", "economy: $0.000105"]
    assert len(texts(browser, "[data-chart=daily-spend] .axis.x text")) >= 5

    assert console_errors(browser) == []
    screenshot(browser, "dashboard")

    # The token lived in the page's memory only: no cookie, no storage, and a reload signs out.
    assert browser.execute_script("return [document.cookie, localStorage.length, sessionStorage.length]") == ["", 0, 0]
    browser.refresh()
    assert browser.find_element(By.ID, "view").text == ""
    assert browser.find_element(By.ID, "credential").is_displayed()


def test_the_admin_sees_every_org_and_the_pipeline_over_time_in_the_browser(
    browser: WebDriver, pipeline: Pipeline, spent: Spent
) -> None:
    sign_in(browser, pipeline.base_url, ADMIN_KEY, "admin")
    org_id = spent.tenant.org_id
    total = f"${(PREMIUM + STANDARD + ECONOMY) / 1e6:.6f}"
    assert total == "$0.013405"
    row = browser.find_element(By.CSS_SELECTOR, f"table.orgs tr[data-org='{org_id}']")
    assert row.find_element(By.CSS_SELECTOR, "[data-figure=spend]").text == total
    assert row.find_element(By.CSS_SELECTOR, "[data-figure=requests]").text == "3"
    chart_text = texts(browser, "[data-chart=org-spend] text")
    assert f"{spent.org_name} {org_id[:8]}" in chart_text and total in chart_text
    assert browser.find_element(By.CSS_SELECTOR, "[data-health]").get_attribute("data-health") == "healthy"
    assert browser.find_element(By.CSS_SELECTOR, "[data-figure='queue.visible']").text.isdigit()

    # The API samples the pipeline every few seconds; a line needs two samples. The page refreshes itself.
    wait_for(browser, "return Number(document.querySelector('[data-samples]').dataset.samples) >= 2", timeout_s=30)
    for chart in ("messages", "lag"):
        paths = drawn_paths(browser, chart)
        assert paths and all(d.startswith("M") for d in paths), (chart, paths)
    assert texts(browser, "[data-chart=messages] .legend text") == ["usage queue", "dead letters"]

    assert console_errors(browser) == []
    screenshot(browser, "dashboard-admin")


# -- the HTTP contract, without a browser ---------------------------------------------------------------------------


def test_the_page_and_its_assets_come_with_a_strict_content_security_policy(api: httpx.Client) -> None:
    for path in (
        "/dashboard",
        *(f"/dashboard/assets/{name}" for name in ("dashboard.js", "dashboard.css", "charts.css", "favicon.svg")),
    ):
        r = api.get(path)
        assert r.status_code == 200, (path, r.text)
        policy = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'", policy
        assert policy["style-src"] == "'self'" and policy["frame-ancestors"] == "'none'", policy
        assert r.headers["x-content-type-options"] == "nosniff"
    page = api.get("/dashboard").text
    # Nothing from elsewhere, nothing inline.
    assert "http:" not in page and "https:" not in page and 'src="//' not in page and 'href="//' not in page
    assert "<script>" not in page and "style=" not in page
    css = api.get("/dashboard/assets/charts.css")
    assert css.headers["content-type"].startswith("text/css") and ".pygal-chart .color-0" in css.text
    expect_error(api.get("/dashboard/assets/..%2Fapp.py"), 404, "NOT_FOUND")
    expect_error(api.get("/dashboard/assets/index.html"), 404, "NOT_FOUND")


def test_the_view_answers_only_for_a_credential_and_only_with_its_own_tenant(api: httpx.Client) -> None:
    a = provision(api, org=org_settings(timezone=midday_timezone()))
    add_app(api, a.org_id, "app-two")
    b = provision(api)
    expect_error(api.get("/dashboard/view"), 401, "UNAUTHORIZED")
    expect_error(api.get("/dashboard/view", headers={"X-API-Key": "wrong"}), 401, "INVALID_API_KEY")
    expect_error(api.get("/dashboard/view", headers=bearer("not.a.token")), 401, "INVALID_TOKEN")

    org_view = api.get("/dashboard/view", headers=a.org_headers())
    assert org_view.status_code == 200 and org_view.headers["cache-control"] == "no-store"
    assert 'data-view="org"' in org_view.text and a.org_id in org_view.text and b.org_id not in org_view.text
    # An org token sees the model selection of every app of its org.
    assert 'data-app="app-one"' in org_view.text and 'data-app="app-two"' in org_view.text

    app_view = api.get("/dashboard/view", headers=a.app_headers()).text
    assert 'data-view="app"' in app_view and 'data-app="app-one"' in app_view and "app-two" not in app_view
    assert b.org_id not in api.get("/dashboard/view", headers=a.app_headers()).text

    admin_view = api.get("/dashboard/view", headers=ADMIN).text
    assert 'data-view="admin"' in admin_view and a.org_id in admin_view and b.org_id in admin_view
