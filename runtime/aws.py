"""Where the AWS APIs are and how a process opens its clients.

Endpoints are chosen with the standard per-service variables (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_DYNAMODB,
AWS_ENDPOINT_URL_DYNAMODB_STREAMS), which botocore and aiobotocore read themselves; this module only reports them
and opens every client a process needs exactly once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from runtime.env import overrides
from runtime.resources import DEFAULT_PREFIX, ResourceNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_sqs import SQSClient
    from types_aiobotocore_dynamodb import DynamoDBClient as AsyncDynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient as AsyncStreamsClient
    from types_aiobotocore_sqs import SQSClient as AsyncSQSClient

ENDPOINT_VARIABLES = {
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "dynamodbstreams": "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
}


@dataclass(frozen=True)
class AwsSettings:
    region: str
    names: ResourceNames
    endpoints: Mapping[str, str] = field(default_factory=dict)
    max_pool_connections: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AwsSettings:
        env = os.environ if env is None else env
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoints = {svc: env[var] for svc, var in ENDPOINT_VARIABLES.items() if env.get(var)}
        return cls(
            region=region,
            names=ResourceNames(env.get("CK_RESOURCE_PREFIX", DEFAULT_PREFIX)),
            endpoints=endpoints,
            **overrides(env, {"CK_AWS_MAX_POOL_CONNECTIONS": ("max_pool_connections", int)}),
        )

    def botocore_config(self) -> Config:
        # Standard retry mode backs off on throttling; the processes add their own bounded retries on top.
        return Config(
            region_name=self.region,
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=self.max_pool_connections,
            connect_timeout=5,
            read_timeout=30,
        )

    def client_kwargs(self, service: str) -> dict[str, Any]:
        # Passing the endpoint explicitly as well keeps older botocore releases (which ignore the per-service
        # variables) pointed at the same place.
        kwargs: dict[str, Any] = {"region_name": self.region, "config": self.botocore_config()}
        if service in self.endpoints:
            kwargs["endpoint_url"] = self.endpoints[service]
        return kwargs

    # Synchronous clients, for the operator CLI and the seed/init commands.
    def dynamodb(self) -> DynamoDBClient:
        return boto3.client("dynamodb", **self.client_kwargs("dynamodb"))

    def sqs(self) -> SQSClient:
        return boto3.client("sqs", **self.client_kwargs("sqs"))

    def streams(self) -> DynamoDBStreamsClient:
        return boto3.client("dynamodbstreams", **self.client_kwargs("dynamodbstreams"))


@dataclass
class AsyncClients:
    """The aiobotocore clients of one process, opened once at start-up and closed at shutdown."""

    dynamodb: AsyncDynamoDBClient
    sqs: AsyncSQSClient
    streams: AsyncStreamsClient


@asynccontextmanager
async def open_async_clients(settings: AwsSettings) -> AsyncIterator[AsyncClients]:
    session = get_session()
    async with AsyncExitStack() as stack:
        dynamodb = await stack.enter_async_context(
            session.create_client("dynamodb", **settings.client_kwargs("dynamodb"))
        )
        sqs = await stack.enter_async_context(session.create_client("sqs", **settings.client_kwargs("sqs")))
        streams = await stack.enter_async_context(
            session.create_client("dynamodbstreams", **settings.client_kwargs("dynamodbstreams"))
        )
        yield AsyncClients(dynamodb=dynamodb, sqs=sqs, streams=streams)


def condition_failed(exc: ClientError) -> bool:
    """A conditional write refused because its condition did not hold: the one error a conditional writer expects."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
