"""Quotas that fail safe, end to end: per-event token caps, model selection degraded while the aggregator lags, and
the overspend a quota allows under load, measured against the bound the README states.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.token_caps import DEFAULT_TOKEN_CAPS
from runtime.aws import AwsSettings
from tests.integration.harness import (
    ADMIN_KEY,
    Pipeline,
    Tenant,
    api_client,
    eventually,
    org_settings,
    price,
    provision,
    side_pipeline,
    uncounted_usage_item,
    usage,
)

pytestmark = pytest.mark.integration

PREMIUM = (3_000_000, 15_000_000)


# -- per-event token caps ------------------------------------------------------------------------------------------


def test_an_event_over_its_orgs_token_caps_is_refused_422_and_an_org_can_raise_them(api: httpx.Client) -> None:
    tenant = provision(api)
    headers = tenant.app_headers()
    huge = usage("premium", 10, 10**9)
    r = api.post(f"{tenant.app_path}/usage", json=huge, headers=headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "TOKENS_OVER_CAP"
    assert error["details"] == {"output_tokens": {"tokens": 10**9, "cap": DEFAULT_TOKEN_CAPS["output_tokens"]}}
    # In a batch only that item is refused.
    fine = usage("premium", 10, 10)
    r = api.post(f"{tenant.app_path}/usage/batch", json={"items": [huge, fine]}, headers=headers)
    assert [x["status"] for x in r.json()["results"]] == [422, 202]
    assert r.json()["results"][0]["error"]["code"] == "TOKENS_OVER_CAP"

    # An org whose calls really are that large says so; one that wants a tighter guard lowers a cap.
    settings = {**org_settings(), "max_tokens_per_event": {"output_tokens": 10**9, "input_tokens": 50}}
    r = api.put(f"/api/v1/orgs/{tenant.org_id}", json=settings, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 200, r.text

    def accepted(event: dict[str, Any]) -> int:
        return api.post(f"{tenant.app_path}/usage", json=event, headers=headers).status_code

    eventually(lambda: accepted(usage("premium", 10, 10**9)) == 202, timeout_s=10)
    assert accepted(usage("premium", 51, 1)) == 422


# -- selection while the aggregator lags ----------------------------------------------------------------------------


@pytest.fixture
def lagging(aws_settings: AwsSettings, log_dir: Path) -> Iterator[Pipeline]:
    """An API on a prefix of its own with no worker and no aggregator yet: nothing counts what reaches the stream."""
    with side_pipeline(
        aws_settings, log_dir, "lag", ("api",), CK_METRICS_REFRESH_S="0.5", CK_SELECTION_MAX_LAG_S="3"
    ) as pipeline:
        yield pipeline


def test_selection_answers_tight_with_a_short_cache_while_the_aggregator_lags(lagging: Pipeline) -> None:
    with api_client(lagging.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        path = f"{tenant.app_path}/model-selection"
        r = http.get(path, headers=headers)
        assert (r.json()["mode"], r.headers["Cache-Control"]) == ("NORMAL", "private, max-age=300")

        # Usage the aggregator has not counted, written 20 s ago: the spend read is at least that old.
        stale = uncounted_usage_item(tenant.org_id, tenant.app_id, written_ago_ms=20_000)
        lagging.settings.dynamodb().put_item(TableName=lagging.settings.names.usage_table, Item=stale)

        def selection(degraded: bool) -> httpx.Response | None:
            answer = http.get(path, headers=headers)
            return answer if answer.json()["metering"]["degraded"] == degraded else None

        r = eventually(lambda: selection(degraded=True), 10)
        body = r.json()
        assert body["model_label"] == "premium"
        assert body["mode"] == "TIGHT"
        assert r.headers["Cache-Control"] == "private, max-age=10"
        assert body["metering"]["lag_s"] > 3

        # The aggregator catches up: answers are NORMAL again, and cached as long as before.
        lagging.start("aggregator")
        r = eventually(lambda: selection(degraded=False), 30)
        assert (r.json()["mode"], r.headers["Cache-Control"]) == ("NORMAL", "private, max-age=300")


# -- the overspend bound, measured under load ----------------------------------------------------------------------

QUOTA = 2_000_000  # $2 of premium for the whole org
THREADS = 4
BATCH = 5
INPUT, OUTPUT = 1_000, 100  # 4,500 micro-USD a premium call


@dataclass
class Obedient:
    """Clients that ask model selection before every batch and use what it says: their cache age is zero, so what
    they overspend is the metering lag's share of the bound alone."""

    tenant: Tenant
    base_url: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    premium_accepted: int = 0  # micro-USD
    premium_in_flight: int = 0
    # At each decision that answered premium: spend accepted (or in flight) minus spend counted.
    unmetered_at_decision: list[int] = field(default_factory=list)
    decisions: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, index: int) -> None:
        call_cost = price(INPUT, OUTPUT, *PREMIUM)
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            tenant = replace(self.tenant, http=http)
            headers = tenant.app_headers()
            while not self.stop.is_set():
                with self.lock:
                    known = self.premium_accepted + self.premium_in_flight
                r = http.get(f"{tenant.app_path}/model-selection", headers=headers)
                assert r.status_code == 200, r.text
                body = r.json()
                label = body["model_label"]
                if label != "premium":
                    self.stop.set()
                    return
                [cap] = body["labels"][0]["caps"]
                with self.lock:
                    self.decisions += 1
                    self.unmetered_at_decision.append(known - cap["spend_usd_micros"])
                    self.premium_in_flight += BATCH * call_cost
                events = [usage("premium", INPUT, OUTPUT) for _ in range(BATCH)]
                r = http.post(f"{tenant.app_path}/usage/batch", json={"items": events}, headers=headers)
                assert r.status_code == 207 and r.json()["accepted"] == BATCH, r.text
                with self.lock:
                    self.premium_in_flight -= BATCH * call_cost
                    self.premium_accepted += BATCH * call_cost


def test_overspend_under_load_stays_within_the_metering_lag_bound(api: httpx.Client, pipeline: Pipeline) -> None:
    tenant = provision(api, org=org_settings(quotas={"premium": QUOTA, "standard": 10**9, "economy": 10**9}))
    clients = Obedient(tenant, pipeline.base_url)
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(clients.run, range(THREADS)))
    elapsed_s = time.monotonic() - started
    headers = tenant.org_headers()

    def counted() -> int:
        body = api.get(f"/api/v1/orgs/{tenant.org_id}/aggregates/today", headers=headers).json()
        return int(next(m for m in body["models"] if m["model_label"] == "premium")["cost_usd_micros"])

    eventually(lambda: counted() == clients.premium_accepted, timeout_s=60)
    overspend = clients.premium_accepted - QUOTA
    worst_unmetered = max(clients.unmetered_at_decision)
    rate = clients.premium_accepted / elapsed_s
    # The bound: what was spent but not yet counted when premium was last chosen (the metering lag, in money),
    # plus the batches the clients had already decided on (their cache age here is nil).
    bound = worst_unmetered + THREADS * BATCH * price(INPUT, OUTPUT, *PREMIUM)
    print(
        f"[overspend] quota {QUOTA} micro-USD, spent {clients.premium_accepted} in {elapsed_s:.1f}s "
        f"({rate:,.0f}/s, {clients.decisions} decisions): overspend {overspend} "
        f"({100 * overspend / QUOTA:.1f}%), worst unmetered at a decision {worst_unmetered} "
        f"(= {worst_unmetered / rate:.2f}s of spend), bound {bound}"
    )
    assert clients.premium_accepted >= QUOTA  # the quota was reached: the bound was exercised
    assert overspend <= bound
