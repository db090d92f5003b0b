"""ingest_api/rate_limits.py: budgets per policy and key, failures costing more, per-org overrides, settings checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ingest_api.errors import domain_error_response
from ingest_api.rate_limits import Policy, RateLimited, RateLimiter, org_overrides, parse_org_overrides, rate
from tests.unit.factories import ORG_ID, OTHER_ORG_ID

LIMITS = {policy: "10/minute" for policy in Policy}


def limiter(overrides: dict[str, dict[str, str]] | None = None, failure_cost: int = 5) -> RateLimiter:
    return RateLimiter(LIMITS, failure_cost, json.dumps(overrides or {}))


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def test_hits_are_counted_per_policy_and_key_and_refused_past_the_limit() -> None:
    async def body() -> None:
        rl = limiter()
        for _ in range(10):
            await rl.hit(Policy.USAGE, "client-a")
        with pytest.raises(RateLimited) as refused:
            await rl.hit(Policy.USAGE, "client-a")
        assert (refused.value.limit, refused.value.remaining) == (10, 0)
        assert 1 <= refused.value.retry_after_s <= 60
        # Other keys and other policies have budgets of their own.
        await rl.hit(Policy.USAGE, "client-b")
        await rl.hit(Policy.READS, "client-a")

    run(body)


def test_a_failure_costs_more_than_a_success_and_never_less_than_what_is_left() -> None:
    async def body() -> None:
        rl = limiter()
        await rl.admit(Policy.AUTH_CLIENT, "c")
        await rl.charge(Policy.AUTH_CLIENT, "c", failed=True)
        await rl.admit(Policy.AUTH_CLIENT, "c")
        await rl.charge(Policy.AUTH_CLIENT, "c", failed=True)
        with pytest.raises(RateLimited):  # two failures spent a budget ten successes would have
            await rl.admit(Policy.AUTH_CLIENT, "c")

        for _ in range(8):
            await rl.charge(Policy.AUTH_ADDRESS, "a", failed=False)
        await rl.charge(Policy.AUTH_ADDRESS, "a", failed=True)  # costs the 2 left, not nothing
        with pytest.raises(RateLimited):
            await rl.admit(Policy.AUTH_ADDRESS, "a")

        for _ in range(20):  # admin keys: only failures count
            await rl.charge(Policy.ADMIN_FAILURES, "a", failed=False, success_cost=0)
        await rl.admit(Policy.ADMIN_FAILURES, "a")

    run(body)


def test_an_org_can_have_limits_of_its_own() -> None:
    async def body() -> None:
        rl = limiter({ORG_ID: {"usage": "2/minute"}})
        for _ in range(2):
            await rl.hit(Policy.USAGE, "app-1", org_id=ORG_ID)
        with pytest.raises(RateLimited) as refused:
            await rl.hit(Policy.USAGE, "app-1", org_id=ORG_ID)
        assert refused.value.limit == 2
        for _ in range(3):
            await rl.hit(Policy.READS, "app-1", org_id=ORG_ID)  # its reads keep the default
            await rl.hit(Policy.USAGE, "app-2", org_id=OTHER_ORG_ID)

    run(body)


def test_a_refusal_is_a_429_with_its_headers() -> None:
    response = domain_error_response(RateLimited(Policy.USAGE, 10, 0, 7))
    assert response.status_code == 429
    assert json.loads(bytes(response.body))["error"]["code"] == "RATE_LIMITED"
    headers = {k: response.headers[k] for k in ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining")}
    assert headers == {"retry-after": "7", "x-ratelimit-limit": "10", "x-ratelimit-remaining": "0"}
    assert response.headers["x-ratelimit-reset"] == "7"


@pytest.mark.parametrize("raw", ["", "ten a minute", "10/fortnight", "-1/second"])
def test_a_limit_that_does_not_parse_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - limits' own message differs by what is wrong
        rate(raw)


@pytest.mark.parametrize(
    "raw", ["[]", "{", '{"o": {"auth_client": "1/second"}}', '{"o": {"usage": "lots"}}', '{"o": "1/second"}']
)
def test_org_overrides_that_do_not_parse_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - limits' own message differs by what is wrong
        org_overrides(raw)


def test_org_overrides_parse() -> None:
    parsed = parse_org_overrides(json.dumps({ORG_ID: {"usage": "5/second", "reads": "1 per 2 seconds"}}))
    assert {p: (item.amount, item.get_expiry()) for p, item in parsed[ORG_ID].items()} == {
        Policy.USAGE: (5, 1),
        Policy.READS: (1, 2),
    }
