"""The operator's surfaces: the `costkeeper` CLI, run as a real subprocess, and the API's Prometheus /metrics.

The figures are made deterministic by building a backlog by hand under a resource prefix of its own, which no worker
and no aggregator of the session consumes: N visible messages, M received with a long visibility timeout (in flight),
K sent with a delay, D in the dead-letter queue, and P usage items in the usage table whose stream records nobody has
aggregated. Tests that change state (redrive, drain, init, clear, seed) get a prefix each.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.usage_record import UsageRecord
from catalog.credentials import Principal
from catalog.store import CatalogStore
from catalog.token_counts import TokenCounts
from infra import cli
from infra.processes import child_environment
from infra.resource_setup import delete_resources, ensure_resources, scan_items
from infra.seed import SEED_ORG_ID
from runtime.aws import ENDPOINT_VARIABLES, AwsSettings, open_async_clients
from runtime.resources import ResourceNames, table_specs
from tests.integration.harness import ADMIN_KEY, REPO, Pipeline, eventually, pipeline_env, status

pytestmark = pytest.mark.integration

VISIBLE, IN_FLIGHT, DELAYED, DEAD = 4, 3, 2, 5
PENDING = 6
# Written this long before the test reads the lag, so "lag > 0" is not a matter of clock resolution.
WRITTEN_AGO_MS = 5_000
STATUS_LINE = re.compile(
    r"^\d\d:\d\d:\d\d  queue: (\d+) visible, (\d+) in flight, (\d+) delayed \| dead letters: (\d+)"
    r" \| aggregator: (\d+) records pending, lag (\d+\.\d)s over (\d+) shard\(s\)$"
)


def side_settings(aws_settings: AwsSettings, name: str) -> AwsSettings:
    """Settings for tables and queues beside the session's, under `<session prefix><name>-`."""
    return replace(aws_settings, names=ResourceNames(f"{aws_settings.names.prefix}{name}-"))


