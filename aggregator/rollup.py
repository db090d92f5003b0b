"""Rolling decoded stream records into per-key deltas, and cutting them into runs that fit a transaction. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from aggregator.aggregates import AggregateKey, Totals
from aggregator.stream_record import StreamRecord


def rollup(records: Iterable[StreamRecord]) -> dict[AggregateKey, Totals]:
    deltas: dict[AggregateKey, Totals] = {}
    for record in records:
        for sign, usage in record.changes:
            deltas.setdefault(usage.aggregate_key, Totals()).add(usage, sign)
    return {key: totals for key, totals in deltas.items() if not totals.is_zero()}


def chunk_by_keys(records: list[StreamRecord], max_keys: int) -> list[list[StreamRecord]]:
    """Split records, in stream order, into runs that each touch at most max_keys aggregate keys.

    Each run is committed in one transaction together with its guard (checkpoint or marker), so a transaction's
    item limit never forces a run to be split in a way that breaks exactly-once.
    """
    if max_keys < 2:
        raise ValueError("a MODIFY can touch two keys")
    runs: list[list[StreamRecord]] = []
    current: list[StreamRecord] = []
    keys: set[AggregateKey] = set()
    for record in records:
        record_keys = record.aggregate_keys
        if current and len(keys | record_keys) > max_keys:
            runs.append(current)
            current, keys = [], set()
        current.append(record)
        keys |= record_keys
    if current:
        runs.append(current)
    return runs
