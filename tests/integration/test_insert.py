"""workers/insert.py and the worker's writes against the real emulator: insert-if-absent, 25 items per request."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from catalog.model import OrgSettings
from catalog.store import CatalogStore
from runtime.aws import AwsSettings, open_async_clients
from workers.insert import BatchInserter
from workers.message import UsageEvent, UsageMessage
from workers.processor import UsageWriter
from workers.settings import WorkerSettings

pytestmark = pytest.mark.integration


def item(pk: str, version: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "version": {"N": str(version)}, "note": {"S": "bench 'quoted' \" text"}}


def stored(settings: AwsSettings, pk: str) -> dict[str, Any] | None:
    response = settings.dynamodb().get_item(
        TableName=settings.names.usage_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    return response.get("Item")


def test_new_items_are_inserted_and_existing_ones_left_as_they_were(aws_settings: AwsSettings) -> None:
    keys = [f"insert-test#{uuid.uuid4()}" for _ in range(35)]

    async def run() -> tuple[list[bool], list[bool], int]:
        async with open_async_clients(aws_settings) as clients:
            inserter = BatchInserter(clients.dynamodb, aws_settings.names.usage_table)
            first = await inserter.insert([item(k, 1) for k in keys[:25]])
            # 15 already there (with version 1), 10 new: the first write of a key wins.
            second = await inserter.insert([item(k, 2) for k in keys[10:35]])
            return first, second, inserter.requests

    first, second, requests = asyncio.run(run())
    assert first == [True] * 25
    assert second == [False] * 15 + [True] * 10
    assert requests == 2
    assert stored(aws_settings, keys[0]) == item(keys[0], 1)
    assert stored(aws_settings, keys[20]) == item(keys[20], 1)
    assert stored(aws_settings, keys[30]) == item(keys[30], 2)


def test_a_batch_is_refused_before_any_request_if_it_names_a_key_twice_or_is_too_big(aws_settings: AwsSettings) -> None:
    key = f"insert-test#{uuid.uuid4()}"

    async def run() -> int:
        async with open_async_clients(aws_settings) as clients:
            inserter = BatchInserter(clients.dynamodb, aws_settings.names.usage_table)
            with pytest.raises(ValueError, match="distinct keys"):
                await inserter.insert([item(key, 1), item(key, 2)])
            with pytest.raises(ValueError, match="at most 25"):
                await inserter.insert([item(f"{key}-{i}", 1) for i in range(26)])
            return inserter.requests

    assert asyncio.run(run()) == 0
    assert stored(aws_settings, key) is None


def test_a_message_holding_one_request_twice_writes_it_once_and_other_tenants_ids_are_their_own(
    aws_settings: AwsSettings,
) -> None:
    org_id, other_org_id = str(uuid.uuid4()), str(uuid.uuid4())
    settings = OrgSettings.model_validate(
        {
            "models": {
                "standard": {
                    "bedrock_model_id": "anthropic.claude-haiku",
                    "prices": {"input_per_mtok_usd_micros": 800_000, "output_per_mtok_usd_micros": 4_000_000},
                }
            },
            "model_ordering": ["standard"],
        }
    )
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC)

    def event(org: str, input_tokens: int, request: str = request_id) -> UsageEvent:
        return UsageEvent(
            org_id=org,
            app_id="app-one",
            request_id=request,
            model_label="standard",
            input_tokens=input_tokens,
            output_tokens=10,
            timestamp=now,
            accepted_at=now,
        )

    async def run() -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        async with open_async_clients(aws_settings) as clients:
            catalog = CatalogStore(clients.dynamodb, aws_settings.names.config_table, 0.0)
            await catalog.put_org(org_id, settings)
            await catalog.put_org(other_org_id, settings)
            writer = UsageWriter(WorkerSettings(aws=aws_settings), clients.dynamodb, catalog)
            message = UsageMessage(events=[event(org_id, 1000), event(org_id, 9999), event(other_org_id, 5)])
            outcome = await writer.process(message)
            again = await writer.process(message)
            # A big message goes out 25 items to a request.
            requests_before = writer.write_requests
            big = UsageMessage(events=[event(org_id, 1, str(uuid.uuid4())) for _ in range(60)])
            written = (await writer.process(big)).written
            return (
                (outcome.written, outcome.duplicates),
                (again.written, again.duplicates),
                (written, writer.write_requests - requests_before),
            )

    first, redelivered, big = asyncio.run(run())
    # Two items (one per tenant), the repeat within the message a duplicate; a redelivery writes nothing.
    assert first == (2, 1)
    assert redelivered == (0, 3)
    assert big == (60, 3)
    mine = stored(aws_settings, f"{org_id}#app-one#{request_id}")
    theirs = stored(aws_settings, f"{other_org_id}#app-one#{request_id}")
    assert mine is not None
    assert theirs is not None
    assert mine["input_tokens"] == {"N": "1000"}  # the first in the message won
    assert theirs["input_tokens"] == {"N": "5"}
