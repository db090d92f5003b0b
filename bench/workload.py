"""What the benchmark posts: one tenant's price list, and request bodies planned (and encoded) before the clock runs.

Planning ahead keeps the load generator's own CPU out of the measured phase: on a small machine it shares the cores
with the servers it measures. Each planned event keeps its token counts, so the expected aggregate totals of
whatever the server accepted can be summed exactly, with pricing restated here rather than imported from the worker.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.rollup import Totals
from infra.seed import SEED_ORG

# The seed's models and prices; no quotas, which only steer model selection and play no part in ingest.
ORG_SETTINGS = SEED_ORG.model_copy(update={"name": "Benchmark", "daily_quotas_usd_micros": {}})
LABELS = tuple(ORG_SETTINGS.model_ordering)


@dataclass(frozen=True)
class PlannedEvent:
    label: str
    day: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    def totals(self) -> Totals:
        """This event's contribution to its aggregate: the pricing rule restated (round half up, once per request)."""
        p = ORG_SETTINGS.models[self.label].prices
        numerator = (
            self.input_tokens * p.input_per_mtok_usd_micros
            + self.output_tokens * p.output_per_mtok_usd_micros
            + self.cache_read_tokens * p.cache_read_per_mtok_usd_micros
            + self.cache_write_tokens * p.cache_write_per_mtok_usd_micros
        )
        return Totals(
            cost_usd_micros=(numerator + 500_000) // 1_000_000,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            request_count=1,
        )


@dataclass(frozen=True)
class PlannedRequest:
    batch: bool  # POST .../usage/batch (207) rather than .../usage (202)
    body: bytes
    events: tuple[PlannedEvent, ...]


def _event(rng: random.Random, now: datetime) -> tuple[dict[str, object], PlannedEvent]:
    label = rng.choice(LABELS)
    cache = label == "premium" and rng.random() < 0.3
    planned = PlannedEvent(
        label=label,
        day=now.date().isoformat(),
        input_tokens=rng.randint(50, 8000),
        output_tokens=rng.randint(10, 2000),
        cache_read_tokens=rng.randint(0, 20_000) if cache else 0,
        cache_write_tokens=rng.randint(0, 2000) if cache else 0,
    )
    body: dict[str, object] = {
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "model_label": label,
        "input_tokens": planned.input_tokens,
        "output_tokens": planned.output_tokens,
        "timestamp": now.isoformat(),
    }
    if cache:
        body["cache_read_tokens"] = planned.cache_read_tokens
        body["cache_write_tokens"] = planned.cache_write_tokens
    return body, planned


def plan_requests(events: int, batch_size: int, single_share: float, seed: int) -> list[PlannedRequest]:
    """Requests carrying `events` events in all: a share of single posts, the rest batches of batch_size."""
    if not 1 <= batch_size <= 100:
        raise ValueError("a batch holds 1 to 100 events")
    rng = random.Random(seed)
    now = datetime.now(UTC)
    planned: list[PlannedRequest] = []
    remaining = events
    while remaining > 0:
        if rng.random() < single_share:
            body, event = _event(rng, now)
            planned.append(PlannedRequest(False, json.dumps(body).encode(), (event,)))
            remaining -= 1
            continue
        size = min(batch_size, remaining)
        pairs = [_event(rng, now) for _ in range(size)]
        body_bytes = json.dumps({"items": [b for b, _ in pairs]}).encode()
        planned.append(PlannedRequest(True, body_bytes, tuple(e for _, e in pairs)))
        remaining -= size
    return planned


def expected_totals(events: list[PlannedEvent]) -> dict[tuple[str, str], Totals]:
    """(day, label) -> the exact sum of these events' contributions."""
    sums: dict[tuple[str, str], Totals] = {}
    for event in events:
        sums.setdefault((event.day, event.label), Totals()).merge(event.totals())
    return sums
