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

from aggregator.aggregates import Totals
from catalog.token_counts import TOKEN_FIELDS, TokenCounts
from infra.seed import SEED_ORG

# The seed's models and prices; no quotas, which only steer model selection and play no part in ingest.
ORG_SETTINGS = SEED_ORG.model_copy(update={"name": "Benchmark", "daily_quotas_usd_micros": {}})
LABELS = tuple(ORG_SETTINGS.model_ordering)
# Every call has input and output; the other categories (cache reads and writes) come with prompt caching.
ALWAYS = ("input_tokens", "output_tokens")
CACHED = tuple(name for name in TOKEN_FIELDS if name not in ALWAYS)


@dataclass(frozen=True)
class PlannedEvent:
    label: str
    day: str
    tokens: TokenCounts

    def totals(self) -> Totals:
        """This event's contribution to its aggregate's billed counters: the pricing rule restated (round half up,
        once per request). The split of the cost by category is not restated; `billed` leaves it out."""
        p = ORG_SETTINGS.models[self.label].prices
        numerator = sum(count * p.per_mtok(name) for name, count in self.tokens.counts().items())
        return Totals.of(cost_usd_micros=(numerator + 500_000) // 1_000_000, request_count=1, **self.tokens.counts())


def billed(totals: Totals) -> tuple[int, dict[str, int], int, int]:
    """What the benchmark checks of an aggregate: cost, tokens per category, requests and errors."""
    return totals.cost_usd_micros, totals.tokens, totals.request_count, totals.error_count


@dataclass(frozen=True)
class PlannedRequest:
    batch: bool  # POST .../usage/batch (207) rather than .../usage (202)
    body: bytes
    events: tuple[PlannedEvent, ...]


def _event(rng: random.Random, now: datetime) -> tuple[dict[str, object], PlannedEvent]:
    label = rng.choice(LABELS)
    cache = label == "premium" and rng.random() < 0.3
    counts = {"input_tokens": rng.randint(50, 8000), "output_tokens": rng.randint(10, 2000)}
    if cache:
        counts.update({name: rng.randint(0, 20_000) for name in CACHED})
    planned = PlannedEvent(label=label, day=now.date().isoformat(), tokens=TokenCounts(**counts))
    body: dict[str, object] = {
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "model_label": label,
        **counts,
        "timestamp": now.isoformat(),
    }
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
