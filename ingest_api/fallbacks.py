"""Sticky fallback positions: how far down its ordering an app has fallen today.

Stored in the config table (pk ORG#{org}, sk FALLBACK#{app}#{day}) and only ever raised, by a conditional update;
TTL removes the item two days later.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

RETENTION_S = 2 * 86400


class FallbackStore:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    @staticmethod
    def _key(org_id: str, app_id: str, day: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": f"ORG#{org_id}"}, "sk": {"S": f"FALLBACK#{app_id}#{day}"}}

    async def position(self, org_id: str, app_id: str, day: str) -> int:
        response = await self._ddb.get_item(
            TableName=self._table, Key=self._key(org_id, app_id, day), ConsistentRead=True
        )
        item = response.get("Item")
        return int(item["position"]["N"]) if item else 0

    async def raise_to(self, org_id: str, app_id: str, day: str, position: int) -> None:
        # A failed condition means the position is already at or beyond this one: positions only rise.
        with contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException):
            await self._ddb.update_item(
                TableName=self._table,
                Key=self._key(org_id, app_id, day),
                UpdateExpression="SET #p = :p, expires_at = :exp",
                ConditionExpression="attribute_not_exists(#p) OR #p < :p",
                ExpressionAttributeNames={"#p": "position"},
                ExpressionAttributeValues={
                    ":p": {"N": str(position)},
                    ":exp": {"N": str(int(time.time()) + RETENTION_S)},
                },
            )
