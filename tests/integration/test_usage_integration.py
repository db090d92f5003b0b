"""What the integration-testing guide says is tested, written with its fixtures against the seeded org and app.

Usage submission (single, batch, several models, a repeated request_id) through the running API; the usage and
aggregates tables read back through aioboto3 (`dynamodb_bridge`): one item per request with every field the worker
writes and the documented key structure, and daily aggregates per app and model equal to the exact sum of the
priced requests, as the aggregates API also reports. Expected costs come from the seed's prices and
`harness.price`, never from the pipeline's own figures.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from infra.seed import SEED_ORG
from tests.integration.guide import Deferred, DynamoDBBridge
from tests.integration.harness import price

pytestmark = pytest.mark.integration

USAGE_ITEM_FIELDS = {
    "pk",
    "schema_version",
    "org_id",
    "app_id",
    "request_id",
    "model_label",
    "bedrock_model_id",
    "timestamp",
    "org_timezone",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd_micros",
    "price_version",
    "accepted_at_ms",
    "written_at_ms",
    "expires_at",
}


def seed_price(label: str) -> Callable[[int, int], int]:
    """The cost of input and output tokens at the seed's prices for this label (round half up, once)."""
    prices = SEED_ORG.models[label].prices
    return lambda i, o: price(i, o, prices.input_per_mtok_usd_micros, prices.output_per_mtok_usd_micros)


def event(label: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "model_label": label,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "timestamp": datetime.now(UTC).isoformat(),
    }


def usage_path(creds: dict[str, str]) -> str:
    return f"/api/v1/orgs/{creds['org_id']}/apps/{creds['app_id']}/usage"


class TestUsageSubmissionIntegration:
    @pytest.mark.asyncio
    async def test_submit_single_usage_to_db(
        self,
        integration_test_client: httpx.Client,
        integration_auth_headers: Deferred[dict[str, str]],
        test_org_credentials: Deferred[dict[str, str]],
        dynamodb_bridge: DynamoDBBridge,
        sample_usage_data: dict[str, Any],
    ) -> None:
        creds = await test_org_credentials
        response = integration_test_client.post(
            usage_path(creds), headers=await integration_auth_headers, json=sample_usage_data
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "accepted", "request_id": sample_usage_data["request_id"]}

        [item] = await dynamodb_bridge.scan("usage")
        # Every field the worker writes, and the key: org, app and request_id, so one tenant cannot claim another's.
        assert set(item) == USAGE_ITEM_FIELDS
        assert item["pk"] == f"{creds['org_id']}#{creds['app_id']}#{sample_usage_data['request_id']}"
        assert (item["org_id"], item["app_id"], item["model_label"]) == (creds["org_id"], creds["app_id"], "premium")
        assert item["bedrock_model_id"] == SEED_ORG.models["premium"].bedrock_model_id
        assert (item["input_tokens"], item["output_tokens"]) == (1000, 500)
        # The client sent no cost: the service priced it (1,000 in at $3/1M + 500 out at $15/1M).
        assert item["cost_usd_micros"] == seed_price("premium")(1000, 500) == 10_500
        assert datetime.fromisoformat(item["timestamp"]) == datetime.fromisoformat(sample_usage_data["timestamp"])

    @pytest.mark.asyncio
    async def test_submit_batch_usage_with_several_models_to_db(
        self,
        integration_test_client: httpx.Client,
        integration_auth_headers: Deferred[dict[str, str]],
        test_org_credentials: Deferred[dict[str, str]],
        dynamodb_bridge: DynamoDBBridge,
    ) -> None:
        creds = await test_org_credentials
        events = [event("premium", 100 * i, 20 * i) for i in range(1, 6)] + [event("standard", 3000, 700)]
        response = integration_test_client.post(
            f"{usage_path(creds)}/batch", headers=await integration_auth_headers, json={"items": events}
        )
        assert response.status_code == 207, response.text
        assert [r["status"] for r in response.json()["results"]] == [202] * len(events)

        items = {i["request_id"]: i for i in await dynamodb_bridge.scan("usage")}
        assert set(items) == {e["request_id"] for e in events}
        for e in events:
            expected = seed_price(e["model_label"])(e["input_tokens"], e["output_tokens"])
            assert items[e["request_id"]]["cost_usd_micros"] == expected, e

    @pytest.mark.asyncio
    async def test_a_repeated_request_id_is_stored_and_counted_once(
        self,
        integration_test_client: httpx.Client,
        integration_auth_headers: Deferred[dict[str, str]],
        test_org_credentials: Deferred[dict[str, str]],
        dynamodb_bridge: DynamoDBBridge,
        sample_usage_data: dict[str, Any],
    ) -> None:
        creds = await test_org_credentials
        headers = await integration_auth_headers
        for _ in range(3):
            response = integration_test_client.post(usage_path(creds), headers=headers, json=sample_usage_data)
            assert response.status_code == 202, response.text

        assert len(await dynamodb_bridge.scan("usage")) == 1
        [aggregate] = await dynamodb_bridge.scan("aggregates")
        assert aggregate["request_count"] == 1


class TestAggregationIntegration:
    @pytest.mark.asyncio
    async def test_daily_aggregates_per_model_are_exact_in_the_table_and_the_api(
        self,
        integration_test_client: httpx.Client,
        integration_auth_headers: Deferred[dict[str, str]],
        test_org_credentials: Deferred[dict[str, str]],
        dynamodb_bridge: DynamoDBBridge,
    ) -> None:
        creds = await test_org_credentials
        headers = await integration_auth_headers
        events = [event("premium", 1234, 567), event("premium", 1, 1), event("standard", 10_000, 2_000)]
        for e in events:
            assert integration_test_client.post(usage_path(creds), headers=headers, json=e).status_code == 202
        expected = {
            label: sum(
                seed_price(label)(e["input_tokens"], e["output_tokens"]) for e in events if e["model_label"] == label
            )
            for label in ("premium", "standard")
        }

        # The table: one item per org-local day, app and model label (pk ORG#org#DAY#day, sk APP#app#MODEL#label).
        day = datetime.now(UTC).date().isoformat()  # the seeded org keeps UTC
        rows = {a["sk"]: a for a in await dynamodb_bridge.scan("aggregates")}
        assert set(rows) == {f"APP#{creds['app_id']}#MODEL#{label}" for label in expected}
        for label, cost in expected.items():
            row = rows[f"APP#{creds['app_id']}#MODEL#{label}"]
            assert row["pk"] == f"ORG#{creds['org_id']}#DAY#{day}"
            assert row["cost_usd_micros"] == cost

        # The API reads the same figures, with the app's quotas beside them.
        response = integration_test_client.get(
            f"/api/v1/orgs/{creds['org_id']}/apps/{creds['app_id']}/aggregates/today", headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert {m["model_label"]: m["cost_usd_micros"] for m in body["models"] if m["request_count"]} == expected
        assert body["total"]["cost_usd_micros"] == sum(expected.values())
