"""costkeeper_client against the real pipeline: 10,000 events from 8 threads while the API process restarts.

The client must ride out the restart (connection refused, connections cut mid-request) by retrying with the same
request_ids, and the pipeline must then hold exactly one usage item per request_id and aggregates equal to the exact
sum of what was recorded, priced independently with harness.price().
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from costkeeper_client import ClientOptions, CostKeeperClient, RetryPolicy
from infra.resource_setup import scan_items
from runtime.aws import AwsSettings
from tests.integration.harness import Pipeline, Tenant, eventually, org_settings, price, provision

pytestmark = pytest.mark.integration

THREADS = 8
EVENTS_PER_THREAD = 1_250
EVENTS = THREADS * EVENTS_PER_THREAD
# Recording is spread over a few seconds so that the restart falls in the middle of it, not after it.
RECORD_PAUSE_S = 0.002
RESTART_AFTER_DELIVERED = 2_000

# From harness.org_settings(): (input, output, cache read, cache write) micro-USD per million tokens.
PRICES = {
    "premium": (3_000_000, 15_000_000, 300_000, 3_750_000),
    "standard": (800_000, 4_000_000, 0, 0),
    "economy": (35_000, 140_000, 0, 0),
}
TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
FIELDS = ("cost_usd_micros", *TOKENS, "request_count")


@dataclass(frozen=True)
class Recorded:
    request_id: str
    label: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


def expected_rows(recorded: list[Recorded]) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    for r in recorded:
        p_in, p_out, p_cr, p_cw = PRICES[r.label]
        row = rows[r.label]
        row["cost_usd_micros"] += price(
            r.input_tokens, r.output_tokens, p_in, p_out, r.cache_read_tokens, p_cr, r.cache_write_tokens, p_cw
        )
        row["input_tokens"] += r.input_tokens
        row["output_tokens"] += r.output_tokens
        row["cache_read_tokens"] += r.cache_read_tokens
        row["cache_write_tokens"] += r.cache_write_tokens
        row["request_count"] += 1
    return dict(rows)


def record_events(keeper: CostKeeperClient, seed: int, out: list[Recorded], lock: threading.Lock) -> None:
    rng = random.Random(seed)
    mine: list[Recorded] = []
    for _ in range(EVENTS_PER_THREAD):
        label = rng.choice(list(PRICES))
        cached = label == "premium" and rng.random() < 0.4
        counts = {
            "input_tokens": rng.randint(1, 8_000),
            "output_tokens": rng.randint(1, 2_000),
            "cache_read_tokens": rng.randint(0, 20_000) if cached else 0,
            "cache_write_tokens": rng.randint(0, 3_000) if cached else 0,
        }
        event = keeper.record(
            label,
            input_tokens=counts["input_tokens"],
            output_tokens=counts["output_tokens"],
            cache_read_tokens=counts["cache_read_tokens"],
            cache_write_tokens=counts["cache_write_tokens"],
        )
        mine.append(Recorded(event.request_id, label, **counts))
        time.sleep(RECORD_PAUSE_S)
    with lock:
        out.extend(mine)


def restart_api_mid_run(pipeline: Pipeline, keeper: CostKeeperClient, log: dict[str, Any]) -> None:
    deadline = time.monotonic() + 60
    while keeper.stats().delivered < RESTART_AFTER_DELIVERED and time.monotonic() < deadline:
        time.sleep(0.01)
    log["recorded_at_stop"] = keeper.stats().recorded
    stopped = time.monotonic()
    pipeline.stop("api")
    log["recorded_while_down"] = keeper.stats().recorded - log["recorded_at_stop"]
    pipeline.start("api")
    log["restart_s"] = time.monotonic() - stopped
    log["recorded_at_restart"] = keeper.stats().recorded


def app_aggregates(http: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    r = http.get(f"{tenant.app_path}/aggregates/today", headers=tenant.app_headers())
    assert r.status_code == 200, r.text
    return dict(r.json())


def usage_request_ids(settings: AwsSettings, org_id: str) -> list[str]:
    items = scan_items(settings.dynamodb(), settings.names.usage_table, "org_id, app_id, request_id")
    return [i["request_id"]["S"] for i in items if i["org_id"]["S"] == org_id]


def test_ten_thousand_events_from_eight_threads_survive_an_api_restart_exactly(
    pipeline: Pipeline, http: httpx.Client, aws_settings: AwsSettings
) -> None:
    tenant = provision(http, org=org_settings(quotas={}))
    options = ClientOptions(
        # Long enough to outlast a restart on a busy machine; the defaults are the same order.
        retry=RetryPolicy(initial_delay_s=0.05, max_delay_s=2.0, max_attempts=60, give_up_after_s=90),
        close_timeout_s=90,
        flush_at_exit=False,
    )
    recorded: list[Recorded] = []
    lock = threading.Lock()
    restart: dict[str, Any] = {}
    started = time.monotonic()
    keeper = CostKeeperClient(pipeline.base_url, tenant.org_id, tenant.app_id, tenant.app_secret, options)
    try:
        threads = [
            threading.Thread(target=record_events, args=(keeper, seed, recorded, lock)) for seed in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        restart_api_mid_run(pipeline, keeper, restart)
        for thread in threads:
            thread.join()
    finally:
        if "api" not in pipeline.processes:
            pipeline.start("api")  # the session's other tests need it
        keeper.close()
    posted_s = time.monotonic() - started
    stats = keeper.stats()

    assert keeper.failures() == []
    assert (stats.recorded, stats.delivered, stats.failed) == (EVENTS, EVENTS, 0)
    # The restart happened while events were still being recorded and delivered, and the client had to retry.
    assert restart["recorded_at_stop"] < EVENTS
    assert stats.retries > 0
    assert len({r.request_id for r in recorded}) == EVENTS

    expected = expected_rows(recorded)

    def counted_all() -> dict[str, Any] | None:
        body = app_aggregates(http, tenant)
        return body if body["total"]["request_count"] >= EVENTS else None

    body = eventually(counted_all, timeout_s=120, interval_s=0.5)
    settled_s = time.monotonic() - started
    actual = {row["model_label"]: {f: row[f] for f in FIELDS} for row in body["models"] if row["request_count"]}
    assert actual == expected
    assert body["total"]["cost_usd_micros"] == sum(row["cost_usd_micros"] for row in expected.values())

    ids = usage_request_ids(aws_settings, tenant.org_id)
    assert len(ids) == EVENTS
    assert set(ids) == {r.request_id for r in recorded}
    print(
        f"\nclient: {EVENTS} events in {posted_s:.1f}s ({stats.batches_posted} batches, {stats.retries} retries, "
        f"{stats.token_requests} token + {stats.refresh_requests} refresh requests); API down and back in "
        f"{restart['restart_s']:.1f}s with {restart['recorded_while_down']} events recorded meanwhile; "
        f"aggregates exact {settled_s:.1f}s after the first record"
    )
