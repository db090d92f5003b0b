"""AsyncCostKeeperClient: the asyncio client. Its engine runs on the caller's loop; no thread of its own."""

from __future__ import annotations

import asyncio
import atexit
import logging
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType

from costkeeper_client._engine import ClientStats, Engine
from costkeeper_client._recording import bedrock_event, build_event
from costkeeper_client.bedrock import BedrockResponse
from costkeeper_client.errors import BufferFull
from costkeeper_client.events import DeliveryFailure, UsageEvent
from costkeeper_client.options import ClientOptions
from costkeeper_client.selection import ModelChoice

log = logging.getLogger("costkeeper_client")


class AsyncCostKeeperClient:
    """Posts usage in the background of the running loop and answers which model to use.

    Use `async with`, or await aclose(), to deliver what is buffered. If the loop ends without that (asyncio.run
    returning), the events still held are delivered at interpreter exit on a loop of their own, for at most
    options.exit_timeout_s, with their request_ids unchanged.
    """

    def __init__(
        self, base_url: str, org_id: str, app_id: str, client_secret: str, options: ClientOptions | None = None
    ) -> None:
        self._options = options or ClientOptions()
        self._engine = Engine(base_url, org_id, app_id, client_secret, self._options)
        if self._options.flush_at_exit:
            atexit.register(self._close_at_exit)

    async def record(
        self,
        model_label: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        timestamp: datetime | None = None,
        request_id: str | None = None,
        cache_write_tokens_by_ttl: Mapping[str, int] | None = None,
        service_tier: str | None = None,
    ) -> UsageEvent:
        """Buffer one model call's usage; waits for room only when the buffer is full under when_full="block"."""
        event = build_event(
            model_label,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            timestamp=timestamp,
            request_id=request_id,
            cache_write_tokens_by_ttl=cache_write_tokens_by_ttl,
            service_tier=service_tier,
        )
        return await self.submit(event)

    async def record_bedrock(
        self,
        model_label: str,
        response: BedrockResponse,
        *,
        timestamp: datetime | None = None,
        request_id: str | None = None,
    ) -> UsageEvent:
        """Buffer the usage of a Converse response, a ConverseStream metadata event or an InvokeModel body."""
        return await self.submit(bedrock_event(model_label, response, timestamp, request_id))

    async def submit(self, event: UsageEvent) -> UsageEvent:
        await self._engine.offer_async(event, self._options.block_timeout_s)
        return event

    def submit_nowait(self, event: UsageEvent) -> UsageEvent:
        """Buffer an event from synchronous code on the loop; raises BufferFull rather than wait."""
        self._engine.start()
        if not self._engine.offer(event):
            raise BufferFull(f"{self._options.max_buffered_events} events are buffered")
        return event

    async def choose_model(self) -> ModelChoice:
        """As CostKeeperClient.choose_model()."""
        return await self._engine.choose_model()

    def stats(self) -> ClientStats:
        return self._engine.stats()

    def failures(self) -> list[DeliveryFailure]:
        return self._engine.failures(take=False)

    def take_failures(self) -> list[DeliveryFailure]:
        return self._engine.failures(take=True)

    async def flush(self, timeout_s: float | None = None) -> bool:
        return await self._engine.flush(timeout_s)

    async def aclose(self, timeout_s: float | None = None) -> None:
        atexit.unregister(self._close_at_exit)
        await self._engine.aclose(self._options.close_timeout_s if timeout_s is None else timeout_s)

    async def __aenter__(self) -> AsyncCostKeeperClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _close_at_exit(self) -> None:
        engine = self._engine
        if engine.closed:
            return
        timeout_s = self._options.exit_timeout_s
        try:
            loop = engine.loop
            if loop is not None and loop.is_running() and not engine.on_loop_thread():
                # The loop still runs in another thread: close there, where the deliveries live.
                future = asyncio.run_coroutine_threadsafe(engine.aclose(timeout_s), loop)
                future.result(timeout_s + 5)
            elif engine.has_unsettled():
                asyncio.run(self._close_on_new_loop(timeout_s))
        except Exception:
            log.exception("delivering the cost keeper client's events at exit failed")

    async def _close_on_new_loop(self, timeout_s: float) -> None:
        await self._engine.aclose(timeout_s)
