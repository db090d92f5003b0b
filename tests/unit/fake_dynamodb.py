"""An in-memory stand-in for the few DynamoDB calls the aggregator's commit logic makes. Unit tests only.

It implements exactly the semantics that logic relies on, as DynamoDB documents them: a transaction is all or
nothing and, when cancelled, reports a reason per item in request order; a condition is checked against the item as
it was before the request; ADD on a missing attribute starts from 0. Conditions understood: attribute_not_exists(x)
and `x = :value`. The integration tests run the same code against DynamoDB Local.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

Key = tuple[str, str, str]


class ConditionalCheckFailedException(ClientError):
    def __init__(self) -> None:
        super().__init__({"Error": {"Code": "ConditionalCheckFailedException", "Message": "failed"}}, "PutItem")


class FakeDynamoDB:
    class exceptions:
        ConditionalCheckFailedException = ConditionalCheckFailedException

    def __init__(self) -> None:
        self.items: dict[Key, dict[str, Any]] = {}
        self.requests = 0
        # Set to make the next transaction fail on an item for a reason other than its condition (throttling, say).
        self.fail_next_transaction_at: int | None = None

    @staticmethod
    def _key(table: str, key: dict[str, Any]) -> Key:
        return table, key["pk"]["S"], key.get("sk", {}).get("S", "")

    def _holds(self, request: dict[str, Any], key: Key) -> bool:
        condition = request.get("ConditionExpression")
        if condition is None:
            return True
        item = self.items.get(key, {})
        if m := re.fullmatch(r"attribute_not_exists\((\w+)\)", condition):
            return m.group(1) not in item
        if m := re.fullmatch(r"(\w+) = (:\w+)", condition):
            return bool(item.get(m.group(1)) == request["ExpressionAttributeValues"][m.group(2)])
        raise NotImplementedError(condition)

    def _apply_put(self, put: dict[str, Any]) -> None:
        self.items[self._key(put["TableName"], put["Item"])] = dict(put["Item"])

    def _apply_update(self, update: dict[str, Any]) -> None:
        key = self._key(update["TableName"], update["Key"])
        item = self.items.setdefault(key, dict(update["Key"]))
        values = update["ExpressionAttributeValues"]
        adds = update["UpdateExpression"].removeprefix("ADD ").split(" SET ")[0]
        for clause in adds.split(", "):
            name, placeholder = clause.split(" ")
            item[name] = {"N": str(int(item.get(name, {"N": "0"})["N"]) + int(values[placeholder]["N"]))}

    async def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.requests += 1
        item = self.items.get(self._key(TableName, Key))
        return {"Item": dict(item)} if item else {}

    async def put_item(self, **put: Any) -> dict[str, Any]:
        self.requests += 1
        if not self._holds(put, self._key(put["TableName"], put["Item"])):
            raise ConditionalCheckFailedException()
        self._apply_put(put)
        return {}

    async def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.requests += 1
        reasons: list[dict[str, str]] = []
        for index, entry in enumerate(TransactItems):
            [(kind, request)] = entry.items()
            key = self._key(request["TableName"], request["Item"] if kind == "Put" else request["Key"])
            if index == self.fail_next_transaction_at:
                reasons.append({"Code": "ThrottlingError"})
            elif self._holds(request, key):
                reasons.append({"Code": "None"})
            else:
                reasons.append({"Code": "ConditionalCheckFailed"})
        self.fail_next_transaction_at = None
        if any(reason["Code"] != "None" for reason in reasons):
            response: dict[str, Any] = {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": reasons,
            }
            raise ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]
        for entry in TransactItems:
            [(kind, request)] = entry.items()
            self._apply_put(request) if kind == "Put" else self._apply_update(request)
        return {}

    def counter(self, table: str, pk: str, sk: str, name: str) -> int:
        return int(self.items.get((table, pk, sk), {}).get(name, {"N": "0"})["N"])
