"""Rolling decoded stream records into per-key deltas, and into per-key runs that an update can guard. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aggregator.aggregates import AggregateKey, Guard, Totals
from aggregator.stream_record import StreamRecord


class OutOfOrderRecords(ValueError):
    """A shard's records did not come in increasing position: counting them could skip or repeat some."""


def rollup(records: Iterable[StreamRecord]) -> dict[AggregateKey, Totals]:
    deltas: dict[AggregateKey, Totals] = {}
    for record in records:
        for sign, usage in record.changes:
            deltas.setdefault(usage.aggregate_key, Totals()).add(usage, sign)
    return {key: totals for key, totals in deltas.items() if not totals.is_zero()}


@dataclass(frozen=True)
class Step:
    """What one stream record moves on one aggregate key."""

    position: str
    delta: Totals


@dataclass(frozen=True)
class KeyRun:
    """The records of one shard that touch one aggregate key, in shard order: one guarded update."""

    key: AggregateKey
    steps: tuple[Step, ...]

    def after(self, applied: str | None) -> KeyRun:
        """The steps not counted yet, when the aggregate has counted this shard up to `applied`."""
        if applied is None:
            return self
        return KeyRun(self.key, tuple(step for step in self.steps if step.position > applied))

    def totals(self) -> Totals:
        total = Totals()
        for step in self.steps:
            total.merge(step.delta)
        return total

    def guard(self, shard_id: str) -> Guard:
        return Guard(shard_id, self.steps[0].position, self.steps[-1].position)


def key_runs(records: Sequence[StreamRecord]) -> list[KeyRun]:
    """One run per aggregate key the records touch, in key order; records must be one shard's, in shard order.

    A key whose records cancel out still gets its run: its guard must move past them, or a replay of only some of
    them (other batch bounds) would count the part without its counterpart.
    """
    steps: dict[AggregateKey, list[Step]] = {}
    previous: str | None = None
    for record in records:
        position = record.position
        if previous is not None and position <= previous:
            raise OutOfOrderRecords(f"record {record.sequence_number} follows a later one in its shard")
        previous = position
        deltas: dict[AggregateKey, Totals] = {}
        for sign, usage in record.changes:
            deltas.setdefault(usage.aggregate_key, Totals()).add(usage, sign)
        for key, delta in deltas.items():
            steps.setdefault(key, []).append(Step(position, delta))
    return [KeyRun(key, tuple(key_steps)) for key, key_steps in sorted(steps.items())]
