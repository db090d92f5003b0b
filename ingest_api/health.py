"""GET /health/deep: is every table and queue of this deployment reachable.

The answer is kept for `cache_s` and concurrent askers share one check in flight, so however often it is asked the
tables and queues see at most one round of calls per `cache_s`. (GET /health, the load balancer's liveness check,
asks nothing of AWS at all.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from runtime.aws import AsyncClients
from runtime.resources import ResourceNames, table_specs

CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class HealthReport:
    checks: dict[str, str]

    @property
    def healthy(self) -> bool:
        return all(v in ("ACTIVE", "OK") for v in self.checks.values())


class HealthProbe:
    def __init__(
        self, clients: AsyncClients, names: ResourceNames, queue_url: str, dlq_url: str, cache_s: float = 5.0
    ) -> None:
        self._clients = clients
        self._names = names
        self._queue_urls = {names.usage_queue: queue_url, names.dead_letter_queue: dlq_url}
        self._cache_s = cache_s
        self._latest: tuple[float, HealthReport] | None = None
        self._running: asyncio.Task[HealthReport] | None = None

    async def latest(self) -> HealthReport:
        """The last report if it is younger than cache_s, else a fresh one (shared with concurrent askers)."""
        if self._latest is not None and time.monotonic() - self._latest[0] < self._cache_s:
            return self._latest[1]
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self.check())
        report = await asyncio.shield(self._running)
        self._latest = (time.monotonic(), report)
        return report

    async def _table(self, name: str) -> str:
        description = await self._clients.dynamodb.describe_table(TableName=name)
        return str(description["Table"].get("TableStatus", "UNKNOWN"))

    async def _queue(self, url: str) -> str:
        await self._clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return "OK"

    async def check(self) -> HealthReport:
        checks: dict[str, Awaitable[str]] = {f"table:{s.name}": self._table(s.name) for s in table_specs(self._names)}
        for name, url in self._queue_urls.items():
            checks[f"queue:{name}"] = self._queue(url)
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                results[name] = await asyncio.wait_for(check, CHECK_TIMEOUT_S)
            except Exception as exc:
                results[name] = f"ERROR: {type(exc).__name__}"
        return HealthReport(results)
