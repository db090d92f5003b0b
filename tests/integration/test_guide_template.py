"""The integration-testing guide's "Test Template", as docs/integration-testing.md shows it and as it runs here.

Kept as the guide prints it, with its placeholders filled in and type annotations added (mypy --strict covers the
tests): the endpoint is the seeded app's usage submission (accepted: 202) with the guide's `sample_usage_data`; the
emulator's endpoint, region and the usage table's name come from `dynamodb_bridge`, because the suite runs its own
emulator on test ports under a prefix of its own (the guide's `http://localhost:8000` and
`bedrock-cost-keeper-usage` are what `./scripts/dynamodb.sh setup` makes for you to look at); the scan's result has
a name of its own, as mypy will not let one variable be an HTTP response and then a scan result.
tests/unit/test_docs.py checks that the guide's copy is this file's test, character for character.
"""

from typing import Any

import httpx
import pytest

from tests.integration.guide import Deferred, DynamoDBBridge


# -- the template ----------------------------------------------------------------------------------------------------
@pytest.mark.integration
class TestMyIntegration:
    """Integration tests for my feature."""

    @pytest.mark.asyncio
    async def test_my_feature(
        self,
        integration_test_client: httpx.Client,
        integration_auth_headers: Deferred[dict[str, str]],
        test_org_credentials: Deferred[dict[str, str]],
        dynamodb_bridge: DynamoDBBridge,
        sample_usage_data: dict[str, Any],
    ) -> None:
        """A usage event posted through the API is in the usage table."""
        creds = await test_org_credentials

        # 1. Make API call
        response = integration_test_client.post(
            f"/api/v1/orgs/{creds['org_id']}/apps/{creds['app_id']}/usage",
            headers=await integration_auth_headers,
            json=sample_usage_data,
        )

        assert response.status_code == 202

        # 2. Verify data in DynamoDB
        import aioboto3

        session = aioboto3.Session()

        async with session.resource(
            "dynamodb",
            endpoint_url=dynamodb_bridge.endpoint_url,
            region_name=dynamodb_bridge.region_name,
            aws_access_key_id="fake",
            aws_secret_access_key="fake",
        ) as dynamodb:
            table = await dynamodb.Table(dynamodb_bridge.table_name("usage"))
            scanned = await table.scan()
            items = scanned.get("Items", [])

            # Verify data
            assert len(items) > 0


# -- end of the template ---------------------------------------------------------------------------------------------
