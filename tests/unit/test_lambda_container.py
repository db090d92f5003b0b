"""runtime/lambda_container.py: a Lambda container opens its state once, on one loop, and retries a failed opening."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from runtime.lambda_container import ContainerState


class Opened:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closed = False


class Opener:
    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures
        self.opened: list[Opened] = []

    async def __call__(self, stack: AsyncExitStack) -> Opened:
        self.calls += 1
        opened = Opened()

        async def close() -> None:
            opened.closed = True

        # Registered before a failure, as a client entered on the stack would be: it must be closed all the same.
        stack.push_async_callback(close)
        self.opened.append(opened)
        if self.calls <= self.failures:
            raise ConnectionError("endpoint unreachable")
        return opened


async def loop_and_state(state: Opened) -> tuple[asyncio.AbstractEventLoop, Opened]:
    return asyncio.get_running_loop(), state


def test_state_is_opened_once_and_every_invocation_runs_on_its_loop() -> None:
    opener = Opener()
    container = ContainerState(opener)
    first_loop, first = container.run(loop_and_state)
    second_loop, second = container.run(loop_and_state)
    assert opener.calls == 1
    assert first is second
    assert first_loop is second_loop is first.loop
    container.close()
    assert first.closed


def test_a_failed_opening_is_closed_and_retried_by_the_next_invocation() -> None:
    opener = Opener(failures=1)
    container = ContainerState(opener)
    with pytest.raises(ConnectionError):
        container.run(loop_and_state)
    assert opener.opened[0].closed
    _, state = container.run(loop_and_state)
    assert opener.calls == 2
    assert state is opener.opened[1]
    assert not state.closed
    container.close()


def test_close_makes_the_next_invocation_a_cold_start() -> None:
    opener = Opener()
    container = ContainerState(opener)
    loop_before, before = container.run(loop_and_state)
    container.close()
    assert loop_before.is_closed()
    loop_after, after = container.run(loop_and_state)
    assert after is not before
    assert loop_after is not loop_before
    assert opener.calls == 2
    container.close()
