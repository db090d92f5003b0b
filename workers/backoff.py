"""How long a message that failed for a reason a retry may cure waits before its next delivery. Pure.

Accepted usage must outlast the outages it meets: a message is retried with exponential back-off, set on the message
itself (ChangeMessageVisibility: the long-running consumer after each failed batch, the Lambda handler before it
reports the record as failed), and reaches the dead-letter queue only after the queue's maxReceiveCount deliveries.
With the defaults (5 s doubling to 15 minutes, 10 deliveries) that is about 51 minutes of failing writes, not a minute.
"""

from __future__ import annotations

from runtime.resources import MAX_RECEIVE_COUNT

# SQS caps a message's visibility timeout at 12 hours.
MAX_VISIBILITY_TIMEOUT_S = 12 * 3600


def retry_delay_s(receives: int, base_s: int, max_s: int) -> int:
    """The back-off after the receives-th delivery failed: base_s doubling per delivery, at most max_s."""
    exponent = min(max(receives, 1) - 1, 30)  # far beyond any cap; keeps the power small
    return int(min(base_s * 2**exponent, max_s, MAX_VISIBILITY_TIMEOUT_S))


def time_to_dead_letter_s(base_s: int, max_s: int, max_receives: int = MAX_RECEIVE_COUNT) -> int:
    """How long a message failing on every delivery stays on the queue before its redrive to the dead-letter queue."""
    return sum(retry_delay_s(n, base_s, max_s) for n in range(1, max_receives + 1))
