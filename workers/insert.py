"""Insert-if-absent for many items at once: PartiQL INSERT statements, up to 25 per BatchExecuteStatement.

A PartiQL INSERT fails with DuplicateItem when an item with the same key exists: the same condition as PutItem with
attribute_not_exists(pk), so the first write of a key wins and every later one is a no-op. DynamoDB bills each
statement like the PutItem it replaces, but 25 items share one request, and the per-request work (signing,
serialising, HTTP, parsing) was most of the worker's CPU and most of an emulator's.

Each statement succeeds or fails on its own. DuplicateItem is the condition failing and the only error translated;
statements failing for any other reason (throttling, an internal error) are retried a few times with back-off, and
whatever still fails raises, so that the caller's message is delivered again (where the items written meanwhile are
then duplicates: harmless).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import BatchStatementRequestTypeDef

MAX_STATEMENTS_PER_BATCH = 25
DUPLICATE_ITEM = "DuplicateItem"


class InsertFailed(RuntimeError):
    """Some items could be neither inserted nor found already present."""


def insert_statement(table: str, item: dict[str, Any]) -> BatchStatementRequestTypeDef:
    # Attribute names are our own identifiers (the usage item contract), never input; every value is a parameter.
    names = list(item)
    fields = ", ".join(f"'{name}': ?" for name in names)
    return {"Statement": f'INSERT INTO "{table}" VALUE {{{fields}}}', "Parameters": [item[name] for name in names]}


class BatchInserter:
    """One BatchExecuteStatement's worth of inserts (with retries); callers split, order and bound their batches."""

    def __init__(self, ddb: DynamoDBClient, table: str, attempts: int = 4, backoff_s: float = 0.05) -> None:
        self._ddb = ddb
        self._table = table
        self._attempts = attempts
        self._backoff_s = backoff_s
        # BatchExecuteStatement requests made, for request accounting.
        self.requests = 0

    async def insert(self, items: Sequence[dict[str, Any]], key: str = "pk") -> list[bool]:
        """Per item, in order: True if this call inserted it, False if an item with its key was already there.

        At most MAX_STATEMENTS_PER_BATCH items, with distinct keys: one batch may not name a key twice.
        """
        if len(items) > MAX_STATEMENTS_PER_BATCH:
            raise ValueError(f"at most {MAX_STATEMENTS_PER_BATCH} items per batch")
        keys = [item[key]["S"] for item in items]
        if len(set(keys)) != len(keys):
            raise ValueError("items to insert must have distinct keys")
        inserted: list[bool | None] = [None] * len(items)
        pending = list(range(len(items)))
        errors: list[str] = []
        for attempt in range(self._attempts):
            if not pending:
                break
            if attempt:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
            response = await self._ddb.batch_execute_statement(
                Statements=[insert_statement(self._table, items[i]) for i in pending]
            )
            self.requests += 1
            failed: list[int] = []
            errors = []
            for index, outcome in zip(pending, response["Responses"], strict=True):
                error = outcome.get("Error")
                if error is None:
                    inserted[index] = True
                elif error.get("Code") == DUPLICATE_ITEM:
                    inserted[index] = False
                else:
                    failed.append(index)
                    errors.append(f"{error.get('Code')}: {error.get('Message')}")
            pending = failed
        if pending:
            raise InsertFailed(f"{len(pending)} items not written after {self._attempts} attempts; one: {errors[0]}")
        return [bool(i) for i in inserted]
