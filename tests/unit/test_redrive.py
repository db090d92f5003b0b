"""workers/redrive.py: which dead letters go back by themselves, and which stay for an operator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.unit.factories import ORG_ID, usage
from workers.message import UsageEvent, encode
from workers.pricing import Rejected
from workers.redrive import MAX_AUTO_REDRIVES, DeadLetterRedriver


class FakeQueues:
    """Receives hand out the dead letters once; sends and deletes are recorded."""

    def __init__(self, letters: list[dict[str, Any]]) -> None:
        self.letters = letters
        self.sent: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    async def receive_message(self, **_: Any) -> dict[str, Any]:
        batch, self.letters = self.letters[:10], self.letters[10:]
        return {"Messages": batch}

    async def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return {}

    async def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> dict[str, Any]:
        self.deleted.append(ReceiptHandle)
        return {}


class FakeWriter:
    def __init__(self, priceable: set[str]) -> None:
        self.priceable = priceable

    async def price(self, event: UsageEvent) -> Any:
        return usage() if event.model_label in self.priceable else Rejected(event, "UNKNOWN_MODEL_LABEL")


def letter(name: str, label: str = "premium", code: str | None = None, redrives: int = 0) -> dict[str, Any]:
    now = datetime.now(UTC)
    event = UsageEvent(
        org_id=ORG_ID,
        app_id="chatbot",
        request_id=f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
        model_label=label,
        timestamp=now,
        accepted_at=now,
    )
    attributes: dict[str, Any] = {}
    if code:
        attributes["error_code"] = {"DataType": "String", "StringValue": code}
    if redrives:
        attributes["redrives"] = {"DataType": "Number", "StringValue": str(redrives)}
    return {"MessageId": name, "ReceiptHandle": name, "Body": encode([event]), "MessageAttributes": attributes}


def sweep(letters: list[dict[str, Any]], healthy: bool, priceable: set[str]) -> FakeQueues:
    queues = FakeQueues(letters)
    sqs: Any = queues
    writer: Any = FakeWriter(priceable)
    redriver = DeadLetterRedriver(sqs, writer, "usage-url", "dlq-url", 1.0, lambda: healthy)
    asyncio.run(redriver.sweep())
    return queues


def test_what_goes_back_and_what_stays() -> None:
    letters = [
        letter("stranded"),  # the redrive policy's: no error_code
        letter("label-back", "nova", "UNKNOWN_MODEL_LABEL"),
        letter("label-gone", "retired", "UNKNOWN_MODEL_LABEL"),
        letter("poison", code="POISON_MESSAGE"),
        letter("tired", redrives=MAX_AUTO_REDRIVES),
    ]
    queues = sweep(letters, healthy=True, priceable={"premium", "nova"})
    assert queues.deleted == ["stranded", "label-back"]
    # Sent back with the count of times it was, which the queue's redrive policy carries along.
    assert [s["MessageAttributes"]["redrives"]["StringValue"] for s in queues.sent] == ["1", "1"]
    assert [s["MessageBody"] for s in queues.sent] == [letters[0]["Body"], letters[1]["Body"]]


def test_a_stranded_message_waits_while_writes_still_fail() -> None:
    queues = sweep([letter("stranded", redrives=1)], healthy=False, priceable={"premium"})
    assert queues.sent == [] and queues.deleted == []
    queues = sweep([letter("stranded", redrives=1)], healthy=True, priceable={"premium"})
    assert queues.deleted == ["stranded"]
    assert queues.sent[0]["MessageAttributes"]["redrives"]["StringValue"] == "2"
