"""Fault injection: crashes, restarts, outages, stalls, duplicates and poison. Nothing is lost, nothing counts twice.

Each test runs processes of its own on a resource prefix of its own, so the session pipeline never consumes its
queue or stream, and ends with the same check: every aggregate is the exact sum of the usage the API accepted, and
the usage table holds exactly one item per accepted request_id. Expected values come only from what the client was
told (202 per event) and `harness.price`, never from the pipeline's own figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from aggregator.aggregates import parse_sort_key
from infra import emulator
from infra.processes import PipelineProcess
from infra.resource_setup import ensure_resources, scan_items
from runtime.aws import AwsSettings
from runtime.resources import ResourceNames
from tests.integration.harness import (
    REPO,
    Pipeline,
    Tenant,
    api_client,
    drop_resources,
    org_settings,
    pipeline_env,
    price,
    provision,
    usage,
    wait_idle,
)
from workers.message import UsageEvent, encode

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

# Minutes of crashes and outages: `slow`, and not `integration`, so `-m integration` stays about a minute.
pytestmark = pytest.mark.slow

# A DynamoDB partition this long outlasts the SDK's retries (5 attempts with up to ~15 s of back-off).
PARTITION_S = 18.0
# Short, so that messages held by a killed worker come back within the test (production: 30 s); not shorter, or a
# batch of ten messages on a busy two-core machine outlasts it and is delivered twice while still being written.
VISIBILITY_TIMEOUT_S = 5
TOTALS = (
    "cost_usd_micros",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "request_count",
)
AggregateKey = tuple[str, str, str, str]  # org_id, org-local day, app_id, model_label
UsageKey = tuple[str, str, str]  # org_id, app_id, request_id


def report(test: str, message: str) -> None:
    print(f"[{test}] {message}", flush=True)


# -- what the client was told ---------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Every event the API answered 202 for: the only source of expected values.

    The tenants are provisioned with `org_settings()`: its prices, and UTC days.
    """

    models: dict[str, Any] = field(default_factory=lambda: org_settings()["models"])
    events: dict[UsageKey, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, tenant: Tenant, event: dict[str, Any]) -> None:
        key = (tenant.org_id, tenant.app_id, event["request_id"].lower())
        with self._lock:
            previous = self.events.setdefault(key, event)
        assert previous == event, f"request_id {key[2]} was accepted twice with different content"

    def post_one(self, tenant: Tenant, headers: dict[str, str], event: dict[str, Any]) -> httpx.Response:
        r = tenant.http.post(f"{tenant.app_path}/usage", json=event, headers=headers)
        if r.status_code == 202:
            self.accept(tenant, event)
        return r

    def post_batch(self, tenant: Tenant, headers: dict[str, str], events: list[dict[str, Any]]) -> int:
        r = tenant.http.post(f"{tenant.app_path}/usage/batch", json={"items": events}, headers=headers)
        assert r.status_code == 207, r.text
        results = r.json()["results"]
        for result, event in zip(results, events, strict=True):
            if result["status"] == 202:
                self.accept(tenant, event)
        return sum(1 for result in results if result["status"] == 202)

    def cost(self, event: dict[str, Any]) -> int:
        prices = self.models[event["model_label"]]["prices"]
        return price(
            event["input_tokens"],
            event["output_tokens"],
            prices["input_per_mtok_usd_micros"],
            prices["output_per_mtok_usd_micros"],
            event.get("cache_read_tokens", 0),
            prices.get("cache_read_per_mtok_usd_micros", 0),
            event.get("cache_write_tokens", 0),
            prices.get("cache_write_per_mtok_usd_micros", 0),
        )

    def expected_aggregates(self) -> dict[AggregateKey, dict[str, int]]:
        expected: dict[AggregateKey, dict[str, int]] = {}
        for (org_id, app_id, _), event in self.events.items():
            day = datetime.fromisoformat(event["timestamp"]).astimezone(UTC).date().isoformat()
            totals = expected.setdefault((org_id, day, app_id, event["model_label"]), dict.fromkeys(TOTALS, 0))
            totals["cost_usd_micros"] += self.cost(event)
            totals["input_tokens"] += event["input_tokens"]
            totals["output_tokens"] += event["output_tokens"]
            totals["cache_read_tokens"] += event.get("cache_read_tokens", 0)
            totals["cache_write_tokens"] += event.get("cache_write_tokens", 0)
            totals["request_count"] += 1
        return expected


