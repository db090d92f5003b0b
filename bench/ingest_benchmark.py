"""Ingest benchmark: the real pipeline against a naive synchronous baseline, on the same load, with figures and targets.

    python -m bench.ingest_benchmark [--events N] [--concurrency C] [--batch-size B] [--baseline-events M]

Self-contained: it starts its own emulator (DynamoDB Local on 18700, moto SQS on 18701) unless AWS_ENDPOINT_URL_* are
set, creates its own resources under a fresh prefix, provisions a tenant through the catalog store, and stops
everything it started on exit, Ctrl-C and SIGTERM included. Only loopback is used; every loop is bounded in count and
time. Request bodies are planned before the clock starts, so the load generator spends little CPU while measuring.

A. Pipeline, saturated: API, worker and aggregator run as subprocesses; C clients post N events (batches of B and a
   share of single posts) as fast as they are answered. Figures: accepted events/s over the posting phase,
   per-request latency, the rate at which events got through to the aggregates, end-to-end lag per event, and
   DynamoDB and SQS requests per event.
A2. Pipeline, paced: the same with fewer events posted at a fixed rate (default: half of what the warm-up got
   through), on fresh processes and a queue of their own: the lag at a load the pipeline sustains. At saturation the
   lag is the backlog divided by the drain rate, so it measures the machine's write capacity more than the pipeline.
B. Baseline: bench/sync_baseline.py prices and writes the usage item and its aggregate inside the request.
Each of A2, B and A gets an emulator of its own (DynamoDB Local serves everything from one SQLite thread, and its
cost per request grows with what earlier phases left behind), warmed up by a throwaway run first (a fresh DynamoDB
Local is several times slower until its JIT has warmed up).

Where the figures come from: the processes count their own requests (PublisherStats, WorkerStats, the worker's insert
requests, AggregatorStats) and write them to CK_*_STATS_FILE when they stop on SIGTERM. The lag is measured by the
aggregator per event, from the usage item's accepted_at_ms (stamped by the API when it accepted the event) to the
moment its transaction committed, into a bounded histogram (aggregator/lag.py); no sampling, no guessing. Every phase
ends with a correctness check: the aggregates equal the exact sum of what was accepted, priced independently here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aggregator.aggregates import Totals, day_partition
from bench.load import LoadResult, run_load
from bench.report import fmt, ms, per_event, percentile, table, verdict
from bench.workload import ORG_SETTINGS, PlannedEvent, PlannedRequest, billed, expected_totals, plan_requests
from catalog.model import AppSettings
from catalog.store import CatalogStore
from infra import emulator
from infra.processes import PipelineProcess, child_environment, wait_for_http
from infra.resource_setup import ensure_resources
from runtime.aws import ENDPOINT_VARIABLES, AwsSettings, open_async_clients
from runtime.resources import ResourceNames
from runtime.stats_file import read_stats

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".run" / "bench"
DYNAMODB_PORT = 18700
SQS_PORT = 18701
APP_ID = "bench"

TARGET_SPEEDUP = 10.0
TARGET_LAG_P99_S = 2.0
TARGET_SQS_PER_EVENT = 0.05
TARGET_AGGREGATE_WRITES_PER_EVENT = 0.05


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- set-up ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    org_id: str
    app_secret: str

    @property
    def usage_path(self) -> str:
        return f"/api/v1/orgs/{self.org_id}/apps/{APP_ID}/usage"

    @property
    def client_id(self) -> str:
        return f"org-{self.org_id}-app-{APP_ID}"


def provision(settings: AwsSettings) -> Tenant:
    """Resources under the settings' prefix, and one org with one app, written straight to the catalog."""
    ensure_resources(settings, report=lambda m: None)

    async def put() -> Tenant:
        async with open_async_clients(settings) as clients:
            store = CatalogStore(clients.dynamodb, settings.names.config_table, 0.0)
            org_id = str(uuid.uuid4())
            org, _ = await store.put_org(org_id, ORG_SETTINGS)
            _, app = await store.put_app(org, APP_ID, AppSettings(name="Benchmark app"))
            assert app.client_secret is not None
            return Tenant(org_id, app.client_secret)

    return asyncio.run(put())


