"""Client benchmark: the API's latency for paced single posts, costkeeper_client's throughput, and the pipeline's
sustained end-to-end rate against the emulator's own ceiling. Prints figures with PASS/FAIL; not a test.

    python -m bench.client_benchmark [--paced-rate R] [--paced-clients C] [--client-events N] [--threads T]
                                     [--ceiling-items M] [--e2e-events E]

Self-contained like bench/ingest_benchmark.py: it starts its own emulator (DynamoDB Local on 18800, moto SQS on 18801)
for each part, unless AWS_ENDPOINT_URL_* name endpoints to use; creates its resources under a fresh prefix; provisions
its tenant through the catalog store; runs the API, worker and aggregator as subprocesses; and stops everything it
started on exit, Ctrl-C and SIGTERM included.

1. Paced single posts: C clients post single events (POST .../usage) at R events/s in all, over keep-alive
   connections, with the whole pipeline running; per-request latency p50 and p99. Target: p50 <= 20 ms. Then, as a
   diagnostic without a target, the same with the worker and aggregator stopped (they share the cores).
2. The client from T threads in one process: each thread records events through one CostKeeperClient as fast as
   record() returns; accepted events/s is the events the API answered 202 for, over the time from the first record
   until close() returned (everything delivered). Target: >= 5,000/s.
3. Ceiling and pipeline, each on a fresh emulator warmed up by a throwaway run (a fresh DynamoDB Local runs several
   times slower until its JIT has warmed up):
   a. the emulator's ceiling: conditional inserts/s of usage items (built by the worker's own price_event) into a
      fresh stream-enabled usage table, with the worker's write primitive (PartiQL INSERT, 25 per
      BatchExecuteStatement, 16 concurrent requests) and with conditional PutItem (16 concurrent); the better of
      the two is the ceiling;
   b. the pipeline's sustained rate: E events recorded through the client, from the first record until the
      aggregates count all of them. Target: >= 0.8 of the ceiling.
   Both parts end with a correctness check: the aggregates equal the exact sum of what was accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import ingest_benchmark
from bench.ingest_benchmark import APP_ID, Tenant, check_totals, free_port, provision, read_aggregates
from bench.load import run_load
from bench.report import fmt, ms, percentile, table, verdict
from bench.workload import LABELS, PlannedEvent, plan_requests
from catalog.model import Org
from catalog.store import CatalogStore
from catalog.token_counts import TokenCounts
from costkeeper_client import ClientOptions, CostKeeperClient
from infra.processes import PipelineProcess, child_environment, wait_for_http
from runtime.aws import ENDPOINT_VARIABLES, AwsSettings, open_async_clients
from workers.insert import MAX_STATEMENTS_PER_BATCH, BatchInserter
from workers.message import UsageEvent
from workers.pricing import Rejected, price_event

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".run" / "client-bench"
# Apart from the test ports (18000/19324, 28000/29324) and the ingest benchmark's (18700/18701).
DYNAMODB_PORT = 18800
SQS_PORT = 18801

TARGET_PACED_P50_S = 0.020
TARGET_CLIENT_EVENTS_PER_S = 5_000.0
TARGET_CEILING_FRACTION = 0.8
WORKER_WRITE_CONCURRENCY = 16  # workers/settings.py's default, which the pipeline runs with


def log(message: str) -> None:
    print(f"[client-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- set-up ----------------------------------------------------------------------------------------------------------


@contextmanager
def fresh_emulator(external: bool) -> Iterator[None]:
    """An in-memory emulator of our own for one part, on this benchmark's ports (the ingest benchmark's helper)."""
    with ingest_benchmark.fresh_emulator(external, RUN_DIR, DYNAMODB_PORT, SQS_PORT, log):
        yield


def settings_for(prefix: str) -> AwsSettings:
    return AwsSettings.from_env({**os.environ, "CK_RESOURCE_PREFIX": prefix})


@dataclass
class RunningPipeline:
    settings: AwsSettings
    tenant: Tenant
    base_url: str
    processes: list[PipelineProcess]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def check_alive(self) -> None:
        dead = [p.name for p in self.processes if not p.alive()]
        if dead:
            raise RuntimeError(f"pipeline processes exited: {dead}")


@contextmanager
def pipeline(prefix: str, log_dir: Path) -> Iterator[RunningPipeline]:
    """Resources and a tenant under the prefix; API, worker and aggregator as subprocesses until the block ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_for(prefix)
    tenant = provision(settings)
    port = free_port()
    env = child_environment(
        {"CK_RESOURCE_PREFIX": prefix, "CK_JWT_SECRET": secrets.token_urlsafe(48), "CK_API_PORT": str(port)}
    )
    processes = [PipelineProcess(n, env, log_dir / f"{n}.log") for n in ("api", "worker", "aggregator")]
    running = RunningPipeline(settings, tenant, f"http://127.0.0.1:{port}", processes)
    try:
        for process in processes:
            process.start()
        wait_for_http(f"{running.base_url}/health", 60, processes[0])
        yield running
    finally:
        running.stop()


