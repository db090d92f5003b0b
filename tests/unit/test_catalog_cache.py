"""catalog/store.py's read cache: misses are cached like entries, and the cache is bounded in size and age."""

from __future__ import annotations

import asyncio

import pytest

from catalog import store
from catalog.credentials import Principal
from catalog.store import CatalogStore
from tests.unit.factories import ORG_ID
from tests.unit.fake_dynamodb import FakeDynamoDB


def test_unknown_ids_are_cached_as_misses_in_a_bounded_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "CATALOG_CACHE_ENTRIES", 100)

    async def run() -> None:
        ddb = FakeDynamoDB()
        catalog = CatalogStore(ddb, "config", cache_ttl_s=60)  # type: ignore[arg-type]
        assert await catalog.get_app(ORG_ID, "nope") is None
        assert await catalog.get_app(ORG_ID, "nope") is None
        assert ddb.requests == 1  # the miss was remembered
        for n in range(5_000):  # what the issue saw: every unknown id stayed forever
            await catalog.get_app(ORG_ID, f"unknown-{n}")
        assert catalog._cache is not None and len(catalog._cache) <= 100

    asyncio.run(run())


def test_cached_answers_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        ddb = FakeDynamoDB()
        catalog = CatalogStore(ddb, "config", cache_ttl_s=0.05, session_cache_ttl_s=0.05)  # type: ignore[arg-type]
        assert await catalog.get_org(ORG_ID) is None
        assert await catalog.session_state(Principal(ORG_ID)) is None
        await asyncio.sleep(0.1)
        assert await catalog.get_org(ORG_ID) is None
        assert await catalog.session_state(Principal(ORG_ID)) is None
        assert ddb.requests == 4

    asyncio.run(run())