def random_usage(rng: random.Random) -> dict[str, Any]:
    """Uneven token counts, so half-micro-dollar roundings and every price kind show in the sums."""
    label = rng.choice(["premium", "premium", "standard", "economy"])
    extra = {}
    if label == "premium":
        extra = {"cache_read_tokens": rng.randint(0, 20_000), "cache_write_tokens": rng.randint(0, 777)}
    return usage(label, rng.randint(1, 50_000), rng.randint(0, 5_000), **extra)


def post_backlog(
    ledger: Ledger, tenant: Tenant, headers: dict[str, str], count: int, rng: random.Random, batch: int, threads: int
) -> float:
    """Post count events via /usage/batch; returns the seconds it took. Every event must be accepted."""
    events = [random_usage(rng) for _ in range(count)]
    batches = [events[i : i + batch] for i in range(0, count, batch)]
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        accepted = sum(pool.map(lambda b: ledger.post_batch(tenant, headers, b), batches))
    assert accepted == count
    return time.monotonic() - started


# -- what the pipeline holds ----------------------------------------------------------------------------------------


class Probe:
    """Reads a prefix's tables and queues directly, with clients opened once (polling stays cheap)."""

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self.ddb: DynamoDBClient = settings.dynamodb()
        self.sqs: SQSClient = settings.sqs()

    def queue_url(self, name: str) -> str:
        return self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def queue_depth(self, name: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def usage_count(self) -> int:
        kwargs: dict[str, Any] = {"TableName": self.settings.names.usage_table, "Select": "COUNT"}
        count = 0
        while True:
            page = self.ddb.scan(**kwargs)
            count += page["Count"]
            if "LastEvaluatedKey" not in page:
                return count
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def usage_keys(self) -> Counter[UsageKey]:
        items = scan_items(self.ddb, self.settings.names.usage_table, "org_id, app_id, request_id")
        return Counter((i["org_id"]["S"], i["app_id"]["S"], i["request_id"]["S"]) for i in items)

    def aggregates(self) -> dict[AggregateKey, dict[str, int]]:
        result: dict[AggregateKey, dict[str, int]] = {}
        for item in scan_items(self.ddb, self.settings.names.aggregates_table):
            app_id, label = parse_sort_key(item["sk"]["S"])
            key = (item["org_id"]["S"], item["day"]["S"], app_id, label)
            result[key] = {name: int(item[name]["N"]) if name in item else 0 for name in TOTALS}
        return result

    def applied_requests(self) -> int:
        return sum(totals["request_count"] for totals in self.aggregates().values())


def poll(check: Callable[[], int], done: Callable[[int], bool], timeout_s: float, interval_s: float = 0.05) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s}s; last value {value}")
        time.sleep(interval_s)


def steady(check: Callable[[], int], quiet_s: float = 1.5, timeout_s: float = 30.0) -> int:
    """The value once it has stopped changing for quiet_s."""
    deadline = time.monotonic() + timeout_s
    value, since = check(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"still changing after {timeout_s}s; last value {value}"
        time.sleep(0.25)
        latest = check()
        if latest != value:
            value, since = latest, time.monotonic()
    return value


# How long the pipeline may take to settle: a liveness bound, generous because the suite shares two cores with its
# emulators (`make bench` measures the end-to-end lag against its target).
SETTLE_TIMEOUT_S = 180.0


def assert_exact(probe: Probe, ledger: Ledger, timeout_s: float = SETTLE_TIMEOUT_S) -> float:
    """Wait for the pipeline to settle, then check the invariant; returns the seconds it took to settle."""
    started = time.monotonic()
    expected = ledger.expected_aggregates()
    accepted = len(ledger.events)
    deadline = started + timeout_s
    while True:
        actual = probe.aggregates()
        counted = sum(t["request_count"] for t in actual.values())
        # Aggregates only grow: once over the accepted count, no amount of waiting makes them right.
        assert counted <= accepted, f"{counted} requests counted, only {accepted} accepted"
        if actual == expected or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert actual == expected
    settled_s = time.monotonic() - started
    # Idle means the queue is empty and the aggregator's checkpoints are at the stream's end: nothing more is coming.
    wait_idle(probe.settings, timeout_s)
    assert probe.aggregates() == expected
    keys = probe.usage_keys()
    assert [k for k, n in keys.items() if n != 1] == []
    assert set(keys) == set(ledger.events)
    return settled_s


# -- processes and resources of one test ----------------------------------------------------------------------------


def set_visibility_timeout(settings: AwsSettings, seconds: int) -> None:
    sqs = settings.sqs()
    url = sqs.get_queue_url(QueueName=settings.names.usage_queue)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})