# -- what is recorded ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    request_id: str
    label: str
    counts: dict[str, int]
    timestamp: datetime

    def as_planned_event(self) -> PlannedEvent:
        return PlannedEvent(label=self.label, day=self.timestamp.date().isoformat(), tokens=TokenCounts(**self.counts))


def plan_events(count: int, seed: int) -> list[Planned]:
    """Events with random counts, made before the clock starts so that recording measures the client only."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    planned = []
    for _ in range(count):
        label = rng.choice(LABELS)
        cached = label == "premium" and rng.random() < 0.3
        counts = {
            "input_tokens": rng.randint(50, 8_000),
            "output_tokens": rng.randint(10, 2_000),
            "cache_read_tokens": rng.randint(0, 20_000) if cached else 0,
            "cache_write_tokens": rng.randint(0, 2_000) if cached else 0,
        }
        planned.append(Planned(str(uuid.UUID(int=rng.getrandbits(128), version=4)), label, counts, now))
    return planned


@dataclass
class ClientRun:
    events: int
    threads: int
    recorded_s: float = 0.0  # until the last record() returned
    delivered_s: float = 0.0  # until close() returned: everything delivered or reported
    delivered: int = 0
    failed: int = 0
    failure_codes: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    retries: int = 0
    started_at: float = 0.0

    @property
    def accepted_per_s(self) -> float:
        return self.delivered / self.delivered_s if self.delivered_s > 0 else 0.0


def run_client(running: RunningPipeline, planned: list[Planned], threads: int, in_flight: int) -> ClientRun:
    """Record the planned events through one CostKeeperClient from `threads` threads, then close it."""
    options = ClientOptions(max_in_flight=in_flight, flush_at_exit=False, close_timeout_s=300)
    keeper = CostKeeperClient(running.base_url, running.tenant.org_id, APP_ID, running.tenant.app_secret, options)
    keeper.choose_model()  # the token is fetched before the clock starts, as in a running application
    shares = [planned[i::threads] for i in range(threads)]
    start = threading.Barrier(threads + 1)

    def record(share: list[Planned]) -> None:
        start.wait()
        for p in share:
            keeper.record(
                p.label,
                input_tokens=p.counts["input_tokens"],
                output_tokens=p.counts["output_tokens"],
                cache_read_tokens=p.counts["cache_read_tokens"],
                cache_write_tokens=p.counts["cache_write_tokens"],
                timestamp=p.timestamp,
                request_id=p.request_id,
            )

    workers = [threading.Thread(target=record, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    run = ClientRun(len(planned), threads)
    start.wait()
    run.started_at = time.monotonic()
    for worker in workers:
        worker.join()
    run.recorded_s = time.monotonic() - run.started_at
    keeper.close()
    run.delivered_s = time.monotonic() - run.started_at
    stats = keeper.stats()
    run.delivered, run.failed, run.batches, run.retries = (
        stats.delivered,
        stats.failed,
        stats.batches_posted,
        stats.retries,
    )
    for failure in keeper.failures():
        run.failure_codes[failure.code] = run.failure_codes.get(failure.code, 0) + 1
    return run


def accepted_events(planned: list[Planned], run: ClientRun) -> list[PlannedEvent]:
    if run.failed:
        raise RuntimeError(f"{run.failed} events not delivered: {run.failure_codes}")
    return [p.as_planned_event() for p in planned]


def wait_for_aggregates(running: RunningPipeline, org_id: str, events: list[PlannedEvent], timeout_s: float) -> bool:
    days = {e.day for e in events}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counted = sum(t.request_count for t in read_aggregates(running.settings, org_id, days).values())
        if counted >= len(events):
            return True
        running.check_alive()
        time.sleep(0.25)
    return False


# -- part 1 and 2: the API's latency and the client's throughput -----------------------------------------------------


@dataclass
class LatencyRun:
    rate_per_s: float
    clients: int
    requests: int
    statuses: dict[str, int]
    p50_s: float | None
    p99_s: float | None
    wall_s: float


def paced_single_posts(running: RunningPipeline, rate_per_s: float, clients: int, duration_s: float) -> LatencyRun:
    token = _token(running)
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/v1/orgs/{running.tenant.org_id}/apps/{APP_ID}/usage"
    warm = plan_requests(int(rate_per_s * 2), 1, 1.0, seed=11)
    asyncio.run(run_load(running.base_url, path, headers, warm, clients, 60.0, rate_per_s))
    plan = plan_requests(int(rate_per_s * duration_s), 1, 1.0, seed=12)
    log(f"posting {len(plan):,} single events at {rate_per_s:g}/s from {clients} clients")
    result = asyncio.run(run_load(running.base_url, path, headers, plan, clients, duration_s * 3, rate_per_s))
    return LatencyRun(
        rate_per_s,
        clients,
        result.requests,
        dict(result.statuses),
        percentile(result.latencies_s, 0.5),
        percentile(result.latencies_s, 0.99),
        result.wall_s,
    )


def _token(running: RunningPipeline) -> str:
    response = httpx.post(
        f"{running.base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": running.tenant.client_id,
            "client_secret": running.tenant.app_secret,
        },
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


# -- part 3: the emulator's ceiling and the pipeline's sustained rate ------------------------------------------------


@dataclass
class CeilingRun:
    method: str
    items: int
    wall_s: float
    requests: int

    @property
    def per_s(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else 0.0


def usage_items(settings: AwsSettings, org_id: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Usage items as the worker writes them: price_event on the benchmark org, then to_item."""
    org = asyncio.run(_org(settings, org_id))
    expires_at = int(time.time()) + 400 * 86_400
    items = []
    for p in plan_events(count, seed):
        event = UsageEvent.model_validate(
            {
                "org_id": org_id,
                "app_id": APP_ID,
                "request_id": p.request_id,
                "model_label": p.label,
                "timestamp": p.timestamp,
                "accepted_at": datetime.now(UTC),
                **p.counts,
            }
        )
        record = price_event(org, None, event, int(time.time() * 1000))
        assert not isinstance(record, Rejected), record
        items.append(record.to_item(expires_at))
    return items


