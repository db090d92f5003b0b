"""Rolling stream records into per-key deltas. Pure: no I/O.

INSERT adds a usage item; MODIFY (a hand correction; the worker never modifies) moves the difference; REMOVE is
ignored on purpose, because usage items leave by TTL expiry and by `clear`, and neither should rewrite history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from aggregator.keys import AggregateKey
from aggregator.usage_record import UsageRecord


@dataclass
class Totals:
    cost_usd_micros: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    request_count: int = 0

    def add(self, record: UsageRecord, sign: int = 1) -> None:
        self.cost_usd_micros += sign * record.cost_usd_micros
        self.input_tokens += sign * record.input_tokens
        self.output_tokens += sign * record.output_tokens
        self.cache_read_tokens += sign * record.cache_read_tokens
        self.cache_write_tokens += sign * record.cache_write_tokens
        self.request_count += sign

    def merge(self, other: Totals) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def is_zero(self) -> bool:
        return all(getattr(self, f.name) == 0 for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Totals:
        return cls(**{f.name: int(item[f.name]["N"]) if f.name in item else 0 for f in fields(cls)})


def _usage(image: Mapping[str, Any] | None) -> UsageRecord | None:
    """The usage record an image holds, or None for an item that is not one (written by hand, or by a bug).

    Such an item can never be aggregated; retrying it would stall its shard forever, so it contributes nothing and the
    reader reports it (`malformed`). Skipping is deterministic, so a replay skips it again: still exactly once.
    """
    if image is None:
        return None
    try:
        return UsageRecord.from_image(dict(image))
    except (KeyError, ValueError, TypeError):
        return None


def changes(record: Mapping[str, Any]) -> list[tuple[int, UsageRecord]]:
    """(sign, usage) pairs one stream record contributes, in the low-level format GetRecords and Lambda share.

    An image counts if and only if it is a usage record, so a MODIFY takes back only what was counted before.
    """
    event = record.get("eventName")
    ddb = record.get("dynamodb", {})
    if event == "INSERT":
        new = _usage(ddb.get("NewImage"))
        return [(1, new)] if new is not None else []
    if event == "MODIFY" and "NewImage" in ddb and "OldImage" in ddb:
        pairs = ((-1, _usage(ddb["OldImage"])), (1, _usage(ddb["NewImage"])))
        return [(sign, usage) for sign, usage in pairs if usage is not None]
    return []


def malformed(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """INSERT/MODIFY records whose new image is not a usage record: they are skipped, and worth an operator's look."""
    return [
        r
        for r in records
        if r.get("eventName") in ("INSERT", "MODIFY")
        and "NewImage" in r.get("dynamodb", {})
        and _usage(r["dynamodb"]["NewImage"]) is None
    ]


def rollup(records: Iterable[Mapping[str, Any]]) -> dict[AggregateKey, Totals]:
    deltas: dict[AggregateKey, Totals] = {}
    for record in records:
        for sign, usage in changes(record):
            deltas.setdefault(usage.aggregate_key, Totals()).add(usage, sign)
    return {key: totals for key, totals in deltas.items() if not totals.is_zero()}


def chunk_by_keys(records: list[Mapping[str, Any]], max_keys: int) -> list[list[Mapping[str, Any]]]:
    """Split records, in stream order, into runs that each touch at most max_keys aggregate keys.

    Each run is committed in one transaction together with the checkpoint at its last record, so a transaction's
    item limit never forces a run to be split in a way that breaks exactly-once.
    """
    if max_keys < 2:
        raise ValueError("a MODIFY can touch two keys")
    runs: list[list[Mapping[str, Any]]] = []
    current: list[Mapping[str, Any]] = []
    keys: set[AggregateKey] = set()
    for record in records:
        record_keys = {usage.aggregate_key for _, usage in changes(record)}
        if current and len(keys | record_keys) > max_keys:
            runs.append(current)
            current, keys = [], set()
        current.append(record)
        keys |= record_keys
    if current:
        runs.append(current)
    return runs
