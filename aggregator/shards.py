"""Finding the usage table's stream and listing its shards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient


async def stream_arn_of(ddb: DynamoDBClient, table: str) -> str:
    table_description = (await ddb.describe_table(TableName=table))["Table"]
    arn = table_description.get("LatestStreamArn")
    if not arn:
        raise RuntimeError(f"table {table} has no stream; run `costkeeper init`")
    return arn


async def list_shards(streams: DynamoDBStreamsClient, stream_arn: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamArn": stream_arn}
    while True:
        description = (await streams.describe_stream(**kwargs))["StreamDescription"]
        shards.extend(dict(s) for s in description.get("Shards", []))
        last = description.get("LastEvaluatedShardId")
        if not last:
            return shards
        kwargs["ExclusiveStartShardId"] = last
