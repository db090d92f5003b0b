"""Retries: exponential back-off with jitter, Retry-After honoured on 429 and 503, the same request_ids on every
attempt; 422 items reported and never retried; every event given up on is reported with its reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from costkeeper_client import (
    NOT_SENT_BEFORE_CLOSE,
    RETRIES_EXHAUSTED,
    AsyncCostKeeperClient,
    DeliveryFailure,
    RetryPolicy,
)
from costkeeper_client._http import retry_after_s
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi, FakeTime, error_response


def deliver(api: FakeApi, labels: list[str], **options: Any) -> tuple[AsyncCostKeeperClient, list[str], FakeTime]:
    """Record one event per label in one batch, close, and return the client, the request ids and the clock."""
    clock = FakeTime()
    settings: dict[str, Any] = {"clock": clock.clock, "sleep": clock.sleep, "jitter": lambda: 0.5, **options}

    async def main() -> tuple[AsyncCostKeeperClient, list[str]]:
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options(**settings)) as keeper:
            ids = [(await keeper.record(label, input_tokens=5)).request_id for label in labels]
        return keeper, ids

    keeper, ids = asyncio.run(main())
    return keeper, ids, clock


def backoffs(clock: FakeTime) -> list[float]:
    """The waits that were not lingers (a linger is at most 50 ms; back-offs in these tests are longer)."""
    return [s for s in clock.sleeps_s if s > 0.05]


SLOW = RetryPolicy(initial_delay_s=0.2, max_delay_s=3.2, max_attempts=8, give_up_after_s=600)


@pytest.mark.parametrize(
    ("status", "code"), [(429, "TOO_MANY_REQUESTS"), (503, "QUEUE_UNAVAILABLE")], ids=["429", "503"]
)
def test_retry_after_is_waited_and_the_retry_carries_the_same_request_ids(status: int, code: str) -> None:
    api = FakeApi()
    api.batch_faults.append(error_response(status, code, headers={"Retry-After": "7"}))
    keeper, ids, clock = deliver(api, ["premium", "standard", "economy"], retry=SLOW)
    assert [post.request_ids for post in api.posts] == [ids, ids]
    assert backoffs(clock) == [7.0]
    assert all(api.accepted_times[rid] == 1 for rid in ids)
    assert keeper.stats().delivered == 3
    assert keeper.stats().retries == 1


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    response = httpx.Response(503, headers={"Retry-After": later})
    assert retry_after_s(response, now) == 42.0
    assert retry_after_s(httpx.Response(503, headers={"Retry-After": "soon"}), now) is None
    assert retry_after_s(httpx.Response(503), now) is None


def test_a_short_retry_after_does_not_shorten_the_back_off() -> None:
    api = FakeApi()
    api.batch_faults.extend([error_response(503, "QUEUE_UNAVAILABLE", headers={"Retry-After": "0"})] * 3)
    _, _, clock = deliver(api, ["premium"], retry=SLOW)
    # Jitter 0.5 puts each wait at 3/4 of its ceiling: 0.2, 0.4, 0.8 doubling.
    assert backoffs(clock) == pytest.approx([0.15, 0.3, 0.6])
    assert len(api.posts) == 4


def test_server_errors_back_off_exponentially_up_to_the_ceiling() -> None:
    api = FakeApi()
    api.batch_faults.extend([error_response(500, "INTERNAL_ERROR")] * 6)
    keeper, _, clock = deliver(api, ["premium"], retry=SLOW)
    assert backoffs(clock) == pytest.approx([0.15, 0.3, 0.6, 1.2, 2.4, 2.4])
    assert keeper.stats().delivered == 1


def test_jitter_spreads_the_wait_over_the_upper_half_of_the_ceiling() -> None:
    policy = RetryPolicy(initial_delay_s=1.0, max_delay_s=8.0)
    assert [policy.delay_s(n, 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.delay_s(n, 0.999999) for n in range(1, 6)] == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0])
    assert policy.delay_s(1, 0.5, retry_after_s=30) == 30


def test_connection_errors_are_retried_with_the_same_request_ids() -> None:
    api = FakeApi()
    api.batch_faults.extend([httpx.ConnectError("connection refused"), httpx.ReadError("connection reset")])
    keeper, ids, _ = deliver(api, ["premium", "standard"])
    assert [post.request_ids for post in api.posts] == [ids, ids, ids]
    assert all(api.accepted_times[rid] == 1 for rid in ids)
    assert keeper.stats().retries == 2
    assert keeper.stats().delivered == 2


def test_a_lost_answer_is_retried_and_counted_once() -> None:
    api = FakeApi()

    def accepted_then_lost(items: list[dict[str, Any]]) -> httpx.Response:
        api.process(items)  # the API took them, but the answer never arrives
        raise httpx.ReadTimeout("timed out")

    api.batch_faults.append(accepted_then_lost)
    keeper, ids, _ = deliver(api, ["premium", "economy"])
    assert [post.request_ids for post in api.posts] == [ids, ids]
    assert sorted(api.accepted) == sorted(ids)
    assert keeper.stats().delivered == 2


def test_items_refused_with_422_are_reported_and_not_retried() -> None:
    api = FakeApi()
    seen: list[DeliveryFailure] = []
    api.batch_faults.append(error_response(503, "QUEUE_UNAVAILABLE", headers={"Retry-After": "1"}))
    keeper, ids, _ = deliver(api, ["premium", "no-such-label", "economy"], on_failure=seen.append)
    assert [post.request_ids for post in api.posts] == [ids, ids]
    [failure] = keeper.failures()
    assert failure is seen[0]
    assert (failure.event.request_id, failure.status, failure.code) == (ids[1], 422, "UNKNOWN_MODEL_LABEL")
    assert "no-such-label" in failure.message
    assert keeper.stats().delivered == 2

    api.batch_faults.append(error_response(503, "QUEUE_UNAVAILABLE"))
    api.posts.clear()
    keeper, ids, _ = deliver(api, ["no-such-label", "premium"])
    # Refused in the first 207, so absent from the retry.
    assert [post.request_ids for post in api.posts] == [ids, ids]


def test_after_a_207_only_the_items_without_a_final_answer_are_retried() -> None:
    api = FakeApi()

    def partial(items: list[dict[str, Any]]) -> httpx.Response:
        body = api.process(items)
        body["results"][1]["status"] = 500  # not an answer the item can end on
        del body["results"][2]  # not mentioned at all
        return httpx.Response(207, json=body)

    api.batch_faults.append(partial)
    keeper, ids, _ = deliver(api, ["premium", "standard", "economy", "premium"])
    assert [post.request_ids for post in api.posts] == [ids, [ids[1], ids[2]]]
    assert all(api.accepted_times[rid] >= 1 for rid in ids)
    assert keeper.stats().delivered == 4


def test_a_refusal_of_the_whole_request_is_reported_for_every_event_without_retry() -> None:
    api = FakeApi()
    api.batch_faults.append(error_response(403, "FORBIDDEN", "this token is not valid for that app"))
    keeper, ids, _ = deliver(api, ["premium", "standard"])
    assert len(api.posts) == 1
    assert [(f.event.request_id, f.status, f.code, f.attempts) for f in keeper.failures()] == [
        (ids[0], 403, "FORBIDDEN", 1),
        (ids[1], 403, "FORBIDDEN", 1),
    ]


def test_when_retries_run_out_every_event_is_reported_with_the_last_error() -> None:
    api = FakeApi()
    api.batch_faults.extend([error_response(503, "QUEUE_UNAVAILABLE")] * 10)
    policy = RetryPolicy(initial_delay_s=0.1, max_delay_s=1.0, max_attempts=4, give_up_after_s=600)
    keeper, ids, _ = deliver(api, ["premium", "economy"], retry=policy)
    assert len(api.posts) == 4
    failures = keeper.failures()
    assert [f.event.request_id for f in failures] == ids
    assert {(f.code, f.status, f.attempts) for f in failures} == {(RETRIES_EXHAUSTED, 503, 4)}
    assert failures[0].details == {"last_error": "QUEUE_UNAVAILABLE"}
    assert keeper.stats().failed == 2


def test_retries_stop_when_the_time_allowed_is_spent() -> None:
    api = FakeApi()
    api.batch_faults.extend([error_response(429, "TOO_MANY_REQUESTS", headers={"Retry-After": "40"})] * 10)
    policy = RetryPolicy(max_attempts=100, give_up_after_s=100)
    keeper, _, clock = deliver(api, ["premium"], retry=policy, close_timeout_s=1_000)
    assert backoffs(clock) == [40.0, 40.0]
    assert [f.code for f in keeper.failures()] == [RETRIES_EXHAUSTED]


def test_close_does_not_wait_for_a_retry_after_beyond_its_deadline() -> None:
    api = FakeApi()
    api.batch_faults.append(error_response(503, "QUEUE_UNAVAILABLE", headers={"Retry-After": "3600"}))
    keeper, ids, clock = deliver(api, ["premium"], close_timeout_s=5, retry=RetryPolicy(give_up_after_s=86_400))
    assert backoffs(clock) == []
    [failure] = keeper.failures()
    assert (failure.event.request_id, failure.code, failure.status) == (ids[0], NOT_SENT_BEFORE_CLOSE, 503)
