"""The client's access token: fetched with the client credentials, refreshed before expiry, fetched afresh when a
refresh is refused, renewed when the API refuses it mid-flight; wrong credentials are reported, not retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from costkeeper_client import AsyncCostKeeperClient, ClientOptions
from tests.unit.client_fakes import APP_ID, BASE_URL, ORG_ID, SECRET, FakeApi, FakeTime, error_response


def run(
    api: FakeApi, body: Callable[[AsyncCostKeeperClient], Awaitable[Any]], options: ClientOptions | None = None
) -> AsyncCostKeeperClient:
    async def main() -> AsyncCostKeeperClient:
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, SECRET, options or api.options()) as keeper:
            await body(keeper)
        return keeper

    return asyncio.run(main())


async def record_and_flush(keeper: AsyncCostKeeperClient, count: int = 1) -> None:
    for _ in range(count):
        await keeper.record("premium", input_tokens=10)
    assert await keeper.flush()


def test_the_first_post_fetches_a_token_with_the_client_credentials_form() -> None:
    api = FakeApi()
    run(api, record_and_flush)
    assert api.token_forms == [
        {"grant_type": "client_credentials", "client_id": f"org-{ORG_ID}-app-{APP_ID}", "client_secret": SECRET}
    ]
    assert [post.token for post in api.posts] == ["access-1"]


def test_the_token_is_reused_while_it_is_fresh() -> None:
    api = FakeApi()

    async def body(keeper: AsyncCostKeeperClient) -> None:
        for _ in range(3):
            await record_and_flush(keeper)

    keeper = run(api, body)
    assert len(api.posts) == 3
    assert len(api.token_forms) == 1
    assert keeper.stats().token_requests == 1


def test_an_org_client_id_is_used_when_given() -> None:
    api = FakeApi()
    org_client = f"org-{ORG_ID}"
    run(api, record_and_flush, api.options(client_id=org_client))
    assert api.token_forms[0]["client_id"] == org_client


def test_the_token_is_refreshed_before_it_expires_with_the_refresh_token() -> None:
    api = FakeApi(expires_in_s=3600)
    time = FakeTime()

    async def body(keeper: AsyncCostKeeperClient) -> None:
        await record_and_flush(keeper)
        # Not expired yet, but inside the refresh margin (60 s): the next request must not leave with it.
        time.advance(3600 - 30)
        await record_and_flush(keeper)

    run(api, body, api.options(clock=time.clock, sleep=time.sleep))
    assert api.refresh_forms == [{"refresh_token": "refresh-1"}]
    assert len(api.token_forms) == 1
    assert [post.token for post in api.posts] == ["access-1", "access-2"]


def test_a_refused_refresh_falls_back_to_the_client_credentials() -> None:
    api = FakeApi(expires_in_s=600)
    api.refresh_faults.append(error_response(401, "TOKEN_REVOKED", "this refresh token has been revoked"))
    time = FakeTime()

    async def body(keeper: AsyncCostKeeperClient) -> None:
        await record_and_flush(keeper)
        time.advance(601)
        await record_and_flush(keeper)

    keeper = run(api, body, api.options(clock=time.clock, sleep=time.sleep))
    assert len(api.refresh_forms) == 1
    assert len(api.token_forms) == 2
    assert [post.token for post in api.posts] == ["access-1", "access-2"]
    assert keeper.stats().delivered == 2


def test_a_token_the_api_refuses_mid_flight_is_renewed_and_the_batch_delivered_without_back_off() -> None:
    api = FakeApi()
    time = FakeTime()

    async def body(keeper: AsyncCostKeeperClient) -> None:
        await record_and_flush(keeper)
        api.live_access.clear()  # revoked server-side while the client still thinks it fresh
        await record_and_flush(keeper)

    keeper = run(api, body, api.options(clock=time.clock, sleep=time.sleep))
    assert [post.token for post in api.posts] == ["access-1", "", "access-2"]
    assert api.posts[1].request_ids == api.posts[2].request_ids
    assert api.refresh_forms == [{"refresh_token": "refresh-1"}]
    assert keeper.stats().delivered == 2
    assert keeper.stats().retries == 0


def test_concurrent_batches_share_one_token_fetch() -> None:
    api = FakeApi()

    async def body(keeper: AsyncCostKeeperClient) -> None:
        await record_and_flush(keeper, 1_000)

    run(api, body, api.options(max_in_flight=4))
    assert len(api.posts) == 10
    assert len(api.token_forms) == 1


def test_wrong_credentials_are_reported_for_every_event_and_not_retried() -> None:
    api = FakeApi()
    failures: list[str] = []

    async def body(keeper: AsyncCostKeeperClient) -> None:
        await record_and_flush(keeper, 3)

    async def main() -> AsyncCostKeeperClient:
        options = api.options(on_failure=lambda f: failures.append(f.code))
        async with AsyncCostKeeperClient(BASE_URL, ORG_ID, APP_ID, "cks_wrong", options) as keeper:
            await body(keeper)
        return keeper

    keeper = asyncio.run(main())
    assert failures == ["INVALID_CLIENT"] * 3
    assert [(f.status, f.code) for f in keeper.failures()] == [(401, "INVALID_CLIENT")] * 3
    assert len(api.token_forms) == 1
    assert api.posts == []


def test_a_token_endpoint_outage_is_retried_like_any_other() -> None:
    api = FakeApi()
    api.token_faults.extend([error_response(503, "QUEUE_UNAVAILABLE"), httpx.ConnectError("refused")])
    keeper = run(api, record_and_flush)
    assert len(api.token_forms) == 3
    assert keeper.stats().delivered == 1
    assert keeper.failures() == []