@contextmanager
def fresh_emulator(
    external: bool,
    run_dir: Path = RUN_DIR,
    dynamodb_port: int = DYNAMODB_PORT,
    sqs_port: int = SQS_PORT,
    report: Callable[[str], None] = log,
) -> Iterator[None]:
    """Our own emulator for one phase, in memory and stopped after it; nothing when AWS_ENDPOINT_URL_* name endpoints.

    A fresh one per phase: DynamoDB Local serves every request from one SQLite thread, and its work per request grows
    with what earlier phases (or runs: the launcher keeps tables on disk unless told otherwise) left in its database,
    stream records above all, so a shared one would make each phase's figures depend on what ran before it.
    """
    if external:
        yield
        return
    if any(port_open(port) for port in (dynamodb_port, sqs_port)):
        raise RuntimeError(f"ports {dynamodb_port}/{sqs_port} are taken: another benchmark is running?")
    cfg = emulator.EmulatorConfig(
        run_dir=run_dir,
        cache_dir=emulator.default_cache_dir(),
        dynamodb_port=dynamodb_port,
        sqs_port=sqs_port,
        in_memory=True,
    )
    emulator.start(cfg, report=report)
    os.environ.update(cfg.environment())
    try:
        yield
    finally:
        emulator.stop(cfg, report=report)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(port_open(port) for port in (dynamodb_port, sqs_port)):
            time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_all(processes: list[PipelineProcess]) -> None:
    for process in processes:
        process.stop()


# -- measuring aggregates --------------------------------------------------------------------------------------------


def read_aggregates(settings: AwsSettings, org_id: str, days: set[str]) -> dict[tuple[str, str], Totals]:
    ddb = settings.dynamodb()
    found: dict[tuple[str, str], Totals] = {}
    for day in sorted(days):
        kwargs: dict[str, Any] = {
            "TableName": settings.names.aggregates_table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": day_partition(org_id, day)}},
            "ConsistentRead": True,
        }
        while True:
            page = ddb.query(**kwargs)
            for item in page.get("Items", []):
                found[(day, item["model_label"]["S"])] = Totals.from_item(item)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return found


def wait_for_aggregates(
    settings: AwsSettings, org_id: str, accepted: list[PlannedEvent], timeout_s: float, processes: list[PipelineProcess]
) -> float | None:
    """Seconds until the aggregates count every accepted event; None if that did not happen in time."""
    days = {e.day for e in accepted}
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        counted = sum(t.request_count for t in read_aggregates(settings, org_id, days).values())
        if counted >= len(accepted):
            return time.monotonic() - started
        dead = [p.name for p in processes if not p.alive()]
        if dead:
            log(f"processes exited early: {dead}")
            return None
        time.sleep(0.25)
    return None


def check_totals(settings: AwsSettings, org_id: str, accepted: list[PlannedEvent]) -> tuple[bool, str]:
    expected = {key: billed(t) for key, t in expected_totals(accepted).items()}
    aggregates = read_aggregates(settings, org_id, {e.day for e in accepted})
    actual = {key: billed(t) for key, t in aggregates.items()}
    if actual == expected:
        total = Totals()
        for t in aggregates.values():
            total.merge(t)
        return True, f"{len(actual)} aggregates, {total.request_count:,} events, {total.cost_usd_micros:,} micro-USD"
    wrong = sorted(set(expected) | set(actual))
    lines = [f"{k}: expected {expected.get(k)} got {actual.get(k)}" for k in wrong if expected.get(k) != actual.get(k)]
    return False, "; ".join(lines)


# -- the phases ------------------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    load: LoadResult
    events_planned: int
    complete_after_s: float | None = None
    correct: bool | None = None
    correctness_detail: str = ""
    lag_p50_s: float | None = None
    lag_p99_s: float | None = None
    lag_count: int = 0
    # The part of the lag after the worker wrote the usage item: stream and aggregator.
    stream_lag_p50_s: float | None = None
    stream_lag_p99_s: float | None = None
    # Items written (what DynamoDB bills), and the requests that carried them.
    ddb_writes: dict[str, int] = field(default_factory=dict)
    ddb_requests: dict[str, int] = field(default_factory=dict)
    sqs_requests: dict[str, int] = field(default_factory=dict)
    missing_counters: list[str] = field(default_factory=list)
    rate_per_s: float | None = None  # the pace of a paced run

    @property
    def accepted(self) -> int:
        return len(self.load.accepted)

    @property
    def through_per_s(self) -> float | None:
        """Accepted events over the time from the first post until the aggregates counted them all."""
        if self.complete_after_s is None or self.load.wall_s <= 0:
            return None
        return self.accepted / (self.load.wall_s + self.complete_after_s)


