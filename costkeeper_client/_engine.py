"""The machinery both clients share: a bounded buffer, a batcher, deliveries with retries, model selection.

It runs on one asyncio loop: the caller's for AsyncCostKeeperClient, a private thread's for CostKeeperClient. Only
offer()/offer_blocking(), stats() and failures() are called from other threads; they take self._lock, and wake the
loop with call_soon_threadsafe. Everything else runs on the loop.

Every recorded event is counted in _unsettled until it is settled: delivered (202) or reported as a failure. The
buffer bound is on _unsettled, so events being retried hold their place and memory stays bounded however long the
API is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from costkeeper_client._auth import TokenManager
from costkeeper_client._http import RETRYABLE_STATUSES, api_error, max_age_s, retry_after_s
from costkeeper_client.errors import (
    ApiError,
    AuthenticationFailed,
    BufferFull,
    ClientClosed,
    QuotaExceeded,
    ServiceUnavailable,
)
from costkeeper_client.events import NOT_SENT_BEFORE_CLOSE, RETRIES_EXHAUSTED, DeliveryFailure, UsageEvent
from costkeeper_client.options import ClientOptions
from costkeeper_client.selection import ModelChoice, SelectionCache

log = logging.getLogger("costkeeper_client")

USER_AGENT = "costkeeper-client/0.1"
# Reads (model selection) are on the caller's path: a few quick attempts, then the caller decides.
READ_ATTEMPTS = 3
_MIN_WAIT_S = 1e-6


@dataclass(frozen=True)
class ClientStats:
    recorded: int
    delivered: int
    failed: int
    buffered: int  # recorded, waiting for a batch
    in_flight: int  # in a batch being posted or retried
    retries: int
    batches_posted: int
    token_requests: int
    refresh_requests: int


@dataclass
class _Problem:
    """Why the last attempt did not deliver: what a failure reports if the retries run out."""

    code: str
    message: str
    status: int | None = None
    details: Any = None


@dataclass
class _Outcome:
    delivered: int = 0
    failures: list[DeliveryFailure] = field(default_factory=list)
    retry: list[UsageEvent] = field(default_factory=list)
    retry_after_s: float | None = None
    problem: _Problem | None = None


class Engine:
    def __init__(self, base_url: str, org_id: str, app_id: str, client_secret: str, options: ClientOptions) -> None:
        self._base_url = base_url.rstrip("/")
        self._options = options
        app_path = f"/api/v1/orgs/{org_id}/apps/{app_id}"
        self._batch_path = f"{app_path}/usage/batch"
        self._selection_path = f"{app_path}/model-selection"
        client_id = options.client_id or f"org-{org_id}-app-{app_id}"
        self._auth = TokenManager(client_id, client_secret, options.clock, options.token_refresh_margin_s)
        self._selection = SelectionCache()

        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._pending: deque[tuple[UsageEvent, float]] = deque()
        self._unsettled = 0
        self._closing = False
        self._closed = False
        self._flushes = 0
        self._recorded = 0
        self._delivered = 0
        self._failed = 0
        self._retries = 0
        self._batches = 0
        self._failures: deque[DeliveryFailure] = deque(maxlen=options.max_failures_kept)

        # Bound to the loop by start().
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._http: httpx.AsyncClient | None = None
        self._wake: asyncio.Event | None = None
        self._settled: asyncio.Event | None = None
        self._space_async: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._selection_lock: asyncio.Lock | None = None
        self._batcher_task: asyncio.Task[None] | None = None
        self._close_deadline: float | None = None
        # What each running delivery still holds, so that a loop that dies under it loses none of it.
        self._in_flight: dict[asyncio.Task[Any], list[UsageEvent]] = {}

    # -- lifecycle (on the loop) ---------------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def on_loop_thread(self) -> bool:
        return self._loop_thread == threading.get_ident()

    def start(self) -> None:
        """Bind to the running loop and start the batcher; again on a new loop if the old one is gone."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._batcher_task is not None and not self._batcher_task.done():
            return
        if self._closed:
            raise ClientClosed("the client is closed")
        with self._lock:
            # Deliveries of a loop that ended without close() (asyncio.run returning, say) were cancelled and put
            # their events back; any that never got to run are put back here. Their request_ids are unchanged, so
            # whatever reached the API before is not counted twice.
            for held in self._in_flight.values():
                self._pending.extendleft((event, self._options.clock()) for event in reversed(held))
            self._in_flight.clear()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=self._options.request_timeout_s,
            transport=self._options.transport,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=self._options.max_in_flight + 2),
        )
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._space_async = asyncio.Event()
        self._slots = asyncio.Semaphore(self._options.max_in_flight)
        self._selection_lock = asyncio.Lock()
        self._auth.bind_to_running_loop()
        self._batcher_task = loop.create_task(self._batcher(), name="costkeeper-batcher")
        if self._pending:
            self._wake.set()

    async def flush(self, timeout_s: float | None) -> bool:
        """Send what is buffered without lingering; True once as many events have settled as had been recorded."""
        self.start()
        assert self._settled is not None
        with self._lock:
            target = self._recorded
            self._flushes += 1
        self._wake_batcher()
        try:
            return await self._wait_settled(lambda: self._delivered + self._failed >= target, timeout_s)
        finally:
            with self._lock:
                self._flushes -= 1

    async def aclose(self, timeout_s: float) -> None:
        """Deliver everything still buffered, for at most timeout_s; report whatever is left as not sent."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            # Recorders waiting for room get ClientClosed now rather than at the next settle.
            self._space.notify_all()
            never_started = self._batcher_task is None and not self._pending
        if never_started:
            self._closed = True
            return
        # On the loop this is awaited in: the one it last ran on may have ended (asyncio.run returning).
        self.start()
        assert self._space_async is not None
        self._space_async.set()
        loop = asyncio.get_running_loop()
        self._close_deadline = loop.time() + timeout_s
        self._wake_batcher()
        await self._wait_settled(lambda: self._unsettled == 0, timeout_s)
        assert self._batcher_task is not None
        self._batcher_task.cancel()
        deliveries = list(self._in_flight)
        for task in deliveries:
            task.cancel()
        await asyncio.gather(self._batcher_task, *deliveries, return_exceptions=True)
        with self._lock:
            leftovers = [event for event, _ in self._pending]
            self._pending.clear()
        self._settle(
            0,
            [
                DeliveryFailure(e, NOT_SENT_BEFORE_CLOSE, "the client closed before this event was sent")
                for e in leftovers
            ],
        )
        if self._http is not None:
            await self._http.aclose()
        self._closed = True

    async def _wait_settled(self, done: Callable[[], bool], timeout_s: float | None) -> bool:
        # Deadlines here are the loop's real time, not options.clock: they bound how long a caller waits, while the
        # injected clock drives back-off and linger (which tests fast-forward).
        assert self._settled is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            self._settled.clear()
            if done():
                return True
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._settled.wait(), remaining)
            except TimeoutError:
                return done()

    # -- recording (any thread) ----------------------------------------------------------------------------------

    def offer(self, event: UsageEvent) -> bool:
        """Buffer the event if there is room; False if the buffer is full."""
        with self._lock:
            if self._closing:
                raise ClientClosed("the client is closed; this event was not recorded")
            if self._unsettled >= self._options.max_buffered_events:
                return False
            self._admit_locked(event)
        return True

    def offer_blocking(self, event: UsageEvent, timeout_s: float | None) -> None:
        """offer(), waiting for room under when_full="block" (for threads other than the loop's)."""
        if self.offer(event):
            return
        if self._options.when_full == "raise" or self.on_loop_thread():
            # On the loop's own thread (an on_failure callback) waiting would stop the deliveries that make room.
            raise BufferFull(f"{self._options.max_buffered_events} events are buffered")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._space:
            while True:
                if self._closing:
                    raise ClientClosed("the client is closed; this event was not recorded")
                if self._unsettled < self._options.max_buffered_events:
                    self._admit_locked(event)
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise BufferFull(f"the buffer stayed full for {timeout_s}s")
                self._space.wait(remaining)

    async def offer_async(self, event: UsageEvent, timeout_s: float | None) -> None:
        """offer(), waiting for room under when_full="block" without blocking the loop."""
        self.start()
        if self.offer(event):
            return
        if self._options.when_full == "raise":
            raise BufferFull(f"{self._options.max_buffered_events} events are buffered")
        assert self._space_async is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            # Cleared before the second look: a settle between the two sets it again, so no wake-up is lost.
            self._space_async.clear()
            if self.offer(event):
                return
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise BufferFull(f"the buffer stayed full for {timeout_s}s")
            try:
                await asyncio.wait_for(self._space_async.wait(), remaining)
            except TimeoutError:
                continue

    def _admit_locked(self, event: UsageEvent) -> None:
        self._pending.append((event, self._options.clock()))
        self._unsettled += 1
        self._recorded += 1
        waiting = len(self._pending)
        # The batcher needs waking only to start a linger (first event) or to end one early (a full batch).
        if waiting == 1 or waiting == self._options.max_batch_items:
            self._wake_batcher()

    def _wake_batcher(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return  # not started: start() looks at the buffer
        if self.on_loop_thread():
            wake.set()
            return
        # A closed loop refuses: the exit handler then drains the buffer on a new one.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    # -- what the callers read (any thread) ----------------------------------------------------------------------

    def stats(self) -> ClientStats:
        with self._lock:
            buffered = len(self._pending)
            return ClientStats(
                recorded=self._recorded,
                delivered=self._delivered,
                failed=self._failed,
                buffered=buffered,
                in_flight=self._unsettled - buffered,
                retries=self._retries,
                batches_posted=self._batches,
                token_requests=self._auth.token_requests,
                refresh_requests=self._auth.refresh_requests,
            )

    def failures(self, take: bool) -> list[DeliveryFailure]:
        with self._lock:
            kept = list(self._failures)
            if take:
                self._failures.clear()
        return kept

    def has_unsettled(self) -> bool:
        with self._lock:
            return self._unsettled > 0

    def cached_choice(self) -> ModelChoice | None:
        return self._selection.lookup(self._options.clock())

    # -- batching and delivery (on the loop) ---------------------------------------------------------------------

    async def _batcher(self) -> None:
        assert self._wake is not None
        assert self._slots is not None
        opts = self._options
        while True:
            self._wake.clear()
            with self._lock:
                waiting = len(self._pending)
                oldest_at = self._pending[0][1] if waiting else 0.0
                hurry = self._closing or self._flushes > 0
            if waiting == 0:
                if self._closing:
                    return
                await self._wake.wait()
                continue
            if waiting < opts.max_batch_items and not hurry:
                linger_left_s = opts.linger_s - (opts.clock() - oldest_at)
                # Float clocks leave crumbs (5e-14 s) after a linger: not worth another wake-up.
                if linger_left_s > _MIN_WAIT_S:
                    await self._wake_or_sleep(linger_left_s)
                    continue
            await self._slots.acquire()
            with self._lock:
                size = min(len(self._pending), opts.max_batch_items)
                batch = [self._pending.popleft()[0] for _ in range(size)]
            if not batch:
                self._slots.release()
                continue
            self._batches += 1
            task = asyncio.get_running_loop().create_task(self._deliver(batch))
            self._in_flight[task] = batch

    async def _wake_or_sleep(self, delay_s: float) -> None:
        assert self._wake is not None
        woken = asyncio.ensure_future(self._wake.wait())
        slept = asyncio.ensure_future(self._sleep(delay_s))
        try:
            await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            slept.cancel()

    async def _sleep(self, delay_s: float) -> None:
        await self._options.sleep(delay_s)

    async def _deliver(self, batch: list[UsageEvent]) -> None:
        """Post the batch until every event in it is delivered or reported; retries carry the same request_ids."""
        assert self._slots is not None
        opts = self._options
        task = asyncio.current_task()
        assert task is not None
        remaining = batch
        attempts = 0
        started_at = opts.clock()
        try:
            while remaining:
                attempts += 1
                outcome = await self._post_once(remaining, attempts)
                self._settle(outcome.delivered, outcome.failures)
                remaining = outcome.retry
                self._in_flight[task] = remaining
                if not remaining:
                    break
                problem = outcome.problem or _Problem("UNKNOWN", "the API did not settle these events")
                delay_s = opts.retry.delay_s(attempts, opts.jitter(), outcome.retry_after_s)
                give_up: tuple[str, str] | None = None
                if (
                    attempts >= opts.retry.max_attempts
                    or opts.clock() - started_at + delay_s > opts.retry.give_up_after_s
                ):
                    give_up = (RETRIES_EXHAUSTED, f"gave up after {attempts} attempts; last: {problem.message}")
                elif self._close_deadline is not None and self._loop_time() + delay_s > self._close_deadline:
                    give_up = (NOT_SENT_BEFORE_CLOSE, f"closing, and the next attempt is {delay_s:.2f}s away")
                if give_up is not None:
                    code, message = give_up
                    self._settle(
                        0,
                        [
                            DeliveryFailure(e, code, message, problem.status, {"last_error": problem.code}, attempts)
                            for e in remaining
                        ],
                    )
                    remaining = []
                    self._in_flight[task] = remaining
                    break
                with self._lock:
                    self._retries += 1
                log.debug("retrying %d events in %.2fs after %s", len(remaining), delay_s, problem.code)
                await self._sleep(delay_s)
        except Exception as exc:
            # A fault of this client (not of the API): the events are reported, never left unsettled for ever.
            log.exception("delivery failed unexpectedly")
            message = f"{type(exc).__name__}: {exc}"
            self._settle(0, [DeliveryFailure(e, "CLIENT_ERROR", message, attempts=attempts) for e in remaining])
        except asyncio.CancelledError:
            if self._closing:
                message = "the client closed before this event was delivered"
                self._settle(
                    0, [DeliveryFailure(e, NOT_SENT_BEFORE_CLOSE, message, attempts=attempts) for e in remaining]
                )
            else:
                # The loop is going away without close(): keep the events for the exit handler (or a new loop).
                with self._lock:
                    self._pending.extendleft((event, opts.clock()) for event in reversed(remaining))
            raise
        finally:
            self._in_flight.pop(task, None)
            self._slots.release()

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    async def _post_once(self, events: list[UsageEvent], attempts: int) -> _Outcome:
        assert self._http is not None
        http = self._http
        try:
            token = await self._auth.access_token(http)
            response = await self._post_batch(token, events)
            if response.status_code == 401:
                # Expired early or revoked: renew once, now, rather than wait for a back-off.
                self._auth.invalidate(token)
                token = await self._auth.access_token(http)
                response = await self._post_batch(token, events)
        except AuthenticationFailed as exc:
            return self._fail_all(events, _Problem(exc.code, exc.message, exc.status, exc.details), attempts)
        except ApiError as exc:
            problem = _Problem(exc.code, exc.message, exc.status, exc.details)
            if exc.status in RETRYABLE_STATUSES:
                return _Outcome(retry=list(events), retry_after_s=exc.retry_after_s, problem=problem)
            return self._fail_all(events, problem, attempts)
        except httpx.RequestError as exc:
            problem = _Problem("CONNECTION_ERROR", f"{type(exc).__name__}: {exc}".rstrip(": "))
            return _Outcome(retry=list(events), problem=problem)
        if response.status_code == 207:
            return self._read_results(events, response, attempts)
        error = api_error(response)
        problem = _Problem(error.code, error.message, error.status, error.details)
        if response.status_code in RETRYABLE_STATUSES:
            return _Outcome(retry=list(events), retry_after_s=retry_after_s(response), problem=problem)
        return self._fail_all(events, problem, attempts)

    async def _post_batch(self, token: str, events: Sequence[UsageEvent]) -> httpx.Response:
        assert self._http is not None
        return await self._http.post(
            self._batch_path,
            json={"items": [event.api_item() for event in events]},
            headers={"Authorization": f"Bearer {token}"},
        )

    @staticmethod
    def _fail_all(events: Sequence[UsageEvent], problem: _Problem, attempts: int) -> _Outcome:
        failures = [
            DeliveryFailure(e, problem.code, problem.message, problem.status, problem.details, attempts) for e in events
        ]
        return _Outcome(failures=failures, problem=problem)

    @staticmethod
    def _read_results(events: list[UsageEvent], response: httpx.Response, attempts: int) -> _Outcome:
        """A 207: 202 items are delivered, 422 items reported (the same item would be refused again), any other
        item, or one the answer does not mention, is retried (safe: the API dedups by request_id)."""
        try:
            results = response.json()["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            problem = _Problem("MALFORMED_BATCH_RESPONSE", f"unreadable 207 answer: {exc}", 207)
            return _Outcome(retry=list(events), problem=problem)
        outcome = _Outcome()
        settled: set[int] = set()
        for result in results:
            index = result.get("index") if isinstance(result, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(events) or index in settled:
                continue
            event = events[index]
            echoed = result.get("request_id")
            if echoed is not None and echoed != event.request_id:
                continue  # not the answer for this event: it is retried
            status = result.get("status")
            if status == 202:
                outcome.delivered += 1
            elif status == 422:
                error = result.get("error") if isinstance(result.get("error"), dict) else {}
                outcome.failures.append(
                    DeliveryFailure(
                        event,
                        str(error.get("code") or "REJECTED"),
                        str(error.get("message") or "the API refused this event"),
                        422,
                        error.get("details"),
                        attempts,
                    )
                )
            else:
                continue
            settled.add(index)
        outcome.retry = [event for index, event in enumerate(events) if index not in settled]
        if outcome.retry:
            outcome.problem = _Problem("UNSETTLED_ITEMS", "the 207 answer did not settle every item", 207)
        return outcome

    def _settle(self, delivered: int, failures: list[DeliveryFailure]) -> None:
        if not delivered and not failures:
            return
        with self._lock:
            self._unsettled -= delivered + len(failures)
            self._delivered += delivered
            self._failed += len(failures)
            self._failures.extend(failures)
            self._space.notify_all()
        if self._space_async is not None:
            self._space_async.set()
        if self._settled is not None:
            self._settled.set()
        if not failures:
            return
        log.warning(
            "%d usage events not delivered; first: %s %s (request_id %s)",
            len(failures),
            failures[0].code,
            failures[0].message,
            failures[0].event.request_id,
        )
        callback = self._options.on_failure
        if callback is None:
            return
        for failure in failures:
            try:
                callback(failure)
            except Exception:
                log.exception("on_failure callback raised; the failure is still listed in failures()")

    # -- model selection (on the loop) ---------------------------------------------------------------------------

    async def choose_model(self) -> ModelChoice:
        self.start()
        assert self._selection_lock is not None
        cached = self.cached_choice()
        if cached is not None:
            return cached
        async with self._selection_lock:
            cached = self.cached_choice()
            if cached is not None:
                return cached  # another caller fetched it while this one waited
            response = await self._read(self._selection_path)
            fresh_for_s = max_age_s(response)
            if response.status_code == 200:
                try:
                    body = response.json()
                except ValueError as exc:
                    raise ApiError(200, "MALFORMED_SELECTION", "the model-selection answer is not JSON") from exc
                choice = ModelChoice.from_json(body, fresh_for_s)
                self._selection.store(choice, self._options.clock(), fresh_for_s)
                return choice
            error = api_error(response)
            if isinstance(error, QuotaExceeded):
                self._selection.store(error, self._options.clock(), fresh_for_s)
            raise error

    async def _read(self, path: str) -> httpx.Response:
        """GET with the access token; transport errors and 5xx/429 (but QUOTA_EXCEEDED) retried a few times."""
        assert self._http is not None
        opts = self._options
        attempts = min(READ_ATTEMPTS, opts.retry.max_attempts)
        last: ServiceUnavailable | None = None
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                token = await self._auth.access_token(self._http)
                response = await self._http.get(path, headers={"Authorization": f"Bearer {token}"})
                if response.status_code == 401:
                    self._auth.invalidate(token)
                    token = await self._auth.access_token(self._http)
                    response = await self._http.get(path, headers={"Authorization": f"Bearer {token}"})
                quota = response.status_code == 429 and isinstance(api_error(response), QuotaExceeded)
                if response.status_code not in RETRYABLE_STATUSES or quota:
                    return response
                retry_after = retry_after_s(response)
                last = ServiceUnavailable(
                    f"GET {path} answered {response.status_code}", response.status_code, retry_after
                )
            except ApiError as exc:
                if exc.status not in RETRYABLE_STATUSES or isinstance(exc, AuthenticationFailed):
                    raise
                retry_after = exc.retry_after_s
                last = ServiceUnavailable(f"token request answered {exc.status} {exc.code}", exc.status, retry_after)
            except httpx.RequestError as exc:
                last = ServiceUnavailable(f"GET {path} failed: {type(exc).__name__}: {exc}")
            if attempt < attempts:
                await self._sleep(opts.retry.delay_s(attempt, opts.jitter(), retry_after))
        assert last is not None
        raise last


def run_blocking(coroutine: Awaitable[Any], loop: asyncio.AbstractEventLoop, timeout_s: float | None) -> Any:
    """Run a coroutine on another thread's loop and wait for its result."""

    async def wrapped() -> Any:
        return await coroutine

    return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout_s)
