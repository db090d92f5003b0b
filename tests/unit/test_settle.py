"""workers/settle.py: what happens to one queue message: written, forwarded to the dead-letter queue, or retried.

The policy is tested here with in-memory stand-ins for SQS and the usage writer; the integration tests run it against
real queues and tables.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.unit.factories import ORG_ID
from workers.message import SCHEMA_VERSION, UsageEvent, UsageMessage, decode, encode
from workers.pricing import Rejected
from workers.processor import MessageOutcome, UsageWriter
from workers.settle import MessageSettler

DLQ_URL = "https://sqs.example/dlq"


def event(label: str = "standard") -> UsageEvent:
    return UsageEvent(
        org_id=ORG_ID,
        app_id="chatbot",
        request_id=str(uuid.uuid4()),
        model_label=label,
        input_tokens=10,
        timestamp=datetime(2024, 6, 15, 12, tzinfo=UTC),
        accepted_at=datetime(2024, 6, 15, 12, 0, 1, tzinfo=UTC),
    )


class FakeSQS:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[dict[str, Any]] = []

    async def send_message(self, **kwargs: Any) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("dead-letter queue unreachable")
        self.sent.append(kwargs)
        return {"MessageId": "m"}


class FakeWriter:
    """Writes what it is given, except events whose label it was told is gone; or fails outright."""

    def __init__(self, gone_labels: frozenset[str] = frozenset(), error: Exception | None = None) -> None:
        self.gone_labels = gone_labels
        self.error = error
        self.messages: list[UsageMessage] = []

    async def process(self, message: UsageMessage) -> MessageOutcome:
        self.messages.append(message)
        if self.error is not None:
            raise self.error
        rejected = [Rejected(e, "UNKNOWN_MODEL_LABEL") for e in message.events if e.model_label in self.gone_labels]
        return MessageOutcome(written=len(message.events) - len(rejected), rejected=rejected)


def settle(sqs: FakeSQS, writer: FakeWriter, body: str) -> Any:
    settler = MessageSettler(sqs, writer, DLQ_URL)  # type: ignore[arg-type]
    return asyncio.run(settler.settle("msg-1", body))


def attributes(sent: dict[str, Any]) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in sent["MessageAttributes"].items()}


def test_a_written_message_is_settled_and_nothing_is_dead_lettered() -> None:
    sqs, writer = FakeSQS(), FakeWriter()
    result = settle(sqs, writer, encode([event(), event()]))
    assert result.settled and result.written == 2 and not result.poison
    assert sqs.sent == [] and result.dead_letter_sends == 0


def test_poison_goes_to_the_dead_letter_queue_verbatim_and_is_settled() -> None:
    sqs, writer = FakeSQS(), FakeWriter()
    result = settle(sqs, writer, "not json")
    assert result.settled and result.poison and result.dead_letter_sends == 1
    assert writer.messages == []
    [sent] = sqs.sent
    assert sent["QueueUrl"] == DLQ_URL and sent["MessageBody"] == "not json"
    assert attributes(sent)["error_code"] == "POISON_MESSAGE"
    assert attributes(sent)["source_message_id"] == "msg-1"


def test_poison_stays_on_the_queue_when_the_dead_letter_queue_cannot_take_it() -> None:
    # Deleting it then would lose it: it must come back and be forwarded on a later receive.
    result = settle(FakeSQS(fail=True), FakeWriter(), "not json")
    assert not result.settled and result.poison


def test_a_failed_write_is_retried_not_dead_lettered() -> None:
    sqs = FakeSQS()
    result = settle(sqs, FakeWriter(error=TimeoutError("DynamoDB is slow")), encode([event()]))
    assert not result.settled and sqs.sent == []


def test_only_the_unpriceable_events_are_forwarded_and_the_rest_are_written() -> None:
    sqs = FakeSQS()
    kept, gone = event("standard"), event("retired")
    result = settle(sqs, FakeWriter(gone_labels=frozenset({"retired"})), encode([kept, gone]))
    assert result.settled and result.written == 1 and result.rejected_events == 1
    [sent] = sqs.sent
    assert decode(sent["MessageBody"]).events == [gone]
    assert attributes(sent)["error_code"] == "UNKNOWN_MODEL_LABEL"


def test_unpriceable_events_keep_their_message_on_the_queue_if_they_cannot_be_forwarded() -> None:
    # The written events are written again on the retry: duplicates, which the conditional insert makes harmless.
    result = settle(FakeSQS(fail=True), FakeWriter(gone_labels=frozenset({"retired"})), encode([event("retired")]))
    assert not result.settled and result.rejected_events == 1


def test_the_dead_letter_body_of_rejected_events_is_a_valid_message_for_redrive() -> None:
    sqs = FakeSQS()
    settle(sqs, FakeWriter(gone_labels=frozenset({"retired"})), encode([event("retired"), event("retired")]))
    body = json.loads(sqs.sent[0]["MessageBody"])
    assert body["v"] == SCHEMA_VERSION and len(body["events"]) == 2


def test_the_writer_protocol_matches_the_real_writer() -> None:
    # The stand-in is only worth its tests while it answers like UsageWriter.process.
    assert FakeWriter.process.__annotations__ == UsageWriter.process.__annotations__
