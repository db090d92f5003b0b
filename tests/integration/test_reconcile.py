"""`costkeeper reconcile`: aggregates recomputed from the usage items, drift reported, and repaired while traffic flows.

The session pipeline (API, worker, aggregator) keeps taking usage for a fresh org from threads while the test deletes
one of its aggregates and corrupts another; reconcile runs as the operator would, as a subprocess, in the middle of
it. Afterwards every aggregate equals the exact sum of what the API accepted (expected values from the 202s and
`harness.price` only), and a second run finds nothing to repair.
"""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator.aggregates import AggregateKey, day_partition, parse_sort_key
from infra.resource_setup import ensure_resources
from runtime.aws import AwsSettings
from runtime.resources import USAGE_DAY_INDEX, USAGE_DAY_INDEX_KEY, ResourceNames
from tests.integration.harness import (
    REPO,
    Pipeline,
    Tenant,
    api_client,
    drop_resources,
    eventually,
    org_settings,
    price,
    provision,
    side_pipeline,
    uncounted_usage_item,
    usage,
    wait_idle,
)

pytestmark = pytest.mark.integration

LABELS = ("premium", "standard", "economy")
COUNTERS = ("cost_usd_micros", "input_tokens", "output_tokens", "request_count")
SETTLE_S = "1"


class Traffic:
    """Batches of usage posted from a thread until stopped; what was accepted is the expected truth."""

    def __init__(self, tenant: Tenant, rng: random.Random) -> None:
        self.tenant = tenant
        self.rng = rng
        self.accepted: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        # A client of its own: this runs on another thread than the test's.
        with httpx.Client(base_url=str(self.tenant.http.base_url), timeout=30) as client:
            tenant = replace(self.tenant, http=client)
            headers = tenant.app_headers()
            while not self.stopping.is_set():
                events = [
                    usage(self.rng.choice(LABELS), self.rng.randint(1, 40_000), self.rng.randint(0, 4_000))
                    for _ in range(15)
                ]
                r = client.post(f"{tenant.app_path}/usage/batch", json={"items": events}, headers=headers)
                assert r.status_code == 207, r.text
                results = r.json()["results"]
                self.accepted += [e for e, res in zip(events, results, strict=True) if res["status"] == 202]
                time.sleep(0.2)  # steady, not flooding: the worker must keep up on a busy machine

    def expected(self) -> dict[str, dict[str, int]]:
        models = org_settings()["models"]
        by_label: dict[str, dict[str, int]] = {}
        for e in self.accepted:
            prices = models[e["model_label"]]["prices"]
            t = by_label.setdefault(e["model_label"], dict.fromkeys(COUNTERS, 0))
            t["cost_usd_micros"] += price(
                e["input_tokens"],
                e["output_tokens"],
                prices["input_per_mtok_usd_micros"],
                prices["output_per_mtok_usd_micros"],
            )
            t["input_tokens"] += e["input_tokens"]
            t["output_tokens"] += e["output_tokens"]
            t["request_count"] += 1
        return by_label


@contextmanager
def flowing(traffic: Traffic) -> Iterator[None]:
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        traffic.stopping.set()
        thread.join(timeout=60)
    assert not thread.is_alive()


def held(settings: AwsSettings, org_id: str, day: str) -> dict[str, dict[str, int]]:
    """The org's aggregates of the day by label, leaving out any that hold nothing (a repair may zero one)."""
    page = settings.dynamodb().query(
        TableName=settings.names.aggregates_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": day_partition(org_id, day)}},
        ConsistentRead=True,
    )
    found: dict[str, dict[str, int]] = {}
    for item in page["Items"]:
        counters = {name: int(item[name]["N"]) if name in item else 0 for name in COUNTERS}
        if any(counters.values()):
            found[parse_sort_key(item["sk"]["S"])[1]] = counters
    return found


