"""Secrets an admin can hand over as a link that works once.

Opt-in (`?one_time_link=true` on provisioning and rotation): the secret is then parked under a random claim token in
the one-time-secrets table, TTL-limited, instead of being shown in the response. The first POST of the claim deletes
it, with ReturnValues=ALL_OLD, so two concurrent claims cannot both receive it.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


class OneTimeSecrets:
    def __init__(self, ddb: DynamoDBClient, table: str, ttl_s: int) -> None:
        self._ddb = ddb
        self._table = table
        self._ttl_s = ttl_s

    async def park(self, client_id: str, client_secret: str) -> tuple[str, int]:
        claim = secrets.token_urlsafe(32)
        expires_at = int(time.time()) + self._ttl_s
        await self._ddb.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": claim},
                "client_id": {"S": client_id},
                "client_secret": {"S": client_secret},
                "expires_at": {"N": str(expires_at)},
            },
        )
        return claim, expires_at

    async def claim(self, claim: str) -> tuple[str, str] | None:
        response = await self._ddb.delete_item(TableName=self._table, Key={"pk": {"S": claim}}, ReturnValues="ALL_OLD")
        item = response.get("Attributes")
        # TTL deletion lags expiry by up to days on AWS: an expired claim must not work meanwhile.
        if not item or int(item["expires_at"]["N"]) < time.time():
            return None
        return item["client_id"]["S"], item["client_secret"]["S"]