def create_resources(settings: AwsSettings) -> None:
    ensure_resources(settings, report=lambda m: None)
    set_visibility_timeout(settings, VISIBILITY_TIMEOUT_S)


def fault_log_dir(settings: AwsSettings) -> Path:
    path = REPO / ".run" / "test-logs" / settings.names.prefix.rstrip("-")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def fault_deployment(aws_settings: AwsSettings) -> Iterator[tuple[AwsSettings, dict[str, str]]]:
    """Where this module's `isolated` pipelines run, and the environment that points their processes there.

    With the session on the embedded emulator: a fresh one of this module's own. DynamoDB Local slows down as stream
    records accumulate (README, "Emulator notes"), and by now the session's has taken every earlier test's writes:
    these tests would measure that rather than recovery from their faults. Against external endpoints (LocalStack,
    shared and not restarted per module): those, as the session has them.
    """
    session_port = int(os.environ.get("CK_TEST_DYNAMODB_PORT", "18000"))
    if aws_settings.endpoints.get("dynamodb") != f"http://127.0.0.1:{session_port}":
        yield aws_settings, {}
        return
    cfg = emulator.EmulatorConfig(
        run_dir=REPO / ".run" / f"test-{session_port + 300}",
        cache_dir=emulator.default_cache_dir(),
        dynamodb_port=session_port + 300,
        sqs_port=int(os.environ.get("CK_TEST_SQS_PORT", "19324")) + 300,
        in_memory=True,
    )
    emulator.start(cfg, report=lambda m: None)
    try:
        env = cfg.environment()
        yield AwsSettings.from_env({**os.environ, **env, "CK_RESOURCE_PREFIX": aws_settings.names.prefix}), env
    finally:
        emulator.stop(cfg, report=lambda m: None)


@pytest.fixture
def isolated(fault_deployment: tuple[AwsSettings, dict[str, str]]) -> Iterator[Pipeline]:
    """A pipeline (not yet started) on a prefix of its own."""
    base, env = fault_deployment
    settings = replace(base, names=ResourceNames(f"{base.names.prefix}f{secrets.token_hex(2)}-"))
    create_resources(settings)
    pipeline = Pipeline(settings, pipeline_env(settings, **env), fault_log_dir(settings))
    try:
        yield pipeline
    finally:
        pipeline.stop()
        drop_resources(settings)


def start_as(pipeline: Pipeline, name: str, key: str, **env: str) -> PipelineProcess:
    """Another instance of a process, under a key of its own and with env changes: a rolling restart's overlap,
    or one process routed through a Partition."""
    process = PipelineProcess(name, {**pipeline.env, **env}, pipeline.log_dir / f"{key}.log")
    process.start()
    pipeline.processes[key] = process
    return process