def costkeeper(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator CLI as an operator runs it, against the pipeline's deployment."""
    return subprocess.run(
        [sys.executable, "-m", "infra", *args],
        env=pipeline.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def reconcile(pipeline: Pipeline, org_id: str, day: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return costkeeper(pipeline, "reconcile", "--org", org_id, "--day", day, "--settle-s", SETTLE_S, *extra)


def test_reconcile_repairs_deleted_and_corrupted_aggregates_while_usage_keeps_arriving(
    aws_settings: AwsSettings, log_dir: Path
) -> None:
    # The aggregator at its deployed batch window (0.5 s): the session's commits every 50 ms to keep the suite quick,
    # and a repair is refused (and the day planned again) whenever the aggregator counted on its key meanwhile.
    with (
        side_pipeline(
            aws_settings, log_dir, "reconcile", ("api", "worker", "aggregator"), CK_AGGREGATOR_BATCH_WINDOW_S="0.5"
        ) as pipeline,
        api_client(pipeline.base_url) as api,
    ):
        repairs_while_usage_keeps_arriving(api, pipeline, pipeline.settings)


def repairs_while_usage_keeps_arriving(api: httpx.Client, pipeline: Pipeline, aws_settings: AwsSettings) -> None:
    tenant = provision(api)
    day = datetime.now(UTC).date().isoformat()
    traffic = Traffic(tenant, random.Random(9))
    ddb = aws_settings.dynamodb()
    table = aws_settings.names.aggregates_table

    def key(label: str) -> dict[str, Any]:
        return AggregateKey(tenant.org_id, day, tenant.app_id, label).item_key()

    with flowing(traffic):
        eventually(lambda: set(held(aws_settings, tenant.org_id, day)) == set(LABELS), timeout_s=60)
        # An operator's mistake and a bug, while usage keeps arriving: one aggregate gone, one inflated, one made up.
        ddb.delete_item(TableName=table, Key=key("premium"))
        ddb.update_item(
            TableName=table,
            Key=key("standard"),
            UpdateExpression="ADD cost_usd_micros :c, request_count :n",
            ExpressionAttributeValues={":c": {"N": "123456"}, ":n": {"N": "3"}},
        )
        ghost = AggregateKey(tenant.org_id, day, "ghost-app", "economy").item_key()
        ddb.put_item(
            TableName=table,
            Item={
                **ghost,
                "cost_usd_micros": {"N": "777"},
                "request_count": {"N": "1"},
                "model_label": {"S": "economy"},
            },
        )

        report_only = reconcile(pipeline, tenant.org_id, day)
        assert report_only.returncode == 3, report_only.stdout + report_only.stderr
        assert "ghost-app/economy" in report_only.stdout and "not repaired" in report_only.stdout

        repaired = reconcile(pipeline, tenant.org_id, day, "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "repaired" in repaired.stdout
        time.sleep(1.0)  # and a little more usage after the repair

    assert len(traffic.accepted) > 100
    wait_idle(aws_settings, timeout_s=180)
    assert held(aws_settings, tenant.org_id, day) == traffic.expected()

    again = reconcile(pipeline, tenant.org_id, day, "--repair")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 drifting" in again.stdout, again.stdout
    assert held(aws_settings, tenant.org_id, day) == traffic.expected()


def test_items_written_before_the_day_index_are_given_their_key_and_then_count_in_a_reconcile(
    api: httpx.Client, pipeline: Pipeline, aws_settings: AwsSettings
) -> None:
    tenant = provision(api)
    day = datetime.now(UTC).date().isoformat()
    r = api.post(
        f"{tenant.app_path}/usage/batch",
        json={"items": [usage("premium", 1000, 100) for _ in range(4)]},
        headers=tenant.app_headers(),
    )
    assert [x["status"] for x in r.json()["results"]] == [202] * 4
    # Three items as a worker of usage item version 3 wrote them: no key in the index by day.
    old_items = []
    for _ in range(3):
        item = uncounted_usage_item(tenant.org_id, tenant.app_id, written_ago_ms=0)
        del item[USAGE_DAY_INDEX_KEY]
        item["schema_version"] = {"N": "3"}
        old_items.append(item)
        aws_settings.dynamodb().put_item(TableName=aws_settings.names.usage_table, Item=item)
    wait_idle(aws_settings, timeout_s=180)
    before = held(aws_settings, tenant.org_id, day)
    assert before["premium"]["request_count"] == 7

    # Invisible to the index, the three look missing: a reconcile would take them out.
    unseen = reconcile(pipeline, tenant.org_id, day)
    assert unseen.returncode == 3, unseen.stdout + unseen.stderr
    assert "-3 requests" in unseen.stdout

    keyed = costkeeper(pipeline, "backfill-index")
    assert keyed.returncode == 0, keyed.stdout + keyed.stderr
    assert "scanned" in keyed.stderr  # progress
    again = costkeeper(pipeline, "backfill-index")
    assert again.returncode == 0 and " 0 given their day index key" in again.stdout, again.stdout

    # The aggregator took each item back and counted it again: nothing moved, and now nothing drifts.
    wait_idle(aws_settings, timeout_s=180)
    assert held(aws_settings, tenant.org_id, day) == before
    clean = reconcile(pipeline, tenant.org_id, day, "--repair")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 drifting" in clean.stdout, clean.stdout
    assert held(aws_settings, tenant.org_id, day) == before


def test_init_adds_the_day_index_to_a_usage_table_made_before_it(aws_settings: AwsSettings) -> None:
    settings = replace(aws_settings, names=ResourceNames(f"{aws_settings.names.prefix}old-{secrets.token_hex(2)}-"))
    ddb = settings.dynamodb()
    usage_table = settings.names.usage_table
    ddb.create_table(
        TableName=usage_table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    try:
        ensure_resources(settings, report=lambda m: None)
        ensure_resources(settings, report=lambda m: None)  # and again: nothing more to do
        indexes = ddb.describe_table(TableName=usage_table)["Table"]["GlobalSecondaryIndexes"]
        assert [(i["IndexName"], i["IndexStatus"]) for i in indexes] == [(USAGE_DAY_INDEX, "ACTIVE")]
    finally:
        drop_resources(settings)
