"""`costkeeper`: the operator CLI.

Emulator: start, stop, restart, status. Resources and data: init, seed, clear, reset, list, scan TABLE, setup.
Pipeline: run (everything, in the foreground), test. Operations: queue, watch, redrive, reconcile.

With AWS_ENDPOINT_URL_* set (LocalStack, or real AWS with credentials) every command uses those endpoints and the
embedded emulator is left alone; otherwise the embedded emulator is the target. DynamoDB Local keeps its data in the
run folder across stop and start (CK_DYNAMODB_IN_MEMORY=1 or --in-memory: in memory); moto's SQS is in memory, so
`stop` lets the worker drain the queues first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from aggregator.index_backfill import DEFAULT_SEGMENTS, BackfillStats, backfill_day_index
from aggregator.reconcile import DEFAULT_SETTLE_S, DayResult, Reconciler
from catalog.store import CatalogStore
from infra import emulator, saved_credentials, shutdown
from infra.processes import PipelineProcess, child_environment, wait_for_http
from infra.resource_setup import (
    clear_all,
    ensure_queues,
    ensure_resources,
    existing_tables,
    scan_items,
    tables_exist,
)
from infra.seed import seed
from ingest_api.pipeline_status import PipelineStatus, pipeline_status
from ingest_api.settings import MIN_SECRET_BYTES
from runtime.aws import ENDPOINT_VARIABLES, AwsSettings, open_async_clients
from runtime.resources import table_specs

# LocalStack accepts any credentials and derives its account from the key id; docker-compose.yml's containers use
# these, so the CLI on the host sees the same tables and queues they do.
LOCALSTACK_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def localstack_environment(host: str | None = None) -> dict[str, str]:
    """Endpoint variables for a LocalStack edge (LOCALSTACK_HOST, default localhost:4566), via localstack-client.

    Credentials too, unless the environment names some: without them boto3 stops with NoCredentialsError before it
    ever reaches the emulator.
    """
    from localstack_client.config import get_service_endpoint

    env: dict[str, str] = {}
    for service, variable in ENDPOINT_VARIABLES.items():
        url = get_service_endpoint(service, localstack_host=host)
        if url:
            env[variable] = url
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        env.update(LOCALSTACK_CREDENTIALS)
    return env


def _say(message: str) -> None:
    print(message, flush=True)


def external_endpoints() -> bool:
    """Endpoints set to anything but the embedded emulator (which this process may have pointed itself at)."""
    embedded = emulator.EmulatorConfig.from_env().environment()
    return any(os.environ.get(var) not in (None, "", embedded[var]) for var in ENDPOINT_VARIABLES.values())


def _target_environment() -> dict[str, str]:
    """Point this process (and its children) at the embedded emulator unless endpoints are set already."""
    if external_endpoints():
        return {}
    env = emulator.EmulatorConfig.from_env().environment()
    os.environ.update(env)
    return env


def _settings() -> AwsSettings:
    _target_environment()
    return AwsSettings.from_env()


def _emulator_config(args: argparse.Namespace) -> emulator.EmulatorConfig:
    if getattr(args, "in_memory", False):
        os.environ["CK_DYNAMODB_IN_MEMORY"] = "1"
    return emulator.EmulatorConfig.from_env()


def cmd_start(args: argparse.Namespace) -> int:
    if external_endpoints():
        _say("AWS_ENDPOINT_URL_* are set: using those endpoints, the embedded emulator is not started")
        return 0
    cfg = _emulator_config(args)
    emulator.start(cfg, _say)
    settings = _settings()
    if not cfg.in_memory and tables_exist(settings):
        # The tables came back from disk; moto's queues did not: recreate them so the pipeline can run at once.
        _say("tables kept their data; recreating the queues (moto keeps them in memory)")
        ensure_queues(settings, _say)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    cfg = emulator.EmulatorConfig.from_env()
    if not external_endpoints() and emulator.status(cfg)["moto-sqs"]["answering"]:
        worker_running = shutdown.running_pipeline(cfg.run_dir) is not None
        shutdown.drain_queues(_settings().sqs(), worker_running, args.drain_timeout, _say)
    shutdown.stop_pipeline(cfg.run_dir, _say)
    emulator.stop(cfg, _say)
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    cmd_stop(args)
    return cmd_start(args)


def cmd_status(args: argparse.Namespace) -> int:
    if external_endpoints():
        _say("endpoints: " + ", ".join(f"{k}={os.environ[k]}" for k in ENDPOINT_VARIABLES.values() if k in os.environ))
    status = emulator.status(emulator.EmulatorConfig.from_env())
    healthy = True
    for name, info in status.items():
        state = "answering" if info["answering"] else ("running, not answering" if info["pid"] else "stopped")
        healthy = healthy and bool(info["answering"])
        storage = f"  data {info['storage']}" if info.get("storage") else ""
        _say(f"{name:16} {state:24} port {info['port']}  pid {info['pid'] or '-'}  log {info['log']}{storage}")
    if healthy or external_endpoints():
        _report_resources(_settings())
    return 0 if healthy or external_endpoints() else 1


def _report_resources(settings: AwsSettings) -> None:
    """One line on what `init` made, so that `status` verifies a setup as well as the servers."""
    names = settings.names
    tables = existing_tables(settings)
    wanted = [spec.name for spec in table_specs(names)]
    sqs = settings.sqs()
    queues = 0
    for queue in (names.usage_queue, names.dead_letter_queue):
        with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
            sqs.get_queue_url(QueueName=queue)
            queues += 1
    present = sum(1 for name in wanted if name in tables)
    _say(f"resources        {present} of {len(wanted)} tables, {queues} of 2 queues named {names.prefix}*")


def cmd_init(args: argparse.Namespace) -> int:
    ensure_resources(_settings(), _say)
    return 0


def _credentials_file() -> Path:
    return emulator.default_run_dir() / "credentials.json"


def cmd_seed(args: argparse.Namespace) -> int:
    settings = _settings()
    credentials = asyncio.run(seed(settings, _say))
    fresh = {c.client_id: c.client_secret for c in credentials if c.client_secret}
    for cred in credentials:
        if cred.client_secret:
            _say(f"  client_id     {cred.client_id}\n  client_secret {cred.client_secret}   (shown once)")
        else:
            _say(f"  client_id     {cred.client_id}   (exists; secret unchanged)")
    if fresh:
        # Local development convenience: `costkeeper run` and the examples read it back.
        saved_credentials.save(_credentials_file(), settings.names.prefix, fresh)
        _say(f'  (also saved to {_credentials_file()} under "{settings.names.prefix}" for local scripts)')
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    settings = _settings()
    clear_all(settings, _say)
    # The org and app are gone, and their secrets with them.
    saved_credentials.forget(_credentials_file(), settings.names.prefix)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    cmd_clear(args)
    return cmd_seed(args)


def cmd_setup(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _say("== start")
    cmd_start(args)
    _say("== init")
    cmd_init(args)
    _say("== seed")
    cmd_seed(args)
    _say(f"== ready in {time.monotonic() - started:.1f}s")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = _settings()
    ddb, sqs = settings.dynamodb(), settings.sqs()
    for spec in table_specs(settings.names):
        try:
            table = ddb.describe_table(TableName=spec.name)["Table"]
            count = sum(1 for _ in scan_items(ddb, spec.name, "pk"))
            stream = " stream" if table.get("StreamSpecification", {}).get("StreamEnabled") else ""
            _say(f"table {spec.name:36} {count:>8} items  {table.get('TableStatus')}{stream}  ({spec.role})")
        except ddb.exceptions.ResourceNotFoundException:
            _say(f"table {spec.name:36} missing (run `costkeeper init`)")
    for name in (settings.names.usage_queue, settings.names.dead_letter_queue):
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            _say(f"queue {name:36} {attrs['Attributes'].get('ApproximateNumberOfMessages', '?'):>8} messages  {url}")
        except sqs.exceptions.QueueDoesNotExist:
            _say(f"queue {name:36} missing (run `costkeeper init`)")
    return 0


def _json_value(value: object) -> object:
    # DynamoDB numbers come back as Decimal: print them as JSON numbers (money and tokens are integers), not strings.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def cmd_scan(args: argparse.Namespace) -> int:
    settings = _settings()
    tables = {spec.name: spec for spec in table_specs(settings.names)}
    short = {name.removeprefix(settings.names.prefix): name for name in tables}
    table = short.get(args.table, args.table)
    if table not in tables:
        _say(f"unknown table {args.table!r}; one of: {', '.join(sorted(short))}")
        return 2
    deserializer = TypeDeserializer()
    shown = 0
    for item in scan_items(settings.dynamodb(), table):
        plain = {k: deserializer.deserialize(v) for k, v in item.items()}
        _say(json.dumps(plain, default=_json_value, sort_keys=True))
        shown += 1
        if args.limit and shown >= args.limit:
            break
    _say(f"({shown} items from {table})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args])


def _dev_secrets() -> dict[str, str]:
    """A JWT secret and admin key for local runs, kept across restarts so issued tokens stay valid."""
    path = emulator.default_run_dir() / "dev-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    # The API refuses secrets under 32 bytes (MIN_SECRET_BYTES); older runs' files are replaced.
    if not stored or any(len(v.encode()) < MIN_SECRET_BYTES for v in stored.values()):
        stored = {
            "CK_JWT_SECRET": secrets.token_urlsafe(48),
            "CK_ADMIN_API_KEY": "ck-admin-" + secrets.token_urlsafe(32),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return {k: os.environ.get(k) or v for k, v in stored.items()}


def cmd_run(args: argparse.Namespace) -> int:
    cmd_setup(args)
    env = child_environment({**_target_environment(), **_dev_secrets()})
    env.setdefault("CK_API_PORT", str(args.port))
    run_dir = emulator.default_run_dir()
    processes = [
        PipelineProcess(name, env, run_dir / f"{name}.log", echo=True) for name in ("api", "worker", "aggregator")
    ]
    # `costkeeper stop` in another terminal finds this process there, and stops it before the emulator.
    shutdown.pipeline_pid_file(run_dir).write_text(str(os.getpid()))
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for process in processes:
        process.start()
    base = f"http://127.0.0.1:{env['CK_API_PORT']}"
    try:
        wait_for_http(f"{base}/health", 60, processes[0])
        _say(
            f"== pipeline running: API {base}  (health {base}/health, metrics {base}/metrics, docs {base}/openapi.json)"
        )
        _say(f"   admin API key: {env['CK_ADMIN_API_KEY']}   seed credentials: {_credentials_file()}")
        _say("   Ctrl-C stops the API, the worker and the aggregator (the emulator keeps running: `costkeeper stop`)")
        while not stopping:
            dead = [p for p in processes if not p.alive()]
            if dead:
                _say(f"== {dead[0].name} exited with {dead[0].returncode()}; stopping the rest")
                break
            time.sleep(0.2)
    finally:
        _say("== stopping (draining in-flight work)")
        for process in processes:
            process.stop()
        shutdown.pipeline_pid_file(run_dir).unlink(missing_ok=True)
    return 0 if stopping else 1


def _print_status(status: PipelineStatus, as_json: bool) -> None:
    if as_json:
        _say(json.dumps(status.as_dict()))
        return
    q, d = status.queue, status.dead_letter
    _say(
        time.strftime("%H:%M:%S")
        + f"  queue: {q.visible} visible, {q.in_flight} in flight, {q.delayed} delayed"
        + f" | dead letters: {d.total}"
        + f" | aggregator: {status.pending_records} records pending, lag {status.lag_s:.1f}s"
        + f" over {len(status.shards)} shard(s)"
    )


async def _status_once(settings: AwsSettings) -> PipelineStatus:
    async with open_async_clients(settings) as clients:
        return await pipeline_status(clients, settings.names)


def cmd_queue(args: argparse.Namespace) -> int:
    _print_status(asyncio.run(_status_once(_settings())), args.json)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    settings = _settings()

    async def loop() -> None:
        async with open_async_clients(settings) as clients:
            shown = 0
            while args.count == 0 or shown < args.count:
                _print_status(await pipeline_status(clients, settings.names), args.json)
                shown += 1
                if args.count == 0 or shown < args.count:
                    await asyncio.sleep(args.interval)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(loop())
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    """Move dead letters back to the usage queue: send first, then delete, so nothing is lost on a crash."""
    settings = _settings()
    sqs = settings.sqs()
    source = sqs.get_queue_url(QueueName=settings.names.dead_letter_queue)["QueueUrl"]
    target = sqs.get_queue_url(QueueName=settings.names.usage_queue)["QueueUrl"]
    # At most what is there now: a message that fails again returns to the dead-letter queue while this runs, and
    # "until it is empty" would then move it back and forth for as long as a worker runs.
    waiting = sqs.get_queue_attributes(QueueUrl=source, AttributeNames=["ApproximateNumberOfMessages"])
    limit = int(waiting["Attributes"]["ApproximateNumberOfMessages"])
    if args.max:
        limit = min(limit, args.max)
    moved = 0
    while moved < limit:
        batch = min(10, limit - moved)
        messages = sqs.receive_message(
            QueueUrl=source, MaxNumberOfMessages=batch, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        entries: list[Any] = [{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(messages)]
        sent = sqs.send_message_batch(QueueUrl=target, Entries=entries)
        ok = {e["Id"] for e in sent.get("Successful", [])}
        delete: list[Any] = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages) if str(i) in ok
        ]
        if delete:
            sqs.delete_message_batch(QueueUrl=source, Entries=delete)
        moved += len(delete)
        for failure in sent.get("Failed", []):
            _say(f"  not moved: {failure.get('Message')}")
        _say(f"  moved {moved} message(s) so far")
    _say(f"redrove {moved} message(s) from {settings.names.dead_letter_queue} to {settings.names.usage_queue}")
    return 0


async def _reconcile(settings: AwsSettings, args: argparse.Namespace) -> list[DayResult]:
    async with open_async_clients(settings) as clients:
        catalog = CatalogStore(clients.dynamodb, settings.names.config_table, cache_ttl_s=0)
        org_ids = [args.org] if args.org else await catalog.list_org_ids()
        days: list[tuple[str, str]] = []
        for org_id in org_ids:
            if args.day:
                days.append((org_id, args.day))
                continue
            org = await catalog.get_org(org_id)
            if org is None:
                _say(f"org {org_id} does not exist")
                continue
            # The org's own today and yesterday: late events still land on yesterday for a while after midnight.
            today = org.local_day(datetime.now(UTC))
            days += [(org_id, (today - timedelta(days=1)).isoformat()), (org_id, today.isoformat())]
        # Progress on stderr: stdout is the report (and with --json, one document per day).
        reconciler = Reconciler(
            clients.dynamodb, clients.streams, settings.names, args.settle_s, lambda m: print(m, file=sys.stderr)
        )
        return await reconciler.reconcile(days, repair=args.repair)


def cmd_backfill_index(args: argparse.Namespace) -> int:
    """Give usage items written before the day index existed their key in it (once, after an upgrade)."""
    settings = _settings()

    async def backfill() -> BackfillStats:
        async with open_async_clients(settings) as clients:
            return await backfill_day_index(
                clients.dynamodb, settings.names.usage_table, args.segments, lambda m: print(m, file=sys.stderr)
            )

    stats = asyncio.run(backfill())
    _say(
        f"{settings.names.usage_table}: {stats.scanned} item(s) scanned, {stats.keyed} given their day index key, "
        f"{stats.skipped} gone or keyed meanwhile, {stats.unreadable} not usage items (left as they are)"
    )
    return 0


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from exc
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError(f"not between 1 and 1000: {number}")
    return number


def _iso_day(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {value!r}") from exc


def _describe_drift(result: DayResult) -> list[str]:
    lines: list[str] = []
    for report in result.drifted:
        held, expected, drift = report.seen.totals, report.expected, report.drift
        if report.key in result.repaired_last:
            state = "repaired"
        elif report.unsettled:
            state = "unsettled (a hand correction is in flight; run again)"
        else:
            state = "not repaired"
        lines.append(
            f"  {report.key.app_id}/{report.key.model_label}: holds {held.cost_usd_micros} micro-USD over "
            f"{held.request_count} requests, the usage items {expected.cost_usd_micros} over {expected.request_count}"
            f" (drift {drift.cost_usd_micros:+} micro-USD, {drift.request_count:+} requests): {state}"
        )
    return lines


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Recompute aggregates from the usage items; report the drift per key; with --repair, set it right."""
    results = asyncio.run(_reconcile(_settings(), args))
    outstanding = 0
    for result in results:
        pending = sum(r.pending for r in result.reports)
        if args.json:
            _say(json.dumps(_result_document(result)))
        else:
            _say(
                f"org {result.org_id} day {result.day}: {len(result.reports)} aggregate(s), "
                f"{len(result.drifted)} drifting, {len(result.repaired)} repaired, {pending} usage item(s) "
                f"still on their way to the aggregator"
                + (f", {result.unreadable_items} unreadable usage item(s)" if result.unreadable_items else "")
            )
            for line in _describe_drift(result):
                _say(line)
        outstanding += len(result.outstanding)
    return 3 if outstanding else 0