class Partition:
    """A TCP forwarder to one server that can be cut: a network partition that, unlike a restart, keeps the
    server's in-memory data. While cut, every connection is closed and new ones are closed as soon as accepted."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self._target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._cut = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                # Checked under the lock that cut() takes after setting the flag: no connection slips through.
                cut = self._cut.is_set()
                if not cut:
                    self._open.update((client, upstream))
            if cut:
                self._drop(client, upstream)
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            connections = list(self._open)
        self._drop(*connections)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._listener.close()
        self.cut()


def worker_stats(pipeline: Pipeline) -> dict[str, int]:
    """The figures the last worker that stopped gracefully logged."""
    lines = (pipeline.log_dir / "worker.log").read_text(errors="replace").splitlines()
    last = [line for line in lines if "drained and stopped: " in line][-1]
    return dict(json.loads(last.split("drained and stopped: ", 1)[1]))


def log_count(pipeline: Pipeline, log_name: str, text: str) -> int:
    path = pipeline.log_dir / log_name
    return path.read_text(errors="replace").count(text) if path.exists() else 0


# -- 1. a worker crash ----------------------------------------------------------------------------------------------


def test_a_worker_killed_mid_batch_loses_nothing_and_counts_nothing_twice(isolated: Pipeline) -> None:
    probe, ledger, rng = Probe(isolated.settings), Ledger(), random.Random(1)
    isolated.start("api", "aggregator")
    with api_client(isolated.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        posted_s = post_backlog(ledger, tenant, headers, 2000, rng, batch=100, threads=4)
        total = len(ledger.events)
        report("worker-kill", f"posted {total} events in {posted_s:.1f}s with the worker stopped")

        isolated.start("worker")
        started = time.monotonic()
        seen = poll(probe.usage_count, lambda n: n >= total // 5, 120)
        isolated.kill("worker")
        killed_after_s = time.monotonic() - started
        # Writes the dead worker had already sent may still land (DynamoDB Local queues them when busy).
        at_kill = steady(probe.usage_count)
        report("worker-kill", f"SIGKILL after {killed_after_s:.2f}s at {seen} items; {at_kill} items once settled")
        assert 0 < at_kill < total

        restarted = time.monotonic()
        isolated.start("worker")
        settled_s = assert_exact(probe, ledger)
        isolated.stop("worker")
        stats = worker_stats(isolated)
        report(
            "worker-kill",
            f"new worker: exact after {time.monotonic() - restarted:.1f}s (aggregates {settled_s:.1f}s); "
            f"wrote {stats['events_written']}, skipped {stats['duplicates']} duplicates, "
            f"{stats['messages']} messages received",
        )
        # Every item the dead worker did not write, the new one wrote; what it had written came back as duplicates.
        assert stats["events_written"] == total - at_kill
        isolated.check_alive()


# -- 2. an aggregator crash, and two aggregators at once -------------------------------------------------------------


def test_aggregators_killed_mid_batch_or_overlapping_count_every_request_once(isolated: Pipeline) -> None:
    probe, ledger, rng = Probe(isolated.settings), Ledger(), random.Random(2)
    # Small reads: many batches per backlog, so the kill lands among them rather than after the last.
    isolated.env["CK_AGGREGATOR_RECORDS_PER_READ"] = "20"
    isolated.start("api", "worker")
    with api_client(isolated.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        posted_s = post_backlog(ledger, tenant, headers, 1500, rng, batch=100, threads=4)
        total = len(ledger.events)
        poll(probe.usage_count, lambda n: n == total, SETTLE_TIMEOUT_S, 0.2)
        report("aggregator-kill", f"posted {total} events in {posted_s:.1f}s; all written with no aggregator running")

        isolated.start("aggregator")
        started = time.monotonic()
        seen = poll(probe.applied_requests, lambda n: n >= total // 5, 120)
        isolated.kill("aggregator")
        # An update the dead aggregator had already sent may still land.
        at_kill = steady(probe.applied_requests)
        report(
            "aggregator-kill",
            f"SIGKILL after {time.monotonic() - started:.2f}s at {seen} requests applied; {at_kill} once settled",
        )
        assert 0 < at_kill < total

        isolated.start("aggregator")
        settled_s = assert_exact(probe, ledger)
        report("aggregator-kill", f"restarted aggregator: exact after {settled_s:.1f}s")

        # A rolling restart: the new aggregator starts while the old one still runs, both read the same shards
        # while usage arrives, then the old one is stopped.
        second = start_as(isolated, "aggregator", "aggregator-2")
        overlap_started = time.monotonic()
        for _ in range(2):
            post_backlog(ledger, tenant, headers, 300, rng, batch=100, threads=3)
            time.sleep(1.0)
        assert second.alive()
        isolated.stop("aggregator")
        overlap_s = time.monotonic() - overlap_started
        settled_s = assert_exact(probe, ledger)
        report(
            "aggregator-overlap",
            f"{len(ledger.events) - total} more events during a {overlap_s:.1f}s overlap of two aggregators; "
            f"exact after {settled_s:.1f}s",
        )
        isolated.check_alive()


def test_an_aggregator_cut_off_from_dynamodb_rides_it_out_and_counts_exactly(isolated: Pipeline) -> None:
    probe, ledger, rng = Probe(isolated.settings), Ledger(), random.Random(6)
    dynamodb_url = isolated.settings.endpoints.get("dynamodb")
    streams_url = isolated.settings.endpoints.get("dynamodbstreams")
    if dynamodb_url is None or dynamodb_url != streams_url:
        pytest.skip("needs one local endpoint serving DynamoDB and its Streams")
    partition = Partition(dynamodb_url)
    try:
        isolated.start("api", "worker")
        # Only the aggregator goes through the partition; shard listing comes round every second.
        aggregator = start_as(
            isolated,
            "aggregator",
            "aggregator",
            AWS_ENDPOINT_URL_DYNAMODB=partition.url,
            AWS_ENDPOINT_URL_DYNAMODB_STREAMS=partition.url,
            CK_AGGREGATOR_SHARD_REFRESH_S="1",
        )
        with api_client(isolated.base_url) as http:
            tenant = provision(http)
            headers = tenant.app_headers()
            post_backlog(ledger, tenant, headers, 300, rng, batch=100, threads=3)
            assert_exact(probe, ledger)

            # Longer than the SDK's own retries (5 attempts, up to ~15 s of back-off), so errors reach our code.
            partition.cut()
            cut_at = time.monotonic()
            post_backlog(ledger, tenant, headers, 500, rng, batch=100, threads=3)
            while time.monotonic() - cut_at < PARTITION_S:
                assert aggregator.alive(), f"the aggregator exited with {aggregator.returncode()} while cut off"
                time.sleep(0.5)
            applied_during = probe.applied_requests()
            listing_errors = log_count(isolated, "aggregator.log", "cannot list shards")
            reader_errors = log_count(isolated, "aggregator.log", "error; retrying from checkpoint")
            partition.restore()
            restored = time.monotonic()
            settled_s = assert_exact(probe, ledger)
            report(
                "dynamodb-partition",
                f"aggregator cut off for {PARTITION_S:.0f}s: {applied_during} of {len(ledger.events)} requests applied "
                f"meanwhile, {listing_errors} failed shard listings and {reader_errors} failed reads logged; exact "
                f"{time.monotonic() - restored:.1f}s after it was restored (aggregates {settled_s:.1f}s)",
            )
            # None of the 500 posted during the cut was applied: the partition did reach the aggregator. (Its
            # errors are reported, not asserted: a call hung on the cut link can wait out botocore's 30 s read
            # timeout, longer than the cut, before any error reaches the aggregator's log.)
            assert applied_during == 300
            isolated.check_alive()
    finally:
        isolated.stop("aggregator")  # before the partition goes, or its last calls fail on the way out
        partition.close()


# -- 3. an SQS outage and a DynamoDB stall ----------------------------------------------------------------------------


@pytest.fixture
def own_emulator() -> Iterator[emulator.EmulatorConfig]:
    """An emulator of this test's own: its servers are stopped and stalled, so the session's stays untouched.

    Even when the session runs on LocalStack: an outage and a stall are made by stopping and SIGSTOPping a server
    this test started, which a shared LocalStack container is not. That takes Java (and npm once) as `make test` does.
    """
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("the SQS outage and DynamoDB stall run on an embedded emulator of their own, which needs Java 17")
    base_dynamodb = int(os.environ.get("CK_TEST_DYNAMODB_PORT", "18000"))
    base_sqs = int(os.environ.get("CK_TEST_SQS_PORT", "19324"))
    dynamodb_port = int(os.environ.get("CK_TEST_FAULT_DYNAMODB_PORT", str(base_dynamodb + 100)))
    cfg = emulator.EmulatorConfig(
        run_dir=REPO / ".run" / f"test-{dynamodb_port}",
        cache_dir=emulator.default_cache_dir(),
        dynamodb_port=dynamodb_port,
        sqs_port=int(os.environ.get("CK_TEST_FAULT_SQS_PORT", str(base_sqs + 100))),
        in_memory=True,
    )
    emulator.start(cfg, report=lambda m: None)
    try:
        yield cfg
    finally:
        # A stopped (SIGSTOP) server would not act on SIGTERM until continued.
        pid = emulator.server_pid(cfg, "dynamodb-local")
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        emulator.stop(cfg, report=lambda m: None)


@pytest.fixture
def outage_pipeline(own_emulator: emulator.EmulatorConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    # boto3 takes credentials from the environment only; the emulator accepts any.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, os.environ.get(name, "test"))
    env = {**own_emulator.environment(), "CK_RESOURCE_PREFIX": f"ckfault-{secrets.token_hex(3)}-"}
    settings = AwsSettings.from_env(env)
    create_resources(settings)
    env = pipeline_env(settings, **own_emulator.environment(), CK_PUBLISH_TIMEOUT_S=str(PUBLISH_TIMEOUT_S))
    pipeline = Pipeline(settings, env, fault_log_dir(settings))
    try:
        yield pipeline
    finally:
        pipeline.stop()


# How long the API waits for SQS before answering 503 (5 s by default); shorter here to keep the outage short.
PUBLISH_TIMEOUT_S = 2.0


def assert_queue_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "QUEUE_UNAVAILABLE"
    assert response.headers["retry-after"] == "1"


def test_an_sqs_outage_answers_503_and_a_dynamodb_stall_loses_nothing(
    outage_pipeline: Pipeline, own_emulator: emulator.EmulatorConfig
) -> None:
    pipeline, cfg = outage_pipeline, own_emulator
    probe, ledger, rng = Probe(pipeline.settings), Ledger(), random.Random(3)
    pipeline.start()
    with api_client(pipeline.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        post_backlog(ledger, tenant, headers, 300, rng, batch=100, threads=3)
        # The queue lives in moto's memory: what is still on it when moto stops is the emulator's loss, not ours.
        assert_exact(probe, ledger)

        emulator.stop(cfg, report=lambda m: None, only="moto-sqs")
        outage_started = time.monotonic()
        # Answered 503, so maybe queued, maybe not: a correct client retries them with the same request_ids.
        refused: list[dict[str, Any]] = []

        def post_during_outage(size: int) -> float:
            events = [random_usage(rng) for _ in range(size)]
            refused.extend(events)
            sent = time.monotonic()
            if size == 1:
                r = ledger.post_one(tenant, headers, events[0])
            else:
                r = tenant.http.post(f"{tenant.app_path}/usage/batch", json={"items": events}, headers=headers)
            assert_queue_unavailable(r)
            return time.monotonic() - sent

        with ThreadPoolExecutor(4) as pool:
            latencies = list(pool.map(post_during_outage, [1, 3, 1, 3]))
        pipeline.check_alive()
        report(
            "sqs-outage",
            f"moto down: 4 concurrent posts answered 503 QUEUE_UNAVAILABLE in "
            f"{', '.join(f'{s:.2f}s' for s in latencies)} (publish timeout {PUBLISH_TIMEOUT_S}s)",
        )
        assert max(latencies) < PUBLISH_TIMEOUT_S + 2.0

        emulator.start(cfg, report=lambda m: None, only="moto-sqs")
        # Back, but empty: moto lost the queues with its memory. The worker's receives now fail at once (its
        # earlier ones were still in the SDK's retries): it must log, back off and go on, not exit.
        post_during_outage(1)
        receive_errors = poll(lambda: log_count(pipeline, "worker.log", "receive failed"), lambda n: n >= 2, 30, 0.2)
        pipeline.check_alive()
        create_resources(pipeline.settings)
        recreated = time.monotonic()
        outage_s = recreated - outage_started
        assert ledger.post_batch(tenant, headers, refused) == len(refused)
        post_backlog(ledger, tenant, headers, 300, rng, batch=100, threads=3)
        poll(probe.usage_count, lambda n: n == len(ledger.events), SETTLE_TIMEOUT_S, 0.2)
        report(
            "sqs-outage",
            f"outage {outage_s:.1f}s ({receive_errors} failed receives logged by the worker); after re-creating the "
            f"queues the worker wrote the retried and new usage within {time.monotonic() - recreated:.1f}s",
        )
        assert_exact(probe, ledger)

        # A stall: DynamoDB Local stops answering (SIGSTOP) for a few seconds while the worker and aggregator write.
        before = len(ledger.events)
        post_backlog(ledger, tenant, headers, 1000, rng, batch=100, threads=4)
        seen = poll(probe.usage_count, lambda n: n >= before + 100, 120)
        pid = emulator.server_pid(cfg, "dynamodb-local")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(5.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        settled_s = assert_exact(probe, ledger)
        report(
            "dynamodb-stall",
            f"stalled 5.0s at {seen - before} of 1000 new items; exact {time.monotonic() - resumed:.1f}s after "
            f"resuming (aggregates {settled_s:.1f}s)",
        )
        pipeline.stop("worker")
        stats = worker_stats(pipeline)
        report(
            "sqs-outage+stall",
            f"worker over the whole test: {stats['events_written']} written, {stats['duplicates']} duplicates skipped "
            "(events answered 503 whose send the SDK still completed, then retried by the client; redeliveries)",
        )
        pipeline.check_alive()


# -- 4. duplicates and poison --------------------------------------------------------------------------------------


def dead_letters(probe: Probe, expected: int) -> list[dict[str, Any]]:
    """Read every dead letter once, then make them visible again for whoever comes next."""
    url = probe.queue_url(probe.settings.names.dead_letter_queue)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 20
    while len(found) < expected and time.monotonic() < deadline:
        for m in probe.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=10, MessageAttributeNames=["All"]
        ).get("Messages", []):
            found[m["MessageId"]] = dict(m)
    entries: list[Any] = [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
        for i, m in enumerate(found.values())
    ]
    for start in range(0, len(entries), 10):
        probe.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries[start : start + 10])
    return list(found.values())


def error_codes(messages: list[dict[str, Any]]) -> Counter[str]:
    return Counter(m["MessageAttributes"]["error_code"]["StringValue"] for m in messages)


def queue_event(tenant: Tenant, event: dict[str, Any], org_id: str | None = None) -> UsageEvent:
    """An event as the API would enqueue it, for messages sent straight to the queue."""
    return UsageEvent.model_validate(
        {**event, "org_id": org_id or tenant.org_id, "app_id": tenant.app_id, "accepted_at": datetime.now(UTC)}
    )


def test_duplicates_count_once_and_poison_reaches_the_dead_letter_queue_and_comes_back(isolated: Pipeline) -> None:
    probe, ledger, rng = Probe(isolated.settings), Ledger(), random.Random(4)
    isolated.start()
    with api_client(isolated.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        events = [random_usage(rng) for _ in range(30)]

        def hammer(seed: int) -> tuple[Counter[int], int]:
            # Each thread posts every event singly and then in batches, in an order of its own.
            order = random.Random(seed)
            statuses: Counter[int] = Counter()
            for event in order.sample(events, len(events)):
                statuses[ledger.post_one(tenant, headers, event).status_code] += 1
            shuffled = order.sample(events, len(events))
            batched = sum(ledger.post_batch(tenant, headers, shuffled[i : i + 20]) for i in range(0, len(shuffled), 20))
            return statuses, batched

        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(hammer, range(4)))
        # A repeated request_id is accepted every time (the client may be retrying) and stored once.
        assert sum((statuses for statuses, _ in outcomes), Counter[int]()) == {202: 4 * 30}
        assert [batched for _, batched in outcomes] == [30] * 4
        r = tenant.http.post(
            f"{tenant.app_path}/usage/batch", json={"items": [events[0], events[1], events[0]]}, headers=headers
        )
        assert [x["status"] for x in r.json()["results"]] == [202, 202, 422]
        assert r.json()["results"][2]["error"]["code"] == "DUPLICATE_IN_BATCH"
        assert len(ledger.events) == 30
        report(
            "duplicates",
            f"{4 * (30 + 2) + 1} posts from 4 threads of 30 request_ids in {time.monotonic() - started:.1f}s",
        )

        # Poison, straight onto the queue: nothing any retry could make right.
        unknown_org = str(uuid.uuid4())
        good, bad = random_usage(rng), random_usage(rng)
        mixed = encode([queue_event(tenant, good), queue_event(tenant, bad, org_id=unknown_org)])
        poison = {
            "not json": "this is not JSON {",
            "wrong schema": json.dumps({"v": 1, "usage": [{"org_id": tenant.org_id, "tokens": 5}]}),
            "unknown org": encode([queue_event(tenant, random_usage(rng), org_id=unknown_org)]),
            "unknown label": encode([queue_event(tenant, {**random_usage(rng), "model_label": "no-such-label"})]),
            "one good event, one of an unknown org": mixed,
        }
        queue_url = probe.queue_url(isolated.settings.names.usage_queue)
        for body in poison.values():
            probe.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        # The good half of the mixed message is usage like any other; only the bad half is a dead letter.
        ledger.accept(tenant, good)
        poll(lambda: probe.queue_depth(isolated.settings.names.dead_letter_queue), lambda n: n >= len(poison), 30)
        # The worker goes on with ordinary usage after the poison.
        post_backlog(ledger, tenant, headers, 50, rng, batch=25, threads=2)
        assert_exact(probe, ledger)
        assert probe.queue_depth(isolated.settings.names.dead_letter_queue) == len(poison)

        letters = dead_letters(probe, len(poison))
        expected_codes = Counter({"POISON_MESSAGE": 2, "UNKNOWN_ORG": 2, "UNKNOWN_MODEL_LABEL": 1})
        assert error_codes(letters) == expected_codes
        forwarded = [m for m in letters if bad["request_id"] in m["Body"]]
        assert len(forwarded) == 1 and good["request_id"] not in forwarded[0]["Body"]
        report("poison", f"{len(letters)} dead letters: {dict(error_codes(letters))}")

        redrive = subprocess.run(
            [sys.executable, "-m", "infra", "redrive"],
            env=isolated.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert redrive.returncode == 0, redrive.stderr
        assert f"redrove {len(poison)} message(s)" in redrive.stdout, redrive.stdout
        # Redriven, they fail the same way and return, with their reasons; the good event is still counted once.
        poll(lambda: probe.queue_depth(isolated.settings.names.dead_letter_queue), lambda n: n >= len(poison), 30)
        assert_exact(probe, ledger)
        letters = dead_letters(probe, len(poison))
        assert error_codes(letters) == expected_codes
        assert probe.queue_depth(isolated.settings.names.dead_letter_queue) == len(poison)
        report("poison", f"redrive moved {len(poison)} back; all returned to the dead-letter queue")
        isolated.check_alive()


# -- 5. graceful shutdown -------------------------------------------------------------------------------------------

# What an orchestrator gives a task between SIGTERM and SIGKILL (ECS's default stopTimeout).
DRAIN_TIMEOUT_S = 30.0


def test_sigterm_drains_the_worker_and_leaves_nothing_half_done(isolated: Pipeline) -> None:
    probe, ledger, rng = Probe(isolated.settings), Ledger(), random.Random(5)
    isolated.start("api", "aggregator")
    with api_client(isolated.base_url) as http:
        tenant = provision(http)
        headers = tenant.app_headers()
        # One request at a time: one message per request, 20 events each, so a received batch is short to finish.
        posted_s = post_backlog(ledger, tenant, headers, 1000, rng, batch=20, threads=1)
        total = len(ledger.events)
        report("sigterm", f"posted {total} events in {posted_s:.1f}s with the worker stopped")

        isolated.start("worker")
        poll(probe.usage_count, lambda n: n >= total // 5, 120)
        worker = isolated.processes.pop("worker")
        signalled = time.monotonic()
        returncode = worker.stop(timeout_s=DRAIN_TIMEOUT_S)
        drain_s = time.monotonic() - signalled
        assert returncode == 0
        first = worker_stats(isolated)
        at_stop = probe.usage_count()
        report(
            "sigterm",
            f"exited 0 in {drain_s:.2f}s after SIGTERM; it had written {first['events_written']} "
            f"({first['messages']} messages received); {at_stop} items in the table",
        )
        assert first["events_written"] == at_stop
        assert 0 < at_stop < total
        # Drained, not abandoned: every message it had received was written and deleted before it exited.
        assert first["messages_deleted"] == first["messages"]

        isolated.start("worker")
        settled_s = assert_exact(probe, ledger)
        isolated.stop("worker")
        second = worker_stats(isolated)
        report(
            "sigterm",
            f"new worker wrote the other {second['events_written']} with {second['duplicates']} duplicates; "
            f"exact after {settled_s:.1f}s",
        )
        # What the first worker wrote is not written again. (A duplicate can still arrive: SQS delivers at least once,
        # and an SDK retry of a send that had gone through enqueues a message twice; its events are found and skipped.)
        assert second["events_written"] == total - at_stop
        isolated.check_alive()
