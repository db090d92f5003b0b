"""`costkeeper stop` waits for the worker to drain moto's in-memory queues, and says what it could not save."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from infra.shutdown import drain_queues

QUEUE = "http://127.0.0.1:9324/123456789012/bedrock-cost-keeper-usage"
DLQ = "http://127.0.0.1:9324/123456789012/bedrock-cost-keeper-usage-dlq"


class DrainingQueues:
    """SQS as `drain_queues` sees it: each GetQueueAttributes of the usage queue answers the next depth given."""

    def __init__(self, usage_depths: list[int], dead_letters: int = 0) -> None:
        self._depths: Iterator[int] = iter(usage_depths)
        self._last = usage_depths[0]
        self._dead_letters = dead_letters

    def list_queues(self) -> dict[str, Any]:
        return {"QueueUrls": [QUEUE, DLQ]}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        if QueueUrl == DLQ:
            return {"Attributes": {"ApproximateNumberOfMessages": str(self._dead_letters)}}
        self._last = next(self._depths, self._last)
        return {
            "Attributes": {"ApproximateNumberOfMessages": str(self._last), "ApproximateNumberOfMessagesNotVisible": "0"}
        }


def drain(queues: DrainingQueues, worker_running: bool, timeout_s: float = 5.0) -> list[str]:
    said: list[str] = []
    drain_queues(cast(Any, queues), worker_running, timeout_s, said.append, poll_s=0.01, stalled_s=0.1)
    return said


def test_a_draining_worker_is_waited_for_and_nothing_is_reported_lost() -> None:
    said = drain(DrainingQueues([30, 20, 10, 0]), worker_running=True)
    assert [line.split(":")[0] for line in said] == [
        f"waiting for the worker to drain {n} message(s)" for n in (30, 20, 10)
    ]
    assert not any("lost" in line for line in said)


def test_without_a_worker_a_stalled_queue_is_reported_lost_after_a_short_wait() -> None:
    said = drain(DrainingQueues([4]), worker_running=False, timeout_s=30.0)
    assert (
        said[-1]
        == "warning: 4 message(s) in bedrock-cost-keeper-usage are lost with moto's memory (no worker drained them)"
    )


def test_dead_letters_are_not_waited_for_but_reported() -> None:
    said = drain(DrainingQueues([0], dead_letters=2), worker_running=True)
    assert said == [
        "warning: 2 dead letter(s) in bedrock-cost-keeper-usage-dlq are lost with moto's memory"
        " (`costkeeper redrive` first)"
    ]
