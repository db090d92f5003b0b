"""What the integration-testing guide says is tested, written with its fixtures against the seeded org and app.

Usage submission (single, batch, several models, a repeated request_id) through the running API; the usage and
aggregates tables read back through aioboto3 (`dynamodb_bridge`): one item per request with the fields every usage item
carries and the documented key structure, and daily aggregates per app and model equal to the exact sum of the
priced requests, as the aggregates API also reports. Expected costs come from the seed's prices and
`harness.price`, never from the pipeline's own figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from infra.seed import SEED_ORG
from tests.integration.guide import Deferred, DynamoDBBridge
from tests.integration.harness import price, usage

pytestmark = pytest.mark.integration

# What every usage item carries, whatever else a later schema adds.
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


@dataclass(frozen=True)
class SeededApp:
    """The seeded app as the guide's fixtures give it: its ids, a token, and the settling test client."""

    client: httpx.Client
    headers: dict[str, str]
    creds: dict[str, str]

    @property
    def path(self) -> str:
        return f"/api/v1/orgs/{self.creds['org_id']}/apps/{self.creds['app_id']}"

    def post(self, route: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(f"{self.path}/{route}", headers=self.headers, json=body)


@pytest_asyncio.fixture
async def seeded_app(
    integration_test_client: httpx.Client,
    integration_auth_headers: Deferred[dict[str, str]],
    test_org_credentials: Deferred[dict[str, str]],
) -> SeededApp:
    return SeededApp(integration_test_client, await integration_auth_headers, await test_org_credentials)


class TestUsageSubmissionIntegration:
    @pytest.mark.asyncio
    async def test_submit_single_usage_to_db(
        self, seeded_app: SeededApp, dynamodb_bridge: DynamoDBBridge, sample_usage_data: dict[str, Any]
    ) -> None:
        response = seeded_app.post("usage", sample_usage_data)
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "accepted", "request_id": sample_usage_data["request_id"]}

        [item] = await dynamodb_bridge.scan("usage")
        creds = seeded_app.creds
        assert set(item) >= USAGE_ITEM_FIELDS
        # The key: org, app and request_id, so one tenant cannot claim another's request ids.
        assert item["pk"] == f"{creds['org_id']}#{creds['app_id']}#{sample_usage_data['request_id']}"
        assert (item["org_id"], item["app_id"], item["model_label"]) == (creds["org_id"], creds["app_id"], "premium")
        assert item["bedrock_model_id"] == SEED_ORG.models["premium"].bedrock_model_id
        assert (item["input_tokens"], item["output_tokens"]) == (1000, 500)
        # The client sent no cost: the service priced it (1,000 in at $3/1M + 500 out at $15/1M).
        assert item["cost_usd_micros"] == seed_price("premium")(1000, 500) == 10_500
        assert datetime.fromisoformat(item["timestamp"]) == datetime.fromisoformat(sample_usage_data["timestamp"])

    @pytest.mark.asyncio
    async def test_submit_batch_usage_with_several_models_to_db(
        self, seeded_app: SeededApp, dynamodb_bridge: DynamoDBBridge
    ) -> None:
        events = [usage("premium", 100 * i, 20 * i) for i in range(1, 6)] + [usage("standard", 3000, 700)]
        response = seeded_app.post("usage/batch", {"items": events})
        assert response.status_code == 207, response.text
        assert [r["status"] for r in response.json()["results"]] == [202] * len(events)

        items = {i["request_id"]: i for i in await dynamodb_bridge.scan("usage")}
        assert set(items) == {e["request_id"] for e in events}
        for e in events:
            expected = seed_price(e["model_label"])(e["input_tokens"], e["output_tokens"])
            assert items[e["request_id"]]["cost_usd_micros"] == expected, e

    @pytest.mark.asyncio
    async def test_a_repeated_request_id_is_stored_and_counted_once(
        self, seeded_app: SeededApp, dynamodb_bridge: DynamoDBBridge, sample_usage_data: dict[str, Any]
    ) -> None:
        for _ in range(3):
            response = seeded_app.post("usage", sample_usage_data)
            assert response.status_code == 202, response.text

        assert len(await dynamodb_bridge.scan("usage")) == 1
        [aggregate] = await dynamodb_bridge.scan("aggregates")
        assert aggregate["request_count"] == 1


class TestAggregationIntegration:
    @pytest.mark.asyncio
    async def test_daily_aggregates_per_model_are_exact_in_the_table_and_the_api(
        self, seeded_app: SeededApp, dynamodb_bridge: DynamoDBBridge
    ) -> None:
        events = [usage("premium", 1234, 567), usage("premium", 1, 1), usage("standard", 10_000, 2_000)]
        for e in events:
            assert seeded_app.post("usage", e).status_code == 202
        expected = {
            label: sum(
                seed_price(label)(e["input_tokens"], e["output_tokens"]) for e in events if e["model_label"] == label
            )
            for label in ("premium", "standard")
        }

        # The table: one item per org-local day, app and model label (pk ORG#org#DAY#day, sk APP#app#MODEL#label).
        creds = seeded_app.creds
        day = datetime.now(UTC).date().isoformat()  # the seeded org keeps UTC
        rows = {a["sk"]: a for a in await dynamodb_bridge.scan("aggregates")}
        assert set(rows) == {f"APP#{creds['app_id']}#MODEL#{label}" for label in expected}
        for label, cost in expected.items():
            row = rows[f"APP#{creds['app_id']}#MODEL#{label}"]
            assert row["pk"] == f"ORG#{creds['org_id']}#DAY#{day}"
            assert row["cost_usd_micros"] == cost

        # The API reads the same figures, with the app's quotas beside them.
        response = seeded_app.client.get(f"{seeded_app.path}/aggregates/today", headers=seeded_app.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert {m["model_label"]: m["cost_usd_micros"] for m in body["models"] if m["request_count"]} == expected
        assert body["total"]["cost_usd_micros"] == sum(expected.values())
