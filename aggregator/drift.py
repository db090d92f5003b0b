"""What each aggregate of an org-local day should hold, and how far it is off. Pure: the I/O is reconcile.py.

The usage items are the truth. An aggregate is not simply their sum, though, while the pipeline runs: some items'
stream records are still on their way. So an aggregate is compared with the items it *has been given*, at a cut:

- For each shard, the cut is the further of the aggregate's applied position (aggregates.py) and the shard's
  checkpoint (checkpoints.py). Every record at or before it is counted, or was given up on (trimmed from the stream,
  discarded by the event source mapping, counted into an aggregate that was deleted since): either way no reader
  will count it again, so the aggregate should hold it.
- Records after the cut are pending: the aggregator will count them, so the aggregate should not hold them yet.

`expected` is then the sum of the day's usage items (as the index and the stream show them) less those whose INSERT
is pending. A repair adds `expected` less what the aggregate held to it: whatever the aggregator counts after that
read is past the cut (records up to the checkpoint were counted before the aggregate was read), so the difference
stays right without stopping the aggregator. Where the aggregate does not guard what it should hold (it was deleted,
or records of its key at or before the cut are not under its applied position), the repair also raises its applied
positions to the cut, so no replay counts those records again; that part is conditional on the positions not having
moved since they were read. A pending MODIFY (a hand correction) makes its keys unsettled: they are reported and left
for a later run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aggregator.aggregates import AggregateKey, AggregateState, Totals
from aggregator.stream_record import StreamRecord
from aggregator.usage_record import UsageRecord


@dataclass(frozen=True)
class ShardRead:
    """A shard's records as read for a reconcile: those after its checkpoint (or all it holds), in shard order."""

    shard_id: str
    records: Sequence[StreamRecord]


def difference(minuend: Totals, subtrahend: Totals) -> Totals:
    result = Totals.of(**minuend.as_dict())
    result.merge(Totals.of(**{name: -value for name, value in subtrahend.as_dict().items()}))
    return result


@dataclass(frozen=True)
class KeyReport:
    key: AggregateKey
    seen: AggregateState  # the aggregate as read
    expected: Totals
    # Applied positions a repair raises to the cut: those that do not yet guard every record the aggregate should hold.
    raise_to: dict[str, str] = field(default_factory=dict)
    pending: int = 0  # usage items of this key the aggregator has yet to count
    unsettled: bool = False

    @property
    def drift(self) -> Totals:
        """What the aggregate lacks (negative: holds too much)."""
        return difference(self.expected, self.seen.totals)

    @property
    def drifted(self) -> bool:
        return not self.drift.is_zero()


def _cut(state: AggregateState, checkpoints: Mapping[str, str | None], shard_id: str) -> str | None:
    positions = [p for p in (state.applied.get(shard_id), checkpoints.get(shard_id)) if p is not None]
    return max(positions, default=None)


def plan(
    org_id: str,
    day: str,
    states: Mapping[AggregateKey, AggregateState],
    usage: Iterable[UsageRecord],
    shards: Sequence[ShardRead],
    checkpoints: Mapping[str, str | None],
) -> list[KeyReport]:
    """One report per aggregate key of the org's day that has an aggregate, usage items or records in flight.

    `usage` is the day's items from the index; `shards` every shard's records after its first checkpoint (read after
    the index was, extended to the cuts); `checkpoints` each shard's checkpoint read after the index, and `states`
    the aggregates read after the checkpoints, so every record at or before a checkpoint had been counted when its
    aggregate was read.
    """

    def ours(key: AggregateKey) -> bool:
        return key.org_id == org_id and key.day == day

    # Each item once, as the table has it now; an item the index did not show yet is taken from its stream record.
    items: dict[str, UsageRecord] = {u.usage_key: u for u in usage if ours(u.aggregate_key)}
    for shard in shards:
        for record in shard.records:
            inserted = record.inserted
            if inserted is not None and ours(inserted.aggregate_key):
                items.setdefault(inserted.usage_key, inserted)

    keys = {k for k in states if ours(k)} | {u.aggregate_key for u in items.values()}
    for shard in shards:
        keys |= {k for r in shard.records for k in r.aggregate_keys if ours(k)}

    reports: list[KeyReport] = []
    for key in sorted(keys):
        state = states.get(key, AggregateState.from_item(None))
        shard_ids = {s.shard_id for s in shards} | set(checkpoints) | set(state.applied)
        cut = {s: c for s in shard_ids if (c := _cut(state, checkpoints, s)) is not None}
        pending: set[str] = set()
        unguarded: set[str] = set()
        unsettled = False
        for shard in shards:
            for record in shard.records:
                if key not in record.aggregate_keys:
                    continue
                if shard.shard_id in cut and record.position <= cut[shard.shard_id]:
                    applied = state.applied.get(shard.shard_id)
                    if applied is None or record.position > applied:
                        unguarded.add(shard.shard_id)
                    continue
                if record.event_name == "INSERT" and record.inserted is not None:
                    pending.add(record.inserted.usage_key)
                else:
                    unsettled = True
        expected = Totals()
        for usage_key, item in items.items():
            if item.aggregate_key == key and usage_key not in pending:
                expected.add(item)
        # A deleted aggregate guards nothing; one that exists guards all its key's records up to the checkpoint
        # unless the reads show one past its applied position (another reader counted it since).
        guarding = unguarded if state.exists else set(cut)
        raise_to = {s: cut[s] for s in guarding if state.applied.get(s) is None or cut[s] > state.applied[s]}
        reports.append(KeyReport(key, state, expected, raise_to, len(pending), unsettled))
    return reports
