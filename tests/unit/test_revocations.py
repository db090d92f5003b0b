"""ingest_api/tokens.py::RevocationStore on the in-memory DynamoDB stand-in: refresh tokens spent once, families
revoked as a whole, and memos bounded in size."""

from __future__ import annotations

import asyncio

import pytest

from catalog.credentials import Principal
from catalog.sessions import SessionGrant
from ingest_api import tokens
from ingest_api.tokens import RevocationStore, TokenClaims, TokenIssuer
from tests.unit.factories import ORG_ID
from tests.unit.fake_dynamodb import FakeDynamoDB

ISSUER = TokenIssuer("unit-test-signing-secret-0123456789abcdef", 900, 86_400)
APP = Principal(ORG_ID, "chatbot")


def session_tokens() -> tuple[TokenClaims, TokenClaims]:
    pair = ISSUER.issue(APP, SessionGrant(0, 0))
    return ISSUER.decode(pair.access_token, "access"), ISSUER.decode(pair.refresh_token, "refresh")


def test_a_refresh_token_is_spent_once_and_a_revoked_family_takes_every_token_with_it() -> None:
    async def run() -> None:
        store = RevocationStore(FakeDynamoDB(), "revoked", cache_ttl_s=2.0)  # type: ignore[arg-type]
        access, refresh = session_tokens()
        other_access, _ = session_tokens()
        assert await store.spend(refresh)
        assert not await store.spend(refresh)  # the reuse: its caller revokes the family
        assert not await store.is_revoked(access)
        await store.revoke_family(refresh)
        assert await store.is_revoked(access)
        assert await store.family_revoked(refresh)
        assert not await store.is_revoked(other_access)

    asyncio.run(run())


def test_another_replicas_revocation_is_read_from_the_table() -> None:
    async def run() -> None:
        ddb = FakeDynamoDB()
        mine = RevocationStore(ddb, "revoked", cache_ttl_s=0)  # type: ignore[arg-type]
        theirs = RevocationStore(ddb, "revoked", cache_ttl_s=0)  # type: ignore[arg-type]
        access, refresh = session_tokens()
        assert not await mine.is_revoked(access)
        await theirs.revoke_family(refresh)
        assert await mine.is_revoked(access)

    asyncio.run(run())


def test_the_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "MEMO_ENTRIES", 50)

    async def run() -> None:
        store = RevocationStore(FakeDynamoDB(), "revoked", cache_ttl_s=60)  # type: ignore[arg-type]
        for _ in range(500):
            access, _ = session_tokens()
            assert not await store.is_revoked(access)
            await store.revoke(access)
        assert store._not_revoked is not None and len(store._not_revoked) <= 50
        assert len(store._revoked) <= 50

    asyncio.run(run())
