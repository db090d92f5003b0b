"""A stream record of the usage table, decoded once where it is read (GetRecords or a Lambda event).

Both readers get the same low-level format; everything after this boundary (rollup, chunking, commit, lag figures)
works on StreamRecord and never looks at attribute values again.

INSERT adds a usage item; MODIFY (a hand correction; the worker never modifies) moves the difference; REMOVE is
ignored on purpose, because usage items leave by TTL expiry and by `clear`, and neither should rewrite history.
An image that is not a usage item this reader knows (written by hand, or by a bug) contributes nothing: retrying it
would stall its shard forever. Skipping is deterministic, so a replay skips it again: still exactly once. Such records
are flagged `malformed` for the reader to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aggregator.aggregates import AggregateKey
from aggregator.usage_record import UsageRecord

Change = tuple[int, UsageRecord]  # (+1 counted, -1 taken back), the usage it concerns

# DynamoDB Streams sequence numbers are decimal strings of 21 to 40 digits (StreamRecord.SequenceNumber). Padded to
# the longest, their string order is their numeric order, so a DynamoDB condition (`applied < :first`) compares them.
POSITION_DIGITS = 40


class UnreadableSequenceNumber(ValueError):
    """A stream record whose sequence number is not the decimal string DynamoDB Streams documents."""


def position(sequence_number: str) -> str:
    """A sequence number as a fixed-width string: ordered like the numbers, comparable inside DynamoDB."""
    digits = sequence_number.isascii() and sequence_number.isdigit()
    if not digits or len(sequence_number) > POSITION_DIGITS:
        raise UnreadableSequenceNumber(f"not a stream sequence number: {sequence_number!r}")
    return sequence_number.rjust(POSITION_DIGITS, "0")


@dataclass(frozen=True)
class StreamRecord:
    sequence_number: str
    event_name: str
    changes: tuple[Change, ...]
    # An INSERT or MODIFY whose new image is not a usage record: skipped, and worth an operator's look.
    malformed: bool
    # The record as it arrived, for logs (its Keys) and for callers that map results back.
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def position(self) -> str:
        """Where the record stands in its shard: records of one shard come in increasing position."""
        return position(self.sequence_number)

    @property
    def aggregate_keys(self) -> set[AggregateKey]:
        return {usage.aggregate_key for _, usage in self.changes}

    @property
    def inserted(self) -> UsageRecord | None:
        """The usage item this record newly wrote, if it is an INSERT of one: what lag is measured on."""
        if self.event_name == "INSERT" and self.changes:
            return self.changes[0][1]
        return None


def _usage(image: Mapping[str, Any] | None) -> UsageRecord | None:
    if image is None:
        return None
    try:
        return UsageRecord.from_image(dict(image))
    except (KeyError, ValueError, TypeError):
        return None


def decode(raw: Mapping[str, Any]) -> StreamRecord:
    """An image counts if and only if it is a usage record, so a MODIFY takes back only what was counted before."""
    event = str(raw.get("eventName", ""))
    ddb = raw.get("dynamodb", {})
    changes: list[Change] = []
    new = _usage(ddb.get("NewImage")) if event in ("INSERT", "MODIFY") else None
    if event == "INSERT" and new is not None:
        changes.append((1, new))
    elif event == "MODIFY" and "NewImage" in ddb and "OldImage" in ddb:
        old = _usage(ddb["OldImage"])
        if old is not None:
            changes.append((-1, old))
        if new is not None:
            changes.append((1, new))
    malformed = event in ("INSERT", "MODIFY") and "NewImage" in ddb and new is None
    return StreamRecord(str(ddb.get("SequenceNumber", "")), event, tuple(changes), malformed, raw)


def decode_all(raws: Iterable[Mapping[str, Any]]) -> list[StreamRecord]:
    return [decode(raw) for raw in raws]
