"""choose_model(): GET .../model-selection, kept for as long as Cache-Control max-age allows; QUOTA_EXCEEDED is its
own exception with Retry-After; outages retried a little, then ServiceUnavailable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from costkeeper_client import (
    ApiError,
    AsyncCostKeeperClient,
    CostKeeperClient,
    ModelChoice,
    QuotaExceeded,
    ServiceUnavailable,
)
from costkeeper_client._http import max_age_s
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi, FakeTime, error_response, selection_body

T = TypeVar("T")


def with_client(api: FakeApi, clock: FakeTime, body: Callable[[AsyncCostKeeperClient], Awaitable[T]]) -> T:
    async def main() -> T:
        options = api.options(clock=clock.clock, sleep=clock.sleep)
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options) as keeper:
            return await body(keeper)

    return asyncio.run(main())


def quota_exceeded(retry_after_s: int = 3_600, max_age: int = 60) -> httpx.Response:
    """routes_reads.model_selection when every label is used up."""
    return httpx.Response(
        429,
        json={
            "error": {
                "code": "QUOTA_EXCEEDED",
                "message": "every model in the ordering has used its daily quota",
                "details": {"date": "2024-06-15", "labels": []},
            }
        },
        headers={"Retry-After": str(retry_after_s), "Cache-Control": f"private, max-age={max_age}"},
    )


def test_the_answer_is_read_into_a_model_choice() -> None:
    api = FakeApi(selection_body=selection_body("standard", "TIGHT"))
    choice = with_client(api, FakeTime(), lambda keeper: keeper.choose_model())
    assert (choice.model_label, choice.bedrock_model_id, choice.mode) == ("standard", "anthropic.claude-haiku", "TIGHT")
    assert (choice.fallback, choice.position, choice.ordering) == (True, 1, ("premium", "standard", "economy"))
    assert [status.model_label for status in choice.labels] == ["premium", "standard", "economy"]
    assert choice.max_age_s == 300


@pytest.mark.parametrize(("cache_control", "max_age"), [("private, max-age=300", 300), ("private, max-age=60", 60)])
def test_the_answer_is_reused_for_exactly_its_max_age(cache_control: str, max_age: int) -> None:
    api = FakeApi(selection_cache_control=cache_control)
    clock = FakeTime()

    async def body(keeper: AsyncCostKeeperClient) -> list[int]:
        gets = []
        for elapsed_s in (0, max_age - 1, 1):  # at 0, at max_age - 1, at max_age
            clock.advance(elapsed_s)
            await keeper.choose_model()
            gets.append(api.selection_gets)
        return gets

    assert with_client(api, clock, body) == [1, 1, 2]


@pytest.mark.parametrize("cache_control", [None, "no-store", "private, no-cache", "max-age=0"])
def test_an_answer_without_a_positive_max_age_is_not_kept(cache_control: str | None) -> None:
    api = FakeApi(selection_cache_control=cache_control)

    async def body(keeper: AsyncCostKeeperClient) -> None:
        await keeper.choose_model()
        await keeper.choose_model()

    with_client(api, FakeTime(), body)
    assert api.selection_gets == 2


def test_max_age_is_read_among_other_directives() -> None:
    assert max_age_s(httpx.Response(200, headers={"Cache-Control": "public, max-age=17, must-revalidate"})) == 17
    assert max_age_s(httpx.Response(200, headers={"Cache-Control": "s-maxage=30"})) == 0


def test_quota_exceeded_is_its_own_exception_with_retry_after_and_is_kept_for_its_max_age() -> None:
    api = FakeApi()
    api.selection_answers.append(quota_exceeded(retry_after_s=3_600, max_age=60))
    clock = FakeTime()

    async def body(keeper: AsyncCostKeeperClient) -> list[QuotaExceeded]:
        raised = []
        for elapsed_s in (0, 10):
            clock.advance(elapsed_s)
            with pytest.raises(QuotaExceeded) as info:
                await keeper.choose_model()
            raised.append(info.value)
        clock.advance(50)
        await keeper.choose_model()  # past max-age: asked again, and quota is back
        return raised

    first, second = with_client(api, clock, body)
    assert (first.status, first.code, first.retry_after_s) == (429, "QUOTA_EXCEEDED", 3_600)
    assert first.details == {"date": "2024-06-15", "labels": []}
    assert second.retry_after_s == 3_590
    assert api.selection_gets == 2


def test_an_outage_is_retried_then_reported_as_service_unavailable() -> None:
    api = FakeApi()
    api.selection_answers.extend([error_response(503, "UNAVAILABLE"), httpx.ConnectError("refused")])
    choice = with_client(api, FakeTime(), lambda keeper: keeper.choose_model())
    assert choice.model_label == "premium"
    assert api.selection_gets == 3

    api = FakeApi()
    api.selection_answers.extend([error_response(503, "UNAVAILABLE", headers={"Retry-After": "2"})] * 3)
    clock = FakeTime()
    with pytest.raises(ServiceUnavailable) as info:
        with_client(api, clock, lambda keeper: keeper.choose_model())
    assert info.value.last_status == 503
    assert clock.sleeps_s == [2.0, 2.0]


def test_other_refusals_are_api_errors_and_not_kept() -> None:
    api = FakeApi()
    api.selection_answers.append(error_response(404, "APP_NOT_FOUND", "app chatbot does not exist"))

    async def body(keeper: AsyncCostKeeperClient) -> ModelChoice:
        with pytest.raises(ApiError) as info:
            await keeper.choose_model()
        assert (info.value.status, info.value.code) == (404, "APP_NOT_FOUND")
        assert not isinstance(info.value, QuotaExceeded)
        return await keeper.choose_model()

    assert with_client(api, FakeTime(), body).model_label == "premium"
    assert api.selection_gets == 2


def test_concurrent_callers_share_one_request() -> None:
    api = FakeApi()

    async def body(keeper: AsyncCostKeeperClient) -> set[str]:
        choices = await asyncio.gather(*(keeper.choose_model() for _ in range(20)))
        return {choice.model_label for choice in choices}

    assert with_client(api, FakeTime(), body) == {"premium"}
    assert api.selection_gets == 1


def test_the_blocking_client_answers_from_the_cache_in_the_callers_thread() -> None:
    api = FakeApi()
    with CostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, api.options()) as keeper:
        first = keeper.choose_model()
        again = keeper.choose_model()
    assert again is first
    assert api.selection_gets == 1
