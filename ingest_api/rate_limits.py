"""Rate limits, on the `limits` library (sliding window counters, in process memory or a shared store).

Each limit is a policy (what it protects) and a key (whose budget): per source address and per client id on the
token endpoints, per source address on admin-key failures and one-time secret claims, per client id on usage and
on everything else a bearer token reaches. Where guessing is the threat, a refused attempt costs `failure_cost`
hits and a good one 1 (admin keys: failures only), so a guesser runs dry long before a client that gets its
credentials right now and then. Past a limit the caller hears RateLimited (429 RATE_LIMITED, with Retry-After and
X-RateLimit-*).

With the default storage (`memory://`) every API replica counts on its own, so a client may get up to N times a
limit across N replicas; `CK_RATE_LIMIT_STORAGE=redis://...` (with `limits[redis]` installed) shares the counters.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

if TYPE_CHECKING:
    from ingest_api.settings import ApiSettings


class Policy(Enum):
    AUTH_CLIENT = "auth_client"  # /auth/token and /auth/refresh, per client id
    AUTH_ADDRESS = "auth_address"  # the same, per source address
    ADMIN_FAILURES = "admin_failures"  # wrong admin keys, per source address
    CLAIMS = "claims"  # one-time secret claims, per source address
    USAGE = "usage"  # usage submission, per client id
    READS = "reads"  # every other bearer route, per client id


# The policies an org can be given limits of its own for (CK_RATE_LIMIT_ORG_OVERRIDES).
PER_ORG = (Policy.USAGE, Policy.READS)


class RateLimited(Exception):
    def __init__(self, policy: Policy, limit: int, remaining: int, retry_after_s: int) -> None:
        super().__init__(f"rate limit {policy.value} exceeded: {limit} per window; retry in {retry_after_s}s")
        self.limit = limit
        self.remaining = remaining
        self.retry_after_s = retry_after_s


def rate(raw: str) -> str:
    """A limit in the `limits` notation ("30/minute", "5 per 2 seconds"); ValueError if it is not one."""
    parse(raw)
    return raw


def parse_org_overrides(raw: str) -> dict[str, dict[Policy, RateLimitItem]]:
    """{"<org_id>": {"usage": "<limit>", "reads": "<limit>"}}; ValueError for anything else."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    names = {p.value for p in PER_ORG}
    if not isinstance(data, dict) or not all(isinstance(v, dict) and set(v) <= names for v in data.values()):
        raise ValueError('expected {"<org_id>": {"usage": "<limit>", "reads": "<limit>"}}')
    return {org: {Policy(name): parse(rate(v)) for name, v in limits.items()} for org, limits in data.items()}


def org_overrides(raw: str) -> str:
    """The setting's check: the raw JSON, once it parses."""
    parse_org_overrides(raw)
    return raw


class RateLimiter:
    def __init__(
        self,
        limits: Mapping[Policy, str],
        failure_cost: int,
        org_overrides_json: str = "{}",
        storage: str = "memory://",
    ) -> None:
        self._limits = {policy: parse(raw) for policy, raw in limits.items()}
        self._failure_cost = failure_cost
        self._org_limits = parse_org_overrides(org_overrides_json)
        uri = storage if storage.startswith("async+") else f"async+{storage}"
        self._strategy = SlidingWindowCounterRateLimiter(storage_from_string(uri))

    def _item(self, policy: Policy, org_id: str | None) -> RateLimitItem:
        if org_id is not None and policy in self._org_limits.get(org_id, {}):
            return self._org_limits[org_id][policy]
        return self._limits[policy]

    async def _refuse(self, policy: Policy, item: RateLimitItem, key: str) -> RateLimited:
        stats = await self._strategy.get_window_stats(item, policy.value, key)
        retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimited(policy, item.amount, stats.remaining, retry_after_s)

    async def hit(self, policy: Policy, key: str, org_id: str | None = None) -> None:
        """Count one request; raises RateLimited (counting nothing) if the key's budget is spent."""
        item = self._item(policy, org_id)
        if not await self._strategy.hit(item, policy.value, key):
            raise await self._refuse(policy, item, key)

    async def admit(self, policy: Policy, key: str) -> None:
        """Raises RateLimited if the key has no budget left for even one attempt; counts nothing."""
        item = self._item(policy, None)
        if not await self._strategy.test(item, policy.value, key):
            raise await self._refuse(policy, item, key)

    async def charge(self, policy: Policy, key: str, failed: bool, success_cost: int = 1) -> None:
        """Count an attempt's outcome: a failure costs `failure_cost`, at most what is left of the budget."""
        cost = self._failure_cost if failed else success_cost
        if cost <= 0:
            return
        item = self._item(policy, None)
        remaining = (await self._strategy.get_window_stats(item, policy.value, key)).remaining
        if min(cost, remaining) > 0:
            await self._strategy.hit(item, policy.value, key, cost=min(cost, remaining))


def rate_limiter(settings: ApiSettings) -> RateLimiter:
    limits = {
        Policy.AUTH_CLIENT: settings.rate_auth_per_client,
        Policy.AUTH_ADDRESS: settings.rate_auth_per_address,
        Policy.ADMIN_FAILURES: settings.rate_admin_failures_per_address,
        Policy.CLAIMS: settings.rate_claims_per_address,
        Policy.USAGE: settings.rate_usage_per_client,
        Policy.READS: settings.rate_reads_per_client,
    }
    return RateLimiter(
        limits, settings.rate_failure_cost, settings.rate_limit_org_overrides, settings.rate_limit_storage
    )