def _result_document(result: DayResult) -> dict[str, Any]:
    return {
        "org_id": result.org_id,
        "day": result.day,
        "aggregates": len(result.reports),
        "drifting": [
            {
                "app_id": r.key.app_id,
                "model_label": r.key.model_label,
                "held": r.seen.totals.as_dict(),
                "expected": r.expected.as_dict(),
                "drift": r.drift.as_dict(),
                "repaired": r.key in result.repaired_last,
                "unsettled": r.unsettled,
            }
            for r in result.drifted
        ],
        "pending_items": sum(r.pending for r in result.reports),
        "refused_rounds": result.refused_rounds,
        "unreadable_items": result.unreadable_items,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="costkeeper", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--localstack",
        action="store_true",
        help="target a LocalStack edge (LOCALSTACK_HOST, default localhost:4566) instead of the embedded emulator",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    simple = {
        "status": (cmd_status, "is the emulator running and answering, and are the tables and queues there"),
        "init": (cmd_init, "create tables and queues (idempotent)"),
        "seed": (cmd_seed, "create the test org and app; prints new client secrets once"),
        "clear": (cmd_clear, "delete all data (every table's items, queued messages); tables and queues stay"),
        "reset": (cmd_reset, "clear, then seed: a clean seeded state"),
        "list": (cmd_list, "tables and queues with their sizes"),
    }
    for name, (func, help_text) in simple.items():
        sub.add_parser(name, help=help_text).set_defaults(func=func)
    # Verbs that start the emulator choose where DynamoDB Local keeps its data; verbs that stop it, how long the
    # worker gets to empty moto's in-memory queues first.
    lifecycle = {
        "start": (
            cmd_start,
            "start the embedded emulator (DynamoDB Local + moto SQS); tables persist in the run folder",
        ),
        "stop": (cmd_stop, "let the worker drain the queues, stop `costkeeper run`'s pipeline, stop the emulator"),
        "restart": (cmd_restart, "stop, then start: tables keep their data, queues come back empty"),
        "setup": (cmd_setup, "start + init + seed"),
    }
    for name, (func, help_text) in lifecycle.items():
        verb = sub.add_parser(name, help=help_text)
        if name != "stop":
            verb.add_argument(
                "--in-memory", action="store_true", help="DynamoDB Local in memory (CK_DYNAMODB_IN_MEMORY=1)"
            )
        if name in ("stop", "restart"):
            verb.add_argument(
                "--drain-timeout", type=float, default=30.0, help="longest wait for the worker to empty the queues (s)"
            )
        verb.set_defaults(func=func)
    scan = sub.add_parser("scan", help="print a table's items as JSON lines")
    scan.add_argument("table", help="table name, with or without the resource prefix (e.g. usage)")
    scan.add_argument("--limit", type=int, default=0, help="at most this many items (0: all)")
    scan.set_defaults(func=cmd_scan)
    run = sub.add_parser("run", help="setup, then run the API, worker and aggregator until Ctrl-C")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--in-memory", action="store_true", help="DynamoDB Local in memory (CK_DYNAMODB_IN_MEMORY=1)")
    run.set_defaults(func=cmd_run)
    test = sub.add_parser("test", help="run the test suite (arguments go to pytest)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)
    queue = sub.add_parser("queue", help="queue depth, dead letters and aggregator lag, once")
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(func=cmd_queue)
    watch = sub.add_parser("watch", help="the same figures, refreshing")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    watch.add_argument("--count", type=int, default=0, help="stop after this many (0: until Ctrl-C)")
    watch.add_argument("--json", action="store_true")
    watch.set_defaults(func=cmd_watch)
    redrive = sub.add_parser("redrive", help="move dead-letter messages back to the usage queue")
    redrive.add_argument("--max", type=int, default=0, help="at most this many messages (0: all waiting now)")
    redrive.set_defaults(func=cmd_redrive)
    reconcile = sub.add_parser(
        "reconcile",
        help="recompute daily aggregates from the usage items; report drift per key; --repair sets it right",
    )
    reconcile.add_argument(
        "--day", type=_iso_day, help="org-local day YYYY-MM-DD (default: each org's today and yesterday)"
    )
    reconcile.add_argument("--org", help="one org id (default: every org)")
    reconcile.add_argument("--repair", action="store_true", help="set drifting aggregates right (safe while running)")
    reconcile.add_argument(
        "--settle-s",
        type=float,
        default=DEFAULT_SETTLE_S,
        help="how long index entries and stream records may take to appear after a write",
    )
    reconcile.add_argument("--json", action="store_true")
    reconcile.set_defaults(func=cmd_reconcile)
    backfill = sub.add_parser(
        "backfill-index",
        help="give usage items written before the day index existed their key in it (once, after an upgrade)",
    )
    backfill.add_argument("--segments", type=_positive_int, default=DEFAULT_SEGMENTS, help="parallel scan segments")
    backfill.set_defaults(func=cmd_backfill_index)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.localstack:
        os.environ.update(localstack_environment())
    try:
        return int(args.func(args))
    except emulator.EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `costkeeper scan usage | head`: the reader has what it wanted. Python's documented way out: point stdout
        # at devnull, so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