async def _org(settings: AwsSettings, org_id: str) -> Org:
    async with open_async_clients(settings) as clients:
        org = await CatalogStore(clients.dynamodb, settings.names.config_table, 0.0).get_org(org_id)
        assert org is not None
        return org


def insert_ceiling(settings: AwsSettings, items: list[dict[str, Any]], method: str) -> CeilingRun:
    """Insert every item once, conditionally on its key being absent, with WORKER_WRITE_CONCURRENCY requests."""

    async def run() -> CeilingRun:
        async with open_async_clients(settings) as clients:
            ddb = clients.dynamodb
            table = settings.names.usage_table
            inserter = BatchInserter(ddb, table)
            chunk = MAX_STATEMENTS_PER_BATCH if method == "batch" else 1
            pending = iter([items[i : i + chunk] for i in range(0, len(items), chunk)])
            requests = 0

            async def writer() -> None:
                nonlocal requests
                for group in pending:
                    if method == "batch":
                        inserted = await inserter.insert(group)
                        assert all(inserted), "a fresh table already held one of these keys"
                    else:
                        await ddb.put_item(
                            TableName=table, Item=group[0], ConditionExpression="attribute_not_exists(pk)"
                        )
                    requests += 1

            started = time.monotonic()
            await asyncio.gather(*(writer() for _ in range(WORKER_WRITE_CONCURRENCY)))
            return CeilingRun(method, len(items), time.monotonic() - started, requests)

    return asyncio.run(run())


def measure_ceiling(prefix: str, items_per_method: int) -> list[CeilingRun]:
    """Each method into a fresh usage table of its own, after a throwaway warm-up."""
    # provision() creates the resources under the prefix: a fresh stream-enabled usage table each time.
    warm = settings_for(prefix + "ceilwarm-")
    warm_tenant = provision(warm)
    insert_ceiling(warm, usage_items(warm, warm_tenant.org_id, 3_000, seed=30), "batch")
    runs = []
    for method in ("batch", "put"):
        settings = settings_for(f"{prefix}ceil{method}-")
        tenant = provision(settings)
        items = usage_items(settings, tenant.org_id, items_per_method, seed=31)
        run = insert_ceiling(settings, items, method)
        log(f"ceiling, {method}: {run.items:,} items in {run.wall_s:.2f}s, {run.per_s:,.0f}/s")
        runs.append(run)
    return runs