def costkeeper(
    settings: AwsSettings, *args: str, run_dir: Path, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`costkeeper ARGS` for this prefix, as an operator would run it; the run dir keeps its files out of .run.

    In this process, with the environment it would have and its output captured: an interpreter per call would cost
    these tests a second or two each, and tests/integration/test_docs_walkthrough.py runs the real executables.
    env adds variables to the session's, or removes those given as None.
    """
    full_env = child_environment({"CK_RESOURCE_PREFIX": settings.names.prefix, "CK_RUN_DIR": str(run_dir)})
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        # The CLI points its own environment at the emulator it targets; the session's must come back unchanged.
        os.environ.clear()
        os.environ.update(full_env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exit_:  # argparse refusing the arguments
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["costkeeper", *args], code, out.getvalue(), err.getvalue())


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def usage_records(count: int, org_id: str | None = None) -> list[UsageRecord]:
    now_ms = int(time.time() * 1000)
    org = org_id or str(uuid.uuid4())
    return [
        UsageRecord(
            org_id=org,
            app_id="ops-app",
            request_id=str(uuid.uuid4()),
            model_label="premium",
            bedrock_model_id="anthropic.claude-sonnet",
            timestamp=datetime.now(UTC),
            org_timezone="UTC",
            tokens=TokenCounts(input_tokens=1000 * (i + 1), output_tokens=100),
            cost_usd_micros=4_500 + i,
            price_version=1,
            accepted_at_ms=now_ms - WRITTEN_AGO_MS - 100,
            written_at_ms=now_ms - WRITTEN_AGO_MS,
        )
        for i in range(count)
    ]


def write_usage(settings: AwsSettings, records: list[UsageRecord]) -> None:
    ddb = settings.dynamodb()
    for record in records:
        ddb.put_item(TableName=settings.names.usage_table, Item=record.to_item())


def queue_urls(settings: AwsSettings) -> tuple[str, str]:
    sqs = settings.sqs()
    return (
        sqs.get_queue_url(QueueName=settings.names.usage_queue)["QueueUrl"],
        sqs.get_queue_url(QueueName=settings.names.dead_letter_queue)["QueueUrl"],
    )


def hold_in_flight(settings: AwsSettings, url: str, count: int) -> None:
    """Receive `count` messages and keep them invisible for the rest of the session."""
    sqs = settings.sqs()
    held = 0
    deadline = time.monotonic() + 20
    while held < count:
        assert time.monotonic() < deadline, f"only {held} of {count} messages could be received"
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=count - held, VisibilityTimeout=3600, WaitTimeSeconds=1
        ).get("Messages", [])
        held += len(got)


@dataclass(frozen=True)
class Backlog:
    settings: AwsSettings
    records: list[UsageRecord]


@pytest.fixture(scope="module")
def backlog(aws_settings: AwsSettings) -> Backlog:
    settings = side_settings(aws_settings, "ops")
    ensure_resources(settings, report=lambda m: None)
    sqs = settings.sqs()
    queue, dlq = queue_urls(settings)
    # In flight first: while the queue holds nothing else, the messages received are exactly these.
    for i in range(IN_FLIGHT):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"in_flight": i}))
    hold_in_flight(settings, queue, IN_FLIGHT)
    for i in range(VISIBLE):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"visible": i}))
    for i in range(DELAYED):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"delayed": i}), DelaySeconds=900)
    for i in range(DEAD):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"dead": i}))
    records = usage_records(PENDING)
    write_usage(settings, records)
    return Backlog(settings, records)


# -- queue / watch ------------------------------------------------------------------------------------------------


def test_queue_prints_depth_dead_letters_and_aggregator_lag(backlog: Backlog, tmp_path: Path) -> None:
    out = ok(costkeeper(backlog.settings, "queue", run_dir=tmp_path)).strip()
    match = STATUS_LINE.match(out)
    assert match, out
    visible, in_flight, delayed, dead, pending, lag_s, shards = match.groups()
    assert (int(visible), int(in_flight), int(delayed), int(dead)) == (VISIBLE, IN_FLIGHT, DELAYED, DEAD)
    assert int(pending) == PENDING
    assert float(lag_s) >= WRITTEN_AGO_MS / 1000
    assert int(shards) >= 1


def test_queue_json_carries_the_same_figures(backlog: Backlog, tmp_path: Path) -> None:
    before = time.time()
    body = json.loads(ok(costkeeper(backlog.settings, "queue", "--json", run_dir=tmp_path)))
    names = backlog.settings.names
    assert body["queue"] == {
        "name": names.usage_queue,
        "visible": VISIBLE,
        "in_flight": IN_FLIGHT,
        "delayed": DELAYED,
        "total": VISIBLE + IN_FLIGHT + DELAYED,
    }
    assert body["dead_letter"] == {
        "name": names.dead_letter_queue,
        "visible": DEAD,
        "in_flight": 0,
        "delayed": 0,
        "total": DEAD,
    }
    aggregator = body["aggregator"]
    assert aggregator["pending_records"] == PENDING
    assert sum(s["pending_records"] for s in aggregator["shards"]) == PENDING
    # The oldest pending record was written WRITTEN_AGO_MS before the backlog was built, i.e. before this test began.
    assert aggregator["lag_s"] >= WRITTEN_AGO_MS / 1000
    assert aggregator["lag_s"] == round(max(s["oldest_pending_age_s"] or 0 for s in aggregator["shards"]), 3)
    assert body["measured_at"] >= before


def test_watch_prints_one_line_per_refresh_and_stops_after_count(backlog: Backlog, tmp_path: Path) -> None:
    started = time.monotonic()
    out = ok(costkeeper(backlog.settings, "watch", "--count", "2", "--interval", "0.5", run_dir=tmp_path))
    elapsed_s = time.monotonic() - started
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    for line in lines:
        match = STATUS_LINE.match(line)
        assert match, line
        assert [int(x) for x in match.groups()[:5]] == [VISIBLE, IN_FLIGHT, DELAYED, DEAD, PENDING]
    assert elapsed_s >= 0.5  # it waited between the two refreshes, and not after the last


# -- /metrics -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backlog_api(backlog: Backlog, log_dir: Path) -> Iterator[Pipeline]:
    """An API of the backlog's prefix alone: no worker, no aggregator. Metrics are measured afresh on every scrape."""
    api = Pipeline(backlog.settings, pipeline_env(backlog.settings, CK_METRICS_REFRESH_S="0"), log_dir / "ops-api")
    api.log_dir.mkdir(exist_ok=True)
    api.start("api")
    yield api
    api.stop()


def scrape(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(f"{base_url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def test_metrics_report_the_backlog_as_gauges(backlog: Backlog, backlog_api: Pipeline) -> None:
    samples = scrape(backlog_api.base_url)

    def gauge(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert gauge("ck_queue_messages", queue="usage", state="visible") == VISIBLE
    assert gauge("ck_queue_messages", queue="usage", state="in_flight") == IN_FLIGHT
    assert gauge("ck_queue_messages", queue="usage", state="delayed") == DELAYED
    assert gauge("ck_queue_messages", queue="dead_letter", state="visible") == DEAD
    assert gauge("ck_queue_messages", queue="dead_letter", state="in_flight") == 0
    assert gauge("ck_queue_messages", queue="dead_letter", state="delayed") == 0
    assert gauge("ck_aggregator_pending_records") == PENDING
    assert gauge("ck_aggregator_lag_seconds") >= WRITTEN_AGO_MS / 1000
    assert gauge("ck_pipeline_status_errors_total") == 0


def test_metrics_count_and_time_requests_by_route_template(backlog_api: Pipeline) -> None:
    base = backlog_api.base_url
    org_ids = [str(uuid.uuid4()) for _ in range(3)]
    with httpx.Client(base_url=base, timeout=10) as client:
        for org_id in org_ids:
            assert client.get(f"/api/v1/orgs/{org_id}", headers={"X-API-Key": ADMIN_KEY}).status_code == 404
        assert client.get(f"/api/v1/orgs/{org_ids[0]}").status_code == 401
        assert client.get("/no/such/route").status_code == 404
    samples = scrape(base)
    route = "/api/v1/orgs/{org_id}"

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    assert value("ck_http_requests_total", method="GET", route=route, status="404") == 3
    assert value("ck_http_requests_total", method="GET", route=route, status="401") == 1
    assert value("ck_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value("ck_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert value("ck_http_request_duration_seconds_bucket", method="GET", route=route, le="+Inf") == 4
    assert value("ck_http_request_duration_seconds_sum", method="GET", route=route) > 0
    # Raw paths would make a label value per id: none of them may appear anywhere.
    label_values = {v for _, labels in samples for _, v in labels}
    assert not any(org_id in v for org_id in org_ids for v in label_values)
    assert not any(v.startswith("/no/such") for v in label_values)


def test_the_dashboard_shows_the_backlog_to_the_admin(backlog: Backlog, backlog_api: Pipeline) -> None:
    r = httpx.get(f"{backlog_api.base_url}/dashboard/view", headers={"X-API-Key": ADMIN_KEY}, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    figures = dict(re.findall(r'<td data-figure="([a-z_.]+)"(?: class="alert")?>([^<]*)</td>', r.text))
    assert {k: v for k, v in figures.items() if k.split(".")[0] in ("queue", "dead_letter", "aggregator")} == {
        "queue.visible": str(VISIBLE),
        "queue.in_flight": str(IN_FLIGHT),
        "queue.delayed": str(DELAYED),
        "dead_letter.visible": str(DEAD),
        "dead_letter.in_flight": "0",
        "aggregator.pending_records": str(PENDING),
        "aggregator.lag_s": figures["aggregator.lag_s"],
        "aggregator.shards": figures["aggregator.shards"],
    }
    assert float(figures["aggregator.lag_s"]) >= WRITTEN_AGO_MS / 1000
    assert int(figures["aggregator.shards"]) >= 1
    # Dead letters want attention: that figure is the one marked.
    assert f'<td data-figure="dead_letter.visible" class="alert">{DEAD}</td>' in r.text
    assert backlog.settings.names.dead_letter_queue in r.text


# -- the aggregator catching up -----------------------------------------------------------------------------------


def test_pending_records_go_to_zero_once_an_aggregator_runs(
    aws_settings: AwsSettings, log_dir: Path, tmp_path: Path
) -> None:
    settings = side_settings(aws_settings, "drain")
    ensure_resources(settings, report=lambda m: None)
    org_id = str(uuid.uuid4())
    records = usage_records(PENDING, org_id)
    write_usage(settings, records)
    before = json.loads(ok(costkeeper(settings, "queue", "--json", run_dir=tmp_path)))["aggregator"]
    assert before["pending_records"] == PENDING
    assert before["lag_s"] >= WRITTEN_AGO_MS / 1000

    aggregator = Pipeline(settings, pipeline_env(settings), log_dir / "drain")
    aggregator.log_dir.mkdir(exist_ok=True)
    aggregator.start("aggregator")
    try:
        eventually(lambda: status(settings).pending_records == 0, timeout_s=30, interval_s=0.2)
        aggregator.check_alive()
    finally:
        aggregator.stop()
    after = json.loads(ok(costkeeper(settings, "queue", "--json", run_dir=tmp_path)))["aggregator"]
    assert (after["pending_records"], after["lag_s"]) == (0, 0)
    # What it applied is visible with `scan`: one aggregate row holding every record's cost.
    rows = [
        json.loads(line) for line in ok(costkeeper(settings, "scan", "aggregates", run_dir=tmp_path)).splitlines()[:-1]
    ]
    [row] = [r for r in rows if r["org_id"] == org_id]
    assert row["cost_usd_micros"] == sum(r.cost_usd_micros for r in records)
    assert row["request_count"] == PENDING


# -- redrive ------------------------------------------------------------------------------------------------------


def test_redrive_moves_dead_letters_back_to_the_usage_queue(aws_settings: AwsSettings, tmp_path: Path) -> None:
    settings = side_settings(aws_settings, "redrive")
    ensure_resources(settings, report=lambda m: None)
    sqs = settings.sqs()
    queue, dlq = queue_urls(settings)
    bodies = {json.dumps({"dead": i}) for i in range(7)}
    for body in bodies:
        sqs.send_message(QueueUrl=dlq, MessageBody=body)

    out = ok(costkeeper(settings, "redrive", "--max", "3", run_dir=tmp_path))
    names = settings.names
    assert out.strip().splitlines()[-1] == f"redrove 3 message(s) from {names.dead_letter_queue} to {names.usage_queue}"
    out = ok(costkeeper(settings, "redrive", run_dir=tmp_path))
    assert out.strip().splitlines()[-1] == f"redrove 4 message(s) from {names.dead_letter_queue} to {names.usage_queue}"
    out = ok(costkeeper(settings, "redrive", run_dir=tmp_path))
    assert out.strip().splitlines()[-1].startswith("redrove 0 message(s)")

    figures = json.loads(ok(costkeeper(settings, "queue", "--json", run_dir=tmp_path)))
    assert figures["dead_letter"]["total"] == 0
    assert figures["queue"]["visible"] == 7
    moved: set[str] = set()
    while len(moved) < 7:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        assert got, f"only {len(moved)} of 7 moved messages arrived"
        moved.update(m["Body"] for m in got)
    assert moved == bodies  # the bodies themselves, unchanged


# -- list / scan --------------------------------------------------------------------------------------------------


def test_list_prints_every_table_and_queue_with_its_size(backlog: Backlog, tmp_path: Path) -> None:
    out = ok(costkeeper(backlog.settings, "list", run_dir=tmp_path))
    names = backlog.settings.names
    # The usage table and the usage queue share a name: lines are told apart by their kind.
    lines = {(line.split()[0], line.split()[1]): line for line in out.splitlines()}
    assert len(lines) == len(table_specs(names)) + 2, out
    for spec in table_specs(names):
        assert "ACTIVE" in lines["table", spec.name], out
    assert re.search(rf"\b{PENDING} items\s+ACTIVE stream", lines["table", names.usage_table])
    assert re.search(r"\b0 items\s+ACTIVE", lines["table", names.aggregates_table])
    # `list` shows the messages ready to be received: in-flight and delayed ones are `queue`'s business.
    assert re.search(rf"\b{VISIBLE} messages\s", lines["queue", names.usage_queue])
    assert re.search(rf"\b{DEAD} messages\s", lines["queue", names.dead_letter_queue])


def test_scan_prints_items_as_json_lines_with_numbers_as_numbers(backlog: Backlog, tmp_path: Path) -> None:
    out = ok(costkeeper(backlog.settings, "scan", "usage", run_dir=tmp_path)).splitlines()
    assert out[-1] == f"({PENDING} items from {backlog.settings.names.usage_table})"
    items = {item["request_id"]: item for item in map(json.loads, out[:-1])}
    expected = {r.request_id: r for r in backlog.records}
    assert set(items) == set(expected)
    for request_id, item in items.items():
        assert item["cost_usd_micros"] == expected[request_id].cost_usd_micros
        assert item["input_tokens"] == expected[request_id].tokens.input_tokens

    limited = ok(costkeeper(backlog.settings, "scan", "usage", "--limit", "2", run_dir=tmp_path)).splitlines()
    assert len(limited) == 3 and limited[-1].startswith("(2 items from")
    # The full name works as well as the short one.
    full = ok(costkeeper(backlog.settings, "scan", backlog.settings.names.usage_table, run_dir=tmp_path))
    assert full.splitlines()[-1] == out[-1]

    unknown = costkeeper(backlog.settings, "scan", "nope", run_dir=tmp_path)
    assert unknown.returncode == 2
    assert "unknown table 'nope'" in unknown.stdout and "usage" in unknown.stdout


# -- init / seed / clear ------------------------------------------------------------------------------------------


def test_init_creates_everything_once_and_is_idempotent(aws_settings: AwsSettings, tmp_path: Path) -> None:
    settings = side_settings(aws_settings, "init")
    names = settings.names
    missing = ok(costkeeper(settings, "list", run_dir=tmp_path))
    assert missing.count("missing (run `costkeeper init`)") == len(table_specs(names)) + 2

    first = ok(costkeeper(settings, "init", run_dir=tmp_path)).splitlines()
    second = ok(costkeeper(settings, "init", run_dir=tmp_path)).splitlines()
    assert [line for line in first if line.startswith("table")] == [
        f"table {spec.name}: created" for spec in table_specs(names)
    ]
    assert [line for line in second if line.startswith("table")] == [
        f"table {spec.name}: exists" for spec in table_specs(names)
    ]
    # The queues keep their URLs: the second init found them rather than making new ones.
    assert [line for line in first if line.startswith("queue")] == [line for line in second if line.startswith("queue")]
    assert "missing" not in ok(costkeeper(settings, "list", run_dir=tmp_path))


def test_delete_resources_removes_a_prefix_and_the_prefixes_built_on_it(aws_settings: AwsSettings) -> None:
    """What a test session does on a long-lived LocalStack when it ends: nothing of its prefix stays behind."""
    doomed = side_settings(aws_settings, "gone")
    nested = side_settings(doomed, "nested")
    for settings in (doomed, nested):
        ensure_resources(settings, report=lambda m: None)
    deleted: list[str] = []
    delete_resources(doomed, report=deleted.append)

    expected = [spec.name for s in (doomed, nested) for spec in table_specs(s.names)]
    assert sorted(line.removeprefix("deleted table ") for line in deleted if "table" in line) == sorted(expected)
    assert sum("deleted queue" in line for line in deleted) == 4
    tables = set(aws_settings.dynamodb().list_tables()["TableNames"])
    assert not {t for t in tables if t.startswith(doomed.names.prefix)}
    assert not aws_settings.sqs().list_queues(QueueNamePrefix=doomed.names.prefix).get("QueueUrls")
    # The session's own tables, whose prefix the doomed one extends, are untouched.
    assert {spec.name for spec in table_specs(aws_settings.names)} <= tables


def count_items(settings: AwsSettings, table: str) -> int:
    return sum(1 for _ in scan_items(settings.dynamodb(), table, "pk"))


async def _authenticates(settings: AwsSettings, client_id: str, secret: str) -> bool:
    async with open_async_clients(settings) as clients:
        catalog = CatalogStore(clients.dynamodb, settings.names.config_table, cache_ttl_s=0)
        principal = Principal.parse(client_id)
        assert principal is not None
        return await catalog.authenticate(principal, secret) is not None


def seeded(out: str) -> dict[str, str]:
    """The client ids and secrets a `seed` printed as new."""
    return dict(re.findall(r"client_id\s+(\S+)\n\s+client_secret (cks_\S+)\s+\(shown once\)", out))


def test_seed_shows_secrets_once_and_saves_them_under_the_prefix(aws_settings: AwsSettings, tmp_path: Path) -> None:
    settings = side_settings(aws_settings, "seed")
    other = side_settings(aws_settings, "seed2")
    for s in (settings, other):
        ensure_resources(s, report=lambda m: None)

    first = ok(costkeeper(settings, "seed", run_dir=tmp_path))
    secrets = seeded(first)
    assert len(secrets) == 2, first
    for client_id, secret in secrets.items():
        assert asyncio.run(_authenticates(settings, client_id, secret)), client_id
    saved = tmp_path / "credentials.json"
    assert json.loads(saved.read_text()) == {settings.names.prefix: secrets}
    assert saved.stat().st_mode & 0o777 == 0o600

    # A second prefix seeded into the same run folder gets a section of its own; the first keeps its secrets.
    other_secrets = seeded(ok(costkeeper(other, "seed", run_dir=tmp_path)))
    assert json.loads(saved.read_text()) == {settings.names.prefix: secrets, other.names.prefix: other_secrets}

    # Seeding again finds the org and app, shows no secret and changes nothing saved.
    second = ok(costkeeper(settings, "seed", run_dir=tmp_path))
    assert "client_secret" not in second
    assert second.count("(exists; secret unchanged)") == 2
    for client_id, secret in secrets.items():
        assert asyncio.run(_authenticates(settings, client_id, secret)), client_id
    assert json.loads(saved.read_text())[settings.names.prefix] == secrets


def test_clear_empties_every_table_and_queue_and_reset_seeds_afresh(aws_settings: AwsSettings, tmp_path: Path) -> None:
    settings = side_settings(aws_settings, "clear")
    names = settings.names
    ensure_resources(settings, report=lambda m: None)
    old = seeded(ok(costkeeper(settings, "seed", run_dir=tmp_path)))
    write_usage(settings, usage_records(3))
    settings.dynamodb().put_item(
        TableName=names.aggregates_table, Item={"pk": {"S": "ORG#x#DAY#2025-01-01"}, "sk": {"S": "APP#a#MODEL#m"}}
    )
    checkpoint = {"pk": {"S": "shard-checkpoint-kept"}}
    settings.dynamodb().put_item(TableName=names.checkpoints_table, Item=checkpoint)
    queues = queue_urls(settings)
    for url in queues:
        settings.sqs().send_message(QueueUrl=url, MessageBody="{}")

    out = ok(costkeeper(settings, "clear", run_dir=tmp_path))
    assert f"cleared 3 items from {names.usage_table}" in out
    assert f"cleared 1 items from {names.aggregates_table}" in out
    assert f"cleared 2 items from {names.config_table}" in out
    for spec in table_specs(names):
        expected = 1 if spec.name == names.checkpoints_table else 0  # the aggregator's position is not data
        assert count_items(settings, spec.name) == expected, spec.name
    for url in queues:
        assert queue_counts(settings, url) == [0, 0, 0], url
    # The secrets went with the org and app.
    assert settings.names.prefix not in json.loads((tmp_path / "credentials.json").read_text())

    reset = ok(costkeeper(settings, "reset", run_dir=tmp_path))
    fresh = seeded(reset)
    assert set(fresh) == set(old) and not set(fresh.values()) & set(old.values())
    assert count_items(settings, names.config_table) == 2
    assert count_items(settings, names.usage_table) == count_items(settings, names.aggregates_table) == 0
    assert json.loads((tmp_path / "credentials.json").read_text()) == {names.prefix: fresh}


def queue_counts(settings: AwsSettings, url: str) -> list[int]:
    attributes = settings.sqs().get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return [int(v) for v in attributes.values()]


# -- status -------------------------------------------------------------------------------------------------------


def embedded_env(run_dir: Path, dynamodb_port: int, sqs_port: int) -> dict[str, str | None]:
    """The CLI as run against the embedded emulator: no endpoint variables, ports and run dir of its own."""
    return {var: None for var in ENDPOINT_VARIABLES.values()} | {
        "CK_RUN_DIR": str(run_dir),
        "CK_DYNAMODB_PORT": str(dynamodb_port),
        "CK_SQS_PORT": str(sqs_port),
    }


def test_status_reports_the_embedded_emulator(aws_settings: AwsSettings, tmp_path: Path) -> None:
    dynamodb_port = int(os.environ.get("CK_TEST_DYNAMODB_PORT", "18000"))
    run_dir = REPO / ".run" / f"test-{dynamodb_port}"
    if not (run_dir / "dynamodb-local.pid").exists():
        pytest.skip("the session runs against external endpoints, not the embedded emulator")
    sqs_port = int(os.environ.get("CK_TEST_SQS_PORT", "19324"))

    running = costkeeper(aws_settings, "status", run_dir=run_dir, env=embedded_env(run_dir, dynamodb_port, sqs_port))
    assert running.returncode == 0, running.stdout + running.stderr
    lines = {line.split()[0]: line for line in running.stdout.splitlines()}
    for server, port in (("dynamodb-local", dynamodb_port), ("moto-sqs", sqs_port)):
        pid = (run_dir / f"{server}.pid").read_text().strip()
        assert re.match(rf"{server}\s+answering\s+port {port}\s+pid {pid}\s+log ", lines[server]), running.stdout
        # Where the data lives: the session's emulator runs in memory (a developer's keeps it in the run folder).
        assert lines[server].endswith("  data memory"), lines[server]

    # A server of someone else's already answering on the port (the guide's CI service container, say) is used, not
    # refused, and `stop` leaves it running: it has no pid file of ours.
    other = tmp_path / "other"
    other_env = embedded_env(other, dynamodb_port, sqs_port)
    started = ok(costkeeper(aws_settings, "start", run_dir=other, env=other_env))
    for server, port in (("dynamodb-local", dynamodb_port), ("moto-sqs", sqs_port)):
        assert f"{server}: port {port} already answers (not started here" in started, started
    stopped_other = ok(costkeeper(aws_settings, "stop", "--drain-timeout", "0", run_dir=other, env=other_env))
    assert "dynamodb-local: not running" in stopped_other and "moto-sqs: not running" in stopped_other
    assert ok(costkeeper(aws_settings, "status", run_dir=run_dir, env=embedded_env(run_dir, dynamodb_port, sqs_port)))

    # Where nothing runs, it says so and fails, so scripts can test it.
    empty = tmp_path / "nothing"
    stopped = costkeeper(aws_settings, "status", run_dir=empty, env=embedded_env(empty, 1, 2))
    assert stopped.returncode == 1
    assert re.search(r"dynamodb-local\s+stopped\s+port 1\s+pid -", stopped.stdout), stopped.stdout
    assert re.search(r"moto-sqs\s+stopped\s+port 2\s+pid -", stopped.stdout), stopped.stdout


# -- --localstack -------------------------------------------------------------------------------------------------


def test_localstack_needs_no_aws_credentials(
    aws_settings: AwsSettings, seeded_secrets: dict[str, str], tmp_path: Path
) -> None:
    """On a machine with no AWS credentials at all, `--localstack` uses the dummy ones LocalStack accepts."""
    endpoint = urlsplit(aws_settings.endpoints.get("dynamodb", ""))
    if not endpoint.netloc:
        pytest.skip("the session runs on AWS itself: no emulator edge to point --localstack at")
    unset = [*ENDPOINT_VARIABLES.values(), "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"]
    env: dict[str, str | None] = dict.fromkeys(unset)
    env |= {
        # The edge is the session's DynamoDB endpoint; `scan` needs nothing else.
        "LOCALSTACK_HOST": endpoint.netloc,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    out = ok(costkeeper(aws_settings, "--localstack", "scan", "config", run_dir=tmp_path, env=env))
    orgs = [item["pk"] for item in map(json.loads, out.splitlines()[:-1]) if item["sk"] == "CONFIG"]
    assert f"ORG#{SEED_ORG_ID}" in orgs, out
