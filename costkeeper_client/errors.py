"""What can go wrong, each named for what went wrong. Every API error carries the API's own code and message."""

from __future__ import annotations

from typing import Any


class CostKeeperError(Exception):
    """The base of every error this client raises."""


class InvalidUsage(CostKeeperError, ValueError):
    """A usage event the API would reject for its shape (negative tokens, a naive timestamp, ...): caught at once."""


class UnrecognizedBedrockResponse(CostKeeperError, ValueError):
    """The object given as a Bedrock response has none of the documented usage shapes."""


class BufferFull(CostKeeperError):
    """record() found the buffer full: at once under when_full="raise", after block_timeout_s under "block"."""


class ClientClosed(CostKeeperError):
    """The client was closed; it records and answers nothing more."""


class ApiError(CostKeeperError):
    """The API answered with an error: {"error": {"code", "message", "details"?}} and an HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s


class AuthenticationFailed(ApiError):
    """/auth/token refused the client id and secret: retrying cannot help until the credentials are fixed."""


class QuotaExceeded(ApiError):
    """Every model in the app's ordering has used its daily quota; retry_after_s says when the day ends."""


class ServiceUnavailable(CostKeeperError):
    """The API could not be reached, or kept answering 429/5xx, for as long as the retry policy allows."""

    def __init__(self, message: str, last_status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.last_status = last_status
        self.retry_after_s = retry_after_s
