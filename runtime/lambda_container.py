"""What a Lambda container keeps between invocations: one event loop and the async clients opened on it.

Lambda reuses a container for many invocations, one at a time. Opening clients (TLS connections, credential
resolution) on every invocation would cost more than the work itself, and aiobotocore clients are bound to the loop
they were opened on, so the loop lives as long as the container and every invocation runs on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ContainerState(Generic[T]):
    """Lazily opened on the first invocation; a failed opening is not kept, so the next invocation tries again."""

    def __init__(self, open_state: Callable[[AsyncExitStack], Awaitable[T]]) -> None:
        self._open_state = open_state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: AsyncExitStack | None = None
        self._state: T | None = None

    def run(self, work: Callable[[T], Awaitable[R]]) -> R:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._state is None:
            self._state = self._loop.run_until_complete(self._open())
        return self._loop.run_until_complete(work(self._state))

    async def _open(self) -> T:
        stack = AsyncExitStack()
        try:
            state = await self._open_state(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return state

    def close(self) -> None:
        """Close the clients and the loop; the next `run` opens them again, as a cold start would."""
        if self._loop is None:
            return
        if self._stack is not None:
            self._loop.run_until_complete(self._stack.aclose())
        self._loop.close()
        self._loop, self._stack, self._state = None, None, None
