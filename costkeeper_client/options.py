"""How the client batches, waits, retries and gives up. Every duration carries its unit in its name."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

from costkeeper_client.events import DeliveryFailure

MAX_BATCH_ITEMS = 100  # the API's limit per POST .../usage/batch
MAX_LINGER_S = 0.05

WhenFull = Literal["block", "raise"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter, bounded by attempts and by time since the first attempt.

    The n-th retry waits half of min(max_delay_s, initial_delay_s * 2**(n-1)) plus a random part of the other half
    ("equal jitter": clients that failed together do not retry together, and the wait still grows). A Retry-After
    from the API (429, 503) is a floor: the client never comes back sooner than it was asked to.
    """

    initial_delay_s: float = 0.1
    max_delay_s: float = 5.0
    max_attempts: int = 12
    give_up_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s:
            raise ValueError("need 0 <= initial_delay_s <= max_delay_s")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.give_up_after_s < 0:
            raise ValueError("give_up_after_s must be non-negative")

    def delay_s(self, retry: int, jitter: float, retry_after_s: float | None = None) -> float:
        """The wait before retry number `retry` (1 for the first retry), jitter in [0, 1)."""
        ceiling = min(self.max_delay_s, self.initial_delay_s * 2.0 ** (retry - 1))
        delay = ceiling / 2 + jitter * ceiling / 2
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay


def _monotonic() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class ClientOptions:
    """Everything but the identity. The defaults suit an application posting from a few threads.

    Buffer: at most max_buffered_events events are held (waiting for a batch, in flight, or being retried). When it
    is full, record() blocks until there is room (when_full="block"; after block_timeout_s it raises BufferFull) or
    raises BufferFull at once (when_full="raise"). Nothing is ever dropped silently: every event is either delivered
    or reported through on_failure and failures().

    Batching: a batch leaves when it holds max_batch_items events or linger_s after its oldest event was recorded,
    whichever is first; at most max_in_flight batches are posted at a time.

    clock, sleep and jitter exist so that tests can drive time; transport so they can answer for the API.
    """

    client_id: str | None = None  # default: the app's own, org-{org_id}-app-{app_id}
    max_batch_items: int = MAX_BATCH_ITEMS
    linger_s: float = MAX_LINGER_S
    max_buffered_events: int = 10_000
    when_full: WhenFull = "block"
    block_timeout_s: float | None = None
    max_in_flight: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    request_timeout_s: float = 10.0
    # Token refresh starts this long before the access token expires (at most a tenth of its lifetime).
    token_refresh_margin_s: float = 60.0
    close_timeout_s: float = 30.0
    flush_at_exit: bool = True
    exit_timeout_s: float = 10.0
    on_failure: Callable[[DeliveryFailure], None] | None = None
    # Failure reports kept for failures(); older ones are counted in stats() but no longer listed.
    max_failures_kept: int = 10_000
    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = _monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_items <= MAX_BATCH_ITEMS:
            raise ValueError(f"max_batch_items must be 1 to {MAX_BATCH_ITEMS}")
        if not 0 <= self.linger_s <= MAX_LINGER_S:
            raise ValueError(f"linger_s must be 0 to {MAX_LINGER_S}")
        if self.max_buffered_events < self.max_batch_items:
            raise ValueError("max_buffered_events must hold at least one full batch")
        if self.when_full not in ("block", "raise"):
            raise ValueError('when_full must be "block" or "raise"')
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        for name in ("request_timeout_s", "close_timeout_s", "exit_timeout_s", "token_refresh_margin_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
