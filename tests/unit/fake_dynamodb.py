"""An in-memory stand-in for the few DynamoDB calls the aggregator's counting and checkpoints (and the revocation
store's conditional puts) make. Unit tests only.

It implements exactly the semantics that logic relies on, as DynamoDB documents them: an update's condition is checked
against the item as it was before the request, and a refused one raises ConditionalCheckFailedException carrying the
item when ReturnValuesOnConditionCheckFailure is ALL_OLD; ADD on a missing attribute starts from 0; strings compare
by their characters. Expressions understood: `SET a = :v, ...` and `ADD a :v, ...` clauses; conditions made of
attribute_exists(x), attribute_not_exists(x), `x = :v` and `x < :v`, joined by AND / OR (AND binding tighter), with
#names. The integration tests run the same code against DynamoDB Local.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

Key = tuple[str, str, str]


class ConditionalCheckFailedException(ClientError):
    def __init__(self, item: dict[str, Any] | None = None) -> None:
        response: dict[str, Any] = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "failed"}}
        if item is not None:
            response["Item"] = item
        super().__init__(response, "UpdateItem")  # type: ignore[arg-type]


class Unavailable(ClientError):
    def __init__(self) -> None:
        super().__init__({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "UpdateItem")


def _value(value: dict[str, Any]) -> Any:
    [(kind, raw)] = value.items()
    return int(raw) if kind == "N" else raw


class FakeDynamoDB:
    class exceptions:
        ConditionalCheckFailedException = ConditionalCheckFailedException

    def __init__(self) -> None:
        self.items: dict[Key, dict[str, Any]] = {}
        self.requests = 0
        # Set to make that many of the next updates fail for a reason other than their condition (an outage, say).
        self.fail_next_updates = 0
        # Each called before one update (in turn): lets a test play a second writer between a read and a write.
        self.before_update: list[Any] = []

    @staticmethod
    def _key(table: str, key: dict[str, Any]) -> Key:
        return table, key["pk"]["S"], key.get("sk", {}).get("S", "")

    @staticmethod
    def _name(token: str, names: dict[str, str]) -> str:
        return names.get(token, token)

    def _holds(self, request: dict[str, Any], item: dict[str, Any]) -> bool:
        condition = request.get("ConditionExpression")
        if condition is None:
            return True
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})

        def atom(text: str) -> bool:
            text = text.strip()
            if m := re.fullmatch(r"attribute_not_exists\(([#\w]+)\)", text):
                return self._name(m.group(1), names) not in item
            if m := re.fullmatch(r"attribute_exists\(([#\w]+)\)", text):
                return self._name(m.group(1), names) in item
            if m := re.fullmatch(r"([#\w]+) (=|<) (:\w+)", text):
                name = self._name(m.group(1), names)
                if name not in item:
                    return False
                left, right = _value(item[name]), _value(values[m.group(3)])
                return bool(left == right) if m.group(2) == "=" else bool(left < right)
            raise NotImplementedError(text)

        return any(all(atom(a) for a in part.split(" AND ")) for part in condition.split(" OR "))

    def _apply_update(self, request: dict[str, Any], item: dict[str, Any]) -> None:
        names = request.get("ExpressionAttributeNames", {})
        values = request["ExpressionAttributeValues"]
        for verb, clause in re.findall(r"(SET|ADD) (.*?)(?= SET | ADD |$)", request["UpdateExpression"]):
            for part in clause.split(", "):
                if verb == "SET":
                    name, placeholder = (t.strip() for t in part.split(" = "))
                    item[self._name(name, names)] = values[placeholder]
                else:
                    name, placeholder = part.split(" ")
                    name = self._name(name, names)
                    total = int(item.get(name, {"N": "0"})["N"]) + int(values[placeholder]["N"])
                    item[name] = {"N": str(total)}

    async def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.requests += 1
        item = self.items.get(self._key(TableName, Key))
        return {"Item": dict(item)} if item else {}

    async def update_item(self, **request: Any) -> dict[str, Any]:
        self.requests += 1
        if self.before_update:
            self.before_update.pop(0)()
        if self.fail_next_updates:
            self.fail_next_updates -= 1
            raise Unavailable()
        key = self._key(request["TableName"], request["Key"])
        current = self.items.get(key)
        if not self._holds(request, current or {}):
            returned = dict(current) if current and request.get("ReturnValuesOnConditionCheckFailure") else None
            raise ConditionalCheckFailedException(returned)
        item = dict(current) if current else dict(request["Key"])
        self._apply_update(request, item)
        self.items[key] = item
        return {}

    async def put_item(self, **request: Any) -> dict[str, Any]:
        """A whole item, written if its condition holds (the revocation store's conditional puts)."""
        self.requests += 1
        key = self._key(request["TableName"], request["Item"])
        if not self._holds(request, self.items.get(key) or {}):
            raise ConditionalCheckFailedException()
        self.items[key] = dict(request["Item"])
        return {}

    def delete(self, table: str, key: dict[str, Any]) -> None:
        self.items.pop(self._key(table, key), None)

    def counter(self, table: str, pk: str, sk: str, name: str) -> int:
        return int(self.items.get((table, pk, sk), {}).get(name, {"N": "0"})["N"])
