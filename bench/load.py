"""The load: C concurrent clients post the planned requests over keep-alive connections, as fast as answered.

Closed loop, bounded by the plan (a fixed number of events) and by a deadline. Optionally paced: with a rate, a
request is not sent before its events' turn at that many events per second, which measures lag at a sustainable
load instead of at saturation. Every request's latency is kept, and every event the server accepted (202, or a 202
item of a 207) is kept so its totals can be checked afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.workload import PlannedEvent, PlannedRequest


@dataclass
class LoadResult:
    requests: int = 0
    latencies_s: list[float] = field(default_factory=list)
    accepted: list[PlannedEvent] = field(default_factory=list)
    rejected_events: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    stopped_by_deadline: bool = False

    @property
    def accepted_per_s(self) -> float:
        return len(self.accepted) / self.wall_s if self.wall_s > 0 else 0.0


def _accepted_of(planned: PlannedRequest, response: httpx.Response) -> list[PlannedEvent]:
    if not planned.batch:
        return list(planned.events) if response.status_code == 202 else []
    if response.status_code != 207:
        return []
    results = response.json()["results"]
    return [planned.events[r["index"]] for r in results if r.get("status") == 202]


async def run_load(
    base_url: str,
    usage_path: str,
    headers: dict[str, str],
    plan: list[PlannedRequest],
    concurrency: int,
    max_duration_s: float,
    rate_per_s: float | None = None,
) -> LoadResult:
    """Post every planned request (or as many as fit before the deadline) from `concurrency` clients."""
    result = LoadResult()
    offsets_s: list[float] = []
    events_before = 0
    for planned in plan:
        offsets_s.append(events_before / rate_per_s if rate_per_s else 0.0)
        events_before += len(planned.events)
    pending = iter(zip(plan, offsets_s, strict=True))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    request_headers = {**headers, "Content-Type": "application/json"}
    started = time.perf_counter()
    deadline = started + max_duration_s

    async def client(http: httpx.AsyncClient) -> None:
        for planned, offset_s in pending:
            if started + offset_s > deadline or time.perf_counter() > deadline:
                result.stopped_by_deadline = True
                return
            if offset_s:
                await asyncio.sleep(max(0.0, started + offset_s - time.perf_counter()))
            url = f"{usage_path}/batch" if planned.batch else usage_path
            sent = time.perf_counter()
            try:
                response = await http.post(url, content=planned.body, headers=request_headers)
            except httpx.HTTPError as exc:
                result.statuses[type(exc).__name__] += 1
                result.rejected_events += len(planned.events)
                continue
            result.latencies_s.append(time.perf_counter() - sent)
            result.requests += 1
            result.statuses[str(response.status_code)] += 1
            accepted = _accepted_of(planned, response)
            result.accepted.extend(accepted)
            result.rejected_events += len(planned.events) - len(accepted)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result