@dataclass
class EndToEndRun:
    client: ClientRun
    complete: bool
    through_s: float  # from the first record until the aggregates counted every event
    correct: bool
    detail: str

    @property
    def per_s(self) -> float:
        return self.client.events / self.through_s if self.complete and self.through_s > 0 else 0.0


def end_to_end(
    prefix: str, log_dir: Path, events: int, threads: int, in_flight: int, drain_timeout_s: float
) -> EndToEndRun:
    planned = plan_events(events, seed=40)
    with pipeline(prefix, log_dir) as running:
        run = run_client(running, planned, threads, in_flight)
        accepted = accepted_events(planned, run)
        log(
            f"recorded {events:,} in {run.recorded_s:.2f}s, delivered in {run.delivered_s:.2f}s; waiting for aggregates"
        )
        complete = wait_for_aggregates(running, running.tenant.org_id, accepted, drain_timeout_s)
        through_s = time.monotonic() - run.started_at
    correct, detail = check_totals(running.settings, running.tenant.org_id, accepted)
    return EndToEndRun(run, complete, through_s, correct, detail)


# -- main ------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paced-rate", type=float, default=200.0, help="single posts per second, all clients")
    parser.add_argument("--paced-clients", type=int, default=16)
    parser.add_argument("--paced-s", type=float, default=15.0, help="measured seconds of paced posting")
    parser.add_argument("--threads", type=int, default=8, help="threads recording through one client")
    parser.add_argument("--in-flight", type=int, default=4, help="the client's max_in_flight")
    parser.add_argument("--client-events", type=int, default=40_000, help="events of part 2")
    parser.add_argument("--ceiling-items", type=int, default=10_000, help="items inserted per ceiling method")
    parser.add_argument("--e2e-events", type=int, default=50_000, help="events of part 3b")
    parser.add_argument("--warmup-events", type=int, default=3_000, help="events of the throwaway pipeline run")
    parser.add_argument("--drain-timeout-s", type=float, default=900.0)
    parser.add_argument("--skip", action="append", default=[], choices=["latency", "client", "ceiling", "e2e"])
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    prefix = f"ckcbench-{secrets.token_hex(3)}-"
    log_dir = RUN_DIR / "logs" / prefix.rstrip("-")
    log(f"prefix {prefix}, logs in {log_dir}, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    external = any(os.environ.get(v) for v in ENDPOINT_VARIABLES.values())
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    latency: LatencyRun | None = None
    api_alone: LatencyRun | None = None
    client: ClientRun | None = None
    ceiling: list[CeilingRun] = []
    e2e: EndToEndRun | None = None

    if "latency" not in args.skip or "client" not in args.skip:
        with fresh_emulator(external), pipeline(prefix + "api-", log_dir / "api") as running:
            if "latency" not in args.skip:
                log("== 1. paced single posts")
                latency = paced_single_posts(running, args.paced_rate, args.paced_clients, args.paced_s)
                log(f"p50 {ms(latency.p50_s)}, p99 {ms(latency.p99_s)}, statuses {latency.statuses}")
            if "client" not in args.skip:
                log(f"== 2. the client from {args.threads} threads, {args.client_events:,} events")
                run_client(running, plan_events(2_000, seed=20), args.threads, args.in_flight)  # warm-up
                client = run_client(running, plan_events(args.client_events, seed=21), args.threads, args.in_flight)
                log(f"{client.accepted_per_s:,.0f} accepted events/s; failures {client.failure_codes}")
            if "latency" not in args.skip:
                # Diagnostic, no target: the same paced load with the worker and aggregator stopped, to show how much
                # of the latency is theirs (and the emulator's) competing for the same cores.
                log("== 1'. paced single posts, API alone")
                for process in running.processes[1:]:
                    process.stop()
                api_alone = paced_single_posts(running, args.paced_rate, args.paced_clients, args.paced_s)
                log(f"p50 {ms(api_alone.p50_s)}, p99 {ms(api_alone.p99_s)}, statuses {api_alone.statuses}")
    if "ceiling" not in args.skip:
        log("== 3a. the emulator's ceiling")
        with fresh_emulator(external):
            ceiling = measure_ceiling(prefix, args.ceiling_items)
    if "e2e" not in args.skip:
        log(f"== 3b. the pipeline's sustained rate over {args.e2e_events:,} events")
        with fresh_emulator(external):
            if args.warmup_events > 0:
                warm = end_to_end(
                    prefix + "e2ewarm-", log_dir / "e2ewarm", args.warmup_events, args.threads, args.in_flight, 300
                )
                log(f"warm-up: {warm.per_s:,.0f} events/s end to end, aggregates {verdict(warm.correct)}")
            e2e = end_to_end(
                prefix + "e2e-", log_dir / "e2e", args.e2e_events, args.threads, args.in_flight, args.drain_timeout_s
            )
            log(f"{e2e.per_s:,.0f} events/s end to end; aggregates {verdict(e2e.correct)}: {e2e.detail}")

    report, passed = summary(latency, api_alone, client, ceiling, e2e)
    print(report, flush=True)
    log(f"load average {os.getloadavg()[0]:.2f}; {'all targets met' if passed else 'some targets missed'}")
    return 0 if passed else 1


def summary(
    latency: LatencyRun | None,
    api_alone: LatencyRun | None,
    client: ClientRun | None,
    ceiling: list[CeilingRun],
    e2e: EndToEndRun | None,
) -> tuple[str, bool]:
    rows: list[list[str]] = []
    checks: list[bool | None] = []

    def check(figure: str, value: str, target: str, ok: bool | None, note: str = "") -> None:
        rows.append([figure, value, target, verdict(ok), note])
        checks.append(ok)

    if latency is not None:
        ok = None if latency.p50_s is None else latency.p50_s <= TARGET_PACED_P50_S
        note = f"p99 {ms(latency.p99_s)}; {latency.requests:,} posts in {latency.wall_s:.1f}s; {latency.statuses}"
        check(
            f"1. single posts at {latency.rate_per_s:g}/s from {latency.clients} clients: p50 latency",
            ms(latency.p50_s),
            f"<= {TARGET_PACED_P50_S * 1000:g} ms",
            ok,
            note,
        )
    if api_alone is not None:
        note = f"p99 {ms(api_alone.p99_s)}; {api_alone.requests:,} posts in {api_alone.wall_s:.1f}s; diagnostic only"
        rows.append(["1'. the same, worker and aggregator stopped: p50", ms(api_alone.p50_s), "", "", note])
    if client is not None:
        note = (
            f"{client.delivered:,} delivered, {client.failed} failed, {client.batches:,} batches, {client.retries} "
            f"retries; record() done after {client.recorded_s:.2f}s, all delivered after {client.delivered_s:.2f}s"
        )
        check(
            f"2. client from {client.threads} threads: accepted events/s",
            fmt(client.accepted_per_s, 0),
            f">= {TARGET_CLIENT_EVENTS_PER_S:,.0f}",
            client.failed == 0 and client.accepted_per_s >= TARGET_CLIENT_EVENTS_PER_S,
            note,
        )
    best = max(ceiling, key=lambda r: r.per_s) if ceiling else None
    for run in ceiling:
        how = "PartiQL INSERT x25 per BatchExecuteStatement" if run.method == "batch" else "PutItem if absent"
        rows.append([f"3a. ceiling: {how}, 16 concurrent", f"{run.per_s:,.0f} items/s", "", "", f"{run.items:,} items"])
    if e2e is not None:
        fraction = e2e.per_s / best.per_s if best is not None and best.per_s > 0 else None
        note = (
            f"{e2e.client.events:,} events; aggregates complete after {e2e.through_s:.1f}s"
            if e2e.complete
            else "aggregates not complete within the drain timeout"
        )
        rows.append(["3b. pipeline end to end: events/s", fmt(e2e.per_s, 0), "", "", note])
        check(
            "3b. end-to-end rate / emulator ceiling",
            "n/a" if fraction is None else f"{fraction:.2f}",
            f">= {TARGET_CEILING_FRACTION}",
            None if fraction is None else fraction >= TARGET_CEILING_FRACTION,
            "" if best is None else f"ceiling {best.per_s:,.0f} items/s ({best.method})",
        )
        check("3b. aggregates equal the exact sum accepted", verdict(e2e.correct), "PASS", e2e.correct, e2e.detail)
    passed = bool(checks) and all(ok is True for ok in checks)
    return "== client benchmark\n" + table(["figure", "value", "target", "result", "notes"], rows), passed


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; processes and emulator stopped", file=sys.stderr)
        sys.exit(130)
