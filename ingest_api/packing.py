"""Packing queued requests into one SendMessageBatch. Pure: sizes and counts in, a grouping out.

Requests are taken from the front, in arrival order, into up to MAX_ENTRIES_PER_BATCH messages; a message holds at
most MAX_EVENTS_PER_MESSAGE events and MAX_MESSAGE_BYTES, and the whole batch at most its own byte limit (SQS limits
the sum of a batch's entries as well as each one). A request is never split: its events share one message, so its
answer (202 or 503) is all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Protocol, TypeVar

from workers.message import MAX_EVENTS_PER_MESSAGE, MAX_MESSAGE_BYTES

MAX_ENTRIES_PER_BATCH = 10
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES


class Parcel(Protocol):
    """A request waiting to be sent: its events and their encoded size (workers.message.encoded_size)."""

    @property
    def events(self) -> Sized: ...

    @property
    def size(self) -> int: ...


P = TypeVar("P", bound=Parcel)


@dataclass(frozen=True)
class PackingLimits:
    max_entries: int = MAX_ENTRIES_PER_BATCH
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_events_per_message: int = MAX_EVENTS_PER_MESSAGE


def pack(pending: Sequence[P], limits: PackingLimits = PackingLimits()) -> list[list[P]]:
    """The messages of the next batch, taken from the front of `pending`; the caller removes what was taken.

    Every request taken is in exactly one message, in order: the first sum(len(m) for m in result) of `pending`.
    Each request must fit a message on its own (the publisher refuses any that does not); then the result is empty
    only when `pending` is.
    """
    messages: list[list[P]] = []
    current: list[P] = []
    current_size = current_events = total = 0
    for nxt in pending:
        if total + nxt.size > limits.max_batch_bytes:
            break
        if current and (
            current_size + nxt.size > limits.max_message_bytes
            or current_events + len(nxt.events) > limits.max_events_per_message
        ):
            messages.append(current)
            current, current_size, current_events = [], 0, 0
            if len(messages) == limits.max_entries:
                break
        current.append(nxt)
        current_size += nxt.size
        current_events += len(nxt.events)
        total += nxt.size
    if current:
        messages.append(current)
    return messages
