"""CostKeeperClient: the blocking client, for threaded applications.

Its engine runs on an asyncio loop in a daemon thread of its own; record() only puts the event in the buffer (or
waits for room, under when_full="block"), so callers never wait for the network.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Coroutine, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from costkeeper_client._engine import ClientStats, Engine
from costkeeper_client._recording import bedrock_event, build_event
from costkeeper_client.bedrock import BedrockResponse
from costkeeper_client.errors import ClientClosed
from costkeeper_client.events import DeliveryFailure, UsageEvent
from costkeeper_client.options import ClientOptions
from costkeeper_client.selection import ModelChoice

log = logging.getLogger("costkeeper_client")
T = TypeVar("T")


class CostKeeperClient:
    """Posts usage in the background and answers which model to use. Thread-safe.

    Close it (or use it as a context manager) to deliver what is buffered; at interpreter exit it is closed for at
    most options.exit_timeout_s. Events that cannot be delivered are reported through options.on_failure (called on
    the client's own thread) and listed by failures().
    """

    def __init__(
        self, base_url: str, org_id: str, app_id: str, client_secret: str, options: ClientOptions | None = None
    ) -> None:
        self._options = options or ClientOptions()
        self._engine = Engine(base_url, org_id, app_id, client_secret, self._options)
        self._close_lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="costkeeper-client", daemon=True)
        self._thread.start()
        self._call(self._start(), None)
        if self._options.flush_at_exit:
            atexit.register(self._close_at_exit)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _start(self) -> None:
        self._engine.start()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None) -> T:
        if self._engine.on_loop_thread():
            coroutine.close()
            # An on_failure callback runs on the loop; waiting there for the loop would wait for ever.
            raise RuntimeError("this call cannot be made from the client's own thread (an on_failure callback)")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    # -- recording -----------------------------------------------------------------------------------------------

    def record(
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
        """Buffer one model call's usage for delivery; returns the event with its request_id.

        timestamp defaults to now (UTC); request_id to a new UUID. Raises InvalidUsage for an event the API would
        refuse for its shape, BufferFull or ClientClosed.
        """
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
        return self.submit(event)

    def record_bedrock(
        self,
        model_label: str,
        response: BedrockResponse,
        *,
        timestamp: datetime | None = None,
        request_id: str | None = None,
    ) -> UsageEvent:
        """Buffer the usage of a Converse response, a ConverseStream metadata event or an InvokeModel body."""
        return self.submit(bedrock_event(model_label, response, timestamp, request_id))

    def submit(self, event: UsageEvent) -> UsageEvent:
        """Buffer an event built beforehand (e.g. from usage_from_bedrock(...).to_event(...))."""
        if self._closed:
            raise ClientClosed("the client is closed; this event was not recorded")
        self._engine.offer_blocking(event, self._options.block_timeout_s)
        return event

    # -- reading -------------------------------------------------------------------------------------------------

    def choose_model(self, timeout_s: float | None = None) -> ModelChoice:
        """The model to use now, from the API or from the answer it allows to be kept (Cache-Control max-age).

        Raises QuotaExceeded (with retry_after_s) when every model's quota is used, ServiceUnavailable when the API
        cannot be reached, ApiError for any other refusal.
        """
        cached = self._engine.cached_choice()
        if cached is not None:
            return cached
        if self._closed:
            raise ClientClosed("the client is closed")
        return self._call(self._engine.choose_model(), timeout_s)

    def stats(self) -> ClientStats:
        return self._engine.stats()

    def failures(self) -> list[DeliveryFailure]:
        """The events given up on so far (the newest options.max_failures_kept of them), with the reason."""
        return self._engine.failures(take=False)

    def take_failures(self) -> list[DeliveryFailure]:
        """failures(), and forget them."""
        return self._engine.failures(take=True)

    # -- ending --------------------------------------------------------------------------------------------------

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send what is buffered now; True once as many events have been delivered or reported as had been
        recorded when flush() was called, False if timeout_s passed first."""
        if self._closed:
            return not self._engine.has_unsettled()
        return self._call(self._engine.flush(timeout_s), None)

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is buffered (for at most timeout_s, default options.close_timeout_s), report what could not
        be, and stop. Idempotent."""
        if self._engine.on_loop_thread():
            raise RuntimeError("close() cannot be called from the client's own thread (an on_failure callback)")
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._close_at_exit)
        timeout_s = self._options.close_timeout_s if timeout_s is None else timeout_s
        try:
            self._call(self._engine.aclose(timeout_s), None)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def _close_at_exit(self) -> None:
        try:
            self.close(self._options.exit_timeout_s)
        except Exception:
            log.exception("closing the cost keeper client at exit failed")

    def __enter__(self) -> CostKeeperClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
