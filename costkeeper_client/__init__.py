"""Client for Bedrock Cost Keeper: post Bedrock token usage in the background, ask which model to use.

    from costkeeper_client import CostKeeperClient

    with CostKeeperClient("https://costkeeper.example", org_id, app_id, client_secret) as keeper:
        choice = keeper.choose_model()
        response = bedrock.converse(modelId=choice.bedrock_model_id, messages=...)
        keeper.record_bedrock(choice.model_label, response)

AsyncCostKeeperClient is the same for asyncio. Depends on httpx only.
"""

from costkeeper_client._engine import ClientStats
from costkeeper_client.aio import AsyncCostKeeperClient
from costkeeper_client.bedrock import BedrockResponse, BedrockUsage, usage_from_bedrock
from costkeeper_client.client import CostKeeperClient
from costkeeper_client.errors import (
    ApiError,
    AuthenticationFailed,
    BufferFull,
    ClientClosed,
    CostKeeperError,
    InvalidUsage,
    QuotaExceeded,
    ServiceUnavailable,
    UnrecognizedBedrockResponse,
)
from costkeeper_client.events import NOT_SENT_BEFORE_CLOSE, RETRIES_EXHAUSTED, DeliveryFailure, UsageEvent
from costkeeper_client.options import MAX_BATCH_ITEMS, MAX_LINGER_S, ClientOptions, RetryPolicy, WhenFull
from costkeeper_client.selection import LabelStatus, ModelChoice

__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_LINGER_S",
    "NOT_SENT_BEFORE_CLOSE",
    "RETRIES_EXHAUSTED",
    "ApiError",
    "AsyncCostKeeperClient",
    "AuthenticationFailed",
    "BedrockResponse",
    "BedrockUsage",
    "BufferFull",
    "ClientClosed",
    "ClientOptions",
    "ClientStats",
    "CostKeeperClient",
    "CostKeeperError",
    "DeliveryFailure",
    "InvalidUsage",
    "LabelStatus",
    "ModelChoice",
    "QuotaExceeded",
    "RetryPolicy",
    "ServiceUnavailable",
    "UnrecognizedBedrockResponse",
    "UsageEvent",
    "WhenFull",
    "usage_from_bedrock",
]
