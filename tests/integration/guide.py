"""What the integration-testing guide's fixtures hand a test (docs/integration-testing.md, "Test fixtures").

The guide's tests await two of its fixtures (`creds = await test_org_credentials`); `Deferred` is that awaitable.
`DynamoDBBridge` says where the session's DynamoDB is and what its tables are called, and reads them through
aioboto3 as the guide's template does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aioboto3

from runtime.aws import AwsSettings

T = TypeVar("T")


class Deferred(Generic[T]):
    """An awaitable fixture value: each `await` runs the factory's coroutine.

    Nothing runs until a test awaits it, so a test that never does leaves no un-awaited coroutine behind.
    """

    def __init__(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._factory = factory

    def __await__(self) -> Generator[Any, None, T]:
        return self._factory().__await__()


@dataclass(frozen=True)
class DynamoDBBridge:
    """The session's DynamoDB as the guide's tests reach it: endpoint, region and table names."""

    settings: AwsSettings

    @property
    def endpoint_url(self) -> str | None:
        """The emulator's URL (None on AWS itself, where boto3 finds the endpoint)."""
        return self.settings.endpoints.get("dynamodb")

    @property
    def region_name(self) -> str:
        return self.settings.region

    def table_name(self, table: str) -> str:
        """`usage` -> the session's usage table (the guide's bedrock-cost-keeper-usage under the default prefix)."""
        return f"{self.settings.names.prefix}{table}"

    async def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of one table, as the aioboto3 resource API returns them (numbers as Decimal)."""
        session = aioboto3.Session()
        items: list[dict[str, Any]] = []
        async with session.resource(
            "dynamodb", endpoint_url=self.endpoint_url, region_name=self.region_name
        ) as dynamodb:
            handle = await dynamodb.Table(self.table_name(table))
            kwargs: dict[str, Any] = {}
            while True:
                page = await handle.scan(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