def _token(base_url: str, tenant: Tenant) -> str:
    response = httpx.post(
        f"{base_url}/auth/token",
        data={"grant_type": "client_credentials", "client_id": tenant.client_id, "client_secret": tenant.app_secret},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _post(
    base_url: str,
    tenant: Tenant,
    headers: dict[str, str],
    plan: list[PlannedRequest],
    args: Any,
    rate_per_s: float | None = None,
) -> LoadResult:
    pace = f", paced at {rate_per_s:,.0f} events/s" if rate_per_s else ", as fast as answered"
    log(
        f"posting {sum(len(r.events) for r in plan):,} events in {len(plan):,} requests, "
        f"concurrency {args.concurrency}{pace}"
    )
    result = asyncio.run(
        run_load(base_url, tenant.usage_path, headers, plan, args.concurrency, args.max_post_s, rate_per_s)
    )
    log(
        f"posted in {result.wall_s:.2f}s: {len(result.accepted):,} accepted, {result.rejected_events:,} not, "
        f"statuses {dict(result.statuses)}"
    )
    return result


def run_pipeline(
    name: str,
    names: ResourceNames,
    plan: list[PlannedRequest],
    args: Any,
    log_dir: Path,
    rate_per_s: float | None = None,
) -> PhaseResult:
    """Fresh API, worker and aggregator processes (so their counters cover this phase only) and a fresh tenant."""
    log(f"== {name}")
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = AwsSettings.from_env({**os.environ, "CK_RESOURCE_PREFIX": names.prefix})
    tenant = provision(settings)
    stats = {name: log_dir / f"{name}-stats.json" for name in ("api", "worker", "aggregator")}
    port = free_port()
    env = child_environment(
        {
            "CK_RESOURCE_PREFIX": names.prefix,
            "CK_JWT_SECRET": secrets.token_urlsafe(48),
            "CK_API_PORT": str(port),
            "CK_API_STATS_FILE": str(stats["api"]),
            "CK_WORKER_STATS_FILE": str(stats["worker"]),
            "CK_AGGREGATOR_STATS_FILE": str(stats["aggregator"]),
            **dict(kv.split("=", 1) for kv in args.env),
        }
    )
    base_url = f"http://127.0.0.1:{port}"
    processes = [PipelineProcess(n, env, log_dir / f"{n}.log") for n in ("api", "worker", "aggregator")]
    try:
        for process in processes:
            process.start()
        wait_for_http(f"{base_url}/health", 60, processes[0])
        headers = {"Authorization": f"Bearer {_token(base_url, tenant)}"}
        load = _post(base_url, tenant, headers, plan, args, rate_per_s)
        result = PhaseResult(name, load, sum(len(r.events) for r in plan), rate_per_s=rate_per_s)
        log("waiting for the aggregates to count every accepted event ...")
        result.complete_after_s = wait_for_aggregates(
            settings, tenant.org_id, load.accepted, args.drain_timeout_s, processes
        )
        if result.complete_after_s is None:
            log(f"NOT complete {args.drain_timeout_s:g}s after the last response: gave up waiting")
        else:
            log(f"complete {result.complete_after_s:.2f}s after the last response")
    finally:
        _stop_all(processes)
    result.correct, result.correctness_detail = check_totals(settings, tenant.org_id, load.accepted)
    api, worker, aggregator = (_counters(stats[n], result) for n in ("api", "worker", "aggregator"))
    no_lag = {"count": 0, "p50_ms": None, "p99_ms": None}
    lag: dict[str, Any] = aggregator.get("end_to_end_lag_ms") or no_lag  # type: ignore[assignment]
    result.lag_count = int(lag["count"])
    result.lag_p50_s = None if lag["p50_ms"] is None else lag["p50_ms"] / 1000
    result.lag_p99_s = None if lag["p99_ms"] is None else lag["p99_ms"] / 1000
    stream_lag: dict[str, Any] = aggregator.get("stream_lag_ms") or no_lag  # type: ignore[assignment]
    result.stream_lag_p50_s = None if stream_lag["p50_ms"] is None else stream_lag["p50_ms"] / 1000
    result.stream_lag_p99_s = None if stream_lag["p99_ms"] is None else stream_lag["p99_ms"] / 1000
    result.ddb_writes = {
        "usage item inserts (worker)": _int(worker.get("events_written")) + _int(worker.get("duplicates")),
        "aggregate UpdateItem (aggregator)": _int(aggregator.get("aggregate_writes")),
        "checkpoint UpdateItem (aggregator)": _int(aggregator.get("checkpoint_writes")),
    }
    result.sqs_requests = {
        "SendMessageBatch (api)": _int(api.get("sqs_requests")) + _int(api.get("failures")),
        "ReceiveMessage (worker)": _int(worker.get("receives")),
        "DeleteMessageBatch (worker)": _int(worker.get("delete_batches")),
        "ChangeMessageVisibilityBatch, retry back-off (worker)": _int(worker.get("visibility_changes")),
        "ChangeMessageVisibilityBatch, heartbeat (worker)": _int(worker.get("visibility_extensions")),
        "SendMessage to DLQ (worker)": _int(worker.get("dead_letter_sends")),
    }
    result.ddb_requests = {
        "BatchExecuteStatement, usage inserts (worker)": _int(worker.get("usage_write_requests")),
        "UpdateItem, guarded aggregate adds (aggregator)": _int(aggregator.get("aggregate_writes")),
        "UpdateItem, checkpoints (aggregator)": _int(aggregator.get("checkpoint_writes")),
    }
    log(f"aggregator: {aggregator}")
    log(f"worker: {worker}")
    log(f"api: {api}")
    return result


def run_baseline(name: str, names: ResourceNames, plan: list[PlannedRequest], args: Any, log_dir: Path) -> PhaseResult:
    log(f"== {name}")
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = AwsSettings.from_env({**os.environ, "CK_RESOURCE_PREFIX": names.prefix})
    tenant = provision(settings)
    stats_file = log_dir / "baseline-stats.json"
    port = free_port()
    env = child_environment(
        {
            "CK_RESOURCE_PREFIX": names.prefix,
            "CK_API_PORT": str(port),
            "CK_BASELINE_STATS_FILE": str(stats_file),
        }
    )
    base_url = f"http://127.0.0.1:{port}"
    server = PipelineProcess("baseline", env, log_dir / "baseline.log", module="bench.sync_baseline")
    try:
        server.start()
        wait_for_http(f"{base_url}/health", 60, server)
        load = _post(base_url, tenant, {}, plan, args)
    finally:
        server.stop()
    result = PhaseResult(name, load, sum(len(r.events) for r in plan), complete_after_s=0.0)
    result.correct, result.correctness_detail = check_totals(settings, tenant.org_id, load.accepted)
    stats = _counters(stats_file, result)
    result.ddb_writes = {
        "usage PutItem": _int(stats.get("put_items")),
        "aggregate UpdateItem": _int(stats.get("update_items")),
    }
    result.ddb_requests = dict(result.ddb_writes)
    result.lag_p50_s = result.lag_p99_s = 0.0
    result.lag_count = len(load.accepted)
    return result


def _counters(path: Path, result: PhaseResult) -> dict[str, object]:
    """A process's counters; none (and a note on the result) if it did not write them, e.g. killed at the timeout."""
    try:
        return read_stats(path)
    except FileNotFoundError:
        log(f"{path.name} missing: that process did not stop gracefully; its counters are shown as 0")
        result.missing_counters.append(path.name)
        return {}


def _int(value: object) -> int:
    if value is None:
        return 0
    assert isinstance(value, int), value
    return value


# -- report ----------------------------------------------------------------------------------------------------------


def describe(result: PhaseResult) -> str:
    load = result.load
    n = result.accepted
    rows = [
        ["events planned / accepted", f"{result.events_planned:,} / {n:,}"],
        ["HTTP requests", f"{load.requests:,} ({dict(load.statuses)})"],
        ["posting wall time", f"{load.wall_s:.2f} s" + (" (stopped by deadline)" if load.stopped_by_deadline else "")],
        ["accepted events/s", fmt(load.accepted_per_s, 0)],
        [
            "ingest latency p50 / p99",
            f"{ms(percentile(load.latencies_s, 0.5))} / {ms(percentile(load.latencies_s, 0.99))}",
        ],
        [
            "end-to-end lag p50 / p99",
            f"{ms(result.lag_p50_s)} / {ms(result.lag_p99_s)} over {result.lag_count:,} events",
        ],
        [
            "  of which worker write -> aggregate",
            f"{ms(result.stream_lag_p50_s)} / {ms(result.stream_lag_p99_s)}",
        ],
        [
            "aggregates complete after posting",
            "not within the drain timeout" if result.complete_after_s is None else f"{result.complete_after_s:.2f} s",
        ],
        ["events/s through to the aggregates", fmt(result.through_per_s, 0)],
    ]
    total_writes = sum(result.ddb_writes.values())
    rows.append(["DynamoDB writes / event", f"{fmt(per_event(total_writes, n), 4)} ({total_writes:,})"])
    rows += [[f"  {k}", f"{fmt(per_event(v, n), 4)} ({v:,})"] for k, v in result.ddb_writes.items()]
    total_requests = sum(result.ddb_requests.values())
    rows.append(["DynamoDB write requests / event", f"{fmt(per_event(total_requests, n), 4)} ({total_requests:,})"])
    rows += [[f"  {k}", f"{fmt(per_event(v, n), 4)} ({v:,})"] for k, v in result.ddb_requests.items()]
    if result.sqs_requests:
        total_sqs = sum(result.sqs_requests.values())
        rows.append(["SQS requests / event", f"{fmt(per_event(total_sqs, n), 4)} ({total_sqs:,})"])
        rows += [[f"  {k}", f"{fmt(per_event(v, n), 4)} ({v:,})"] for k, v in result.sqs_requests.items()]
    rows.append(["aggregates = sum accepted", f"{verdict(result.correct)}: {result.correctness_detail}"])
    if result.missing_counters:
        rows.append(["WARNING counters missing", ", ".join(result.missing_counters)])
    return f"== {result.name}\n" + table(["figure", "value"], rows)


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def comparison(pipeline: PhaseResult, paced: PhaseResult | None, baseline: PhaseResult | None) -> tuple[str, bool]:
    n = pipeline.accepted
    speedup = pipeline.load.accepted_per_s / baseline.load.accepted_per_s if baseline and baseline.accepted else None
    sqs = per_event(sum(pipeline.sqs_requests.values()), n)
    agg = per_event(pipeline.ddb_writes.get("aggregate UpdateItem (aggregator)", 0), n)

    def lag_check(result: PhaseResult, label: str) -> tuple[str, str, str, bool | None]:
        lag = result.lag_p99_s
        return (label, ms(lag), f"< {TARGET_LAG_P99_S:g} s", None if lag is None else lag < TARGET_LAG_P99_S)

    checks: list[tuple[str, str, str, bool | None]] = [
        (
            "events/s vs baseline",
            "n/a" if speedup is None else f"{speedup:.1f}x",
            f">= {TARGET_SPEEDUP:g}x",
            _at_least(speedup, TARGET_SPEEDUP),
        ),
        lag_check(pipeline, "end-to-end lag p99, saturated"),
    ]
    if paced is not None:
        checks.append(lag_check(paced, f"end-to-end lag p99, paced at {paced.rate_per_s or 0:,.0f}/s"))
    checks += [
        ("SQS requests / event", fmt(sqs, 4), f"<= {TARGET_SQS_PER_EVENT}", _at_most(sqs, TARGET_SQS_PER_EVENT)),
        (
            "aggregate writes / event",
            fmt(agg, 4),
            f"<= {TARGET_AGGREGATE_WRITES_PER_EVENT}",
            _at_most(agg, TARGET_AGGREGATE_WRITES_PER_EVENT),
        ),
        ("pipeline aggregates exact", verdict(pipeline.correct), "PASS", pipeline.correct),
    ]
    if paced is not None:
        checks.append(("paced aggregates exact", verdict(paced.correct), "PASS", paced.correct))
    if baseline is not None:
        checks.append(("baseline aggregates exact", verdict(baseline.correct), "PASS", baseline.correct))

    def both(figure: str, of: Callable[[PhaseResult], str]) -> list[str]:
        return [figure, of(pipeline), of(baseline) if baseline else "n/a", "", ""]

    rows = [
        both("accepted events/s", lambda r: fmt(r.load.accepted_per_s, 0)),
        both("events/s through to the aggregates", lambda r: fmt(r.through_per_s, 0)),
        both("ingest latency p99", lambda r: ms(percentile(r.load.latencies_s, 0.99))),
        both("DynamoDB writes / event", lambda r: fmt(per_event(sum(r.ddb_writes.values()), r.accepted), 4)),
        both("DynamoDB write requests / event", lambda r: fmt(per_event(sum(r.ddb_requests.values()), r.accepted), 4)),
    ]
    rows += [[name, value, "", target, verdict(ok)] for name, value, target, ok in checks]
    passed = all(ok is True for _, _, _, ok in checks)
    return "== comparison\n" + table(["figure", "pipeline", "baseline", "target", "result"], rows), passed


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="events posted to the pipeline")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--batch-size", type=int, default=100, help="events per /usage/batch request (1-100)")
    parser.add_argument("--single-share", type=float, default=0.05, help="share of requests that are single posts")
    parser.add_argument("--baseline-events", type=int, default=None, help="events posted to the baseline")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--warmup-events",
        type=int,
        default=3000,
        help="events through a throwaway pipeline (and a tenth to a throwaway baseline) before measuring: a fresh "
        "DynamoDB Local runs several times slower until its JIT has warmed up (0: no warm-up)",
    )
    parser.add_argument(
        "--paced-events",
        type=int,
        default=3000,
        help="events of a second pipeline run, paced below its capacity, for the lag at a sustainable load (0: none)",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=None,
        help="events/s of the paced run (default: half the rate the warm-up got through to the aggregates)",
    )
    parser.add_argument("--max-post-s", type=float, default=300.0, help="the posting phase stops after this")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0, help="wait at most this for the aggregates")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra setting for the pipeline processes"
    )
    args = parser.parse_args(argv)
    if args.baseline_events is None:
        args.baseline_events = min(args.events, 10_000)
    if any("=" not in kv for kv in args.env):
        parser.error("--env takes KEY=VALUE")
    return args


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process and the emulator.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    prefix = f"ckbench-{secrets.token_hex(3)}-"
    log_dir = RUN_DIR / "logs" / prefix.rstrip("-")
    log_dir.mkdir(parents=True, exist_ok=True)
    log(f"prefix {prefix}, logs in {log_dir}, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    plan = plan_requests(args.events, args.batch_size, args.single_share, args.seed)
    baseline_plan: list[PlannedRequest] = []
    counted = 0
    for planned in plan:
        if counted + len(planned.events) > args.baseline_events:
            break
        baseline_plan.append(planned)
        counted += len(planned.events)
    baseline: PhaseResult | None = None
    paced: PhaseResult | None = None
    external = any(os.environ.get(v) for v in ENDPOINT_VARIABLES.values())
    if external:
        log(f"using endpoints from the environment: {os.environ.get('AWS_ENDPOINT_URL_DYNAMODB')}")

    def warm_up(seed_offset: int) -> float | None:
        if args.warmup_events <= 0:
            return None
        warm_plan = plan_requests(args.warmup_events, args.batch_size, args.single_share, args.seed + seed_offset)
        names = ResourceNames(f"{prefix}warm{seed_offset}-")
        warm = run_pipeline("warm-up, not measured", names, warm_plan, args, log_dir / f"warm{seed_offset}")
        log(f"warm-up: {warm.through_per_s or 0:,.0f} events/s through, aggregates {verdict(warm.correct)}")
        return warm.through_per_s

    if args.paced_events > 0:
        with fresh_emulator(external):
            rate = args.paced_rate or (warm_up(2) or 0.0) / 2
            if rate > 0:
                paced_plan = plan_requests(args.paced_events, args.batch_size, args.single_share, args.seed + 1)
                paced = run_pipeline(
                    f"pipeline, paced at {rate:,.0f} events/s",
                    # A queue of its own: long polls that a stopped worker abandoned may still take (and hide for
                    # the visibility timeout) the first messages sent to its queue.
                    ResourceNames(prefix + "paced-"),
                    paced_plan,
                    args,
                    log_dir / "paced",
                    rate_per_s=rate,
                )
                print(describe(paced), flush=True)
            else:
                log("no paced run: give --paced-rate, or a warm-up to derive it from")
    if not args.skip_baseline:
        with fresh_emulator(external):
            if args.warmup_events > 0:
                warm_plan = plan_requests(args.warmup_events // 10, args.batch_size, args.single_share, args.seed + 3)
                warm = run_baseline(
                    "baseline warm-up, not measured",
                    ResourceNames(prefix + "basewarm-"),
                    warm_plan,
                    args,
                    log_dir / "basewarm",
                )
                log(f"baseline warm-up: {warm.load.accepted_per_s:,.0f} events/s, aggregates {verdict(warm.correct)}")
            baseline = run_baseline(
                "synchronous baseline", ResourceNames(prefix + "base-"), baseline_plan, args, log_dir / "baseline"
            )
            print(describe(baseline), flush=True)
    with fresh_emulator(external):
        warm_up(4)
        pipeline = run_pipeline("pipeline, saturated", ResourceNames(prefix), plan, args, log_dir / "saturated")
        print(describe(pipeline), flush=True)
    report, passed = comparison(pipeline, paced, baseline)
    print(report, flush=True)
    log(f"load average {os.getloadavg()[0]:.2f}; {'all targets met' if passed else 'some targets missed'}")
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; processes and emulator stopped", file=sys.stderr)
        sys.exit(130)
