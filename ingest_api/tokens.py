"""Access and refresh tokens (HS256 JWTs) and their revocation.

Every token belongs to a session: begun by /auth/token with a client secret, carried on by refreshes, and named in
each of its tokens by a family id, the secret generation and session epoch that began it (catalog/sessions.py) and
the time it began. A session lives at most `max_session_s` from that beginning, however often it is refreshed.
Refresh tokens work once: spending one is a conditional write of its id, and presenting a spent one revokes its whole
family (someone holds a copy), so the thief's successors die with the victim's.

A revoked token id or family is kept in the revoked-tokens table until its tokens would have expired anyway (its TTL),
so the table never grows beyond the live tokens. Each process remembers answers briefly and in bounded memory: "not
revoked" for `cache_ttl_s`, and the revocations it made or read. A spent refresh token needs no memo: its
conditional write refuses it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import jwt
from cachetools import TTLCache

from catalog.credentials import Principal
from catalog.sessions import SessionGrant

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

ISSUER = "bedrock-cost-keeper"
ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]
_REQUIRED = ["exp", "iat", "nbf", "jti", "sub", "typ", "aud", "gen", "sep", "fam", "sat"]
# Bounds of each process's memos; past them the oldest answers go and are read again when needed.
MEMO_ENTRIES = 100_000


class InvalidToken(ValueError):
    """Not a token this service issued for this use: bad signature, wrong type, malformed claims."""


class TokenExpired(InvalidToken):
    """A token of ours whose lifetime is over: the client should authenticate afresh."""


class TokenRevoked(Exception):
    """A token of ours that was revoked, or a refresh token that was already spent."""


class SessionEnded(TokenRevoked):
    """The token's session is over: its secret was retired by a rotation, or an admin ended the client's sessions."""


class RefreshTokenReused(TokenRevoked):
    """A spent refresh token came back: its family is revoked, since either holder may be a thief."""


@dataclass(frozen=True)
class Session:
    grant: SessionGrant
    family: str
    started_at: int


@dataclass(frozen=True)
class TokenClaims:
    principal: Principal
    token_type: TokenType
    jti: str
    expires_at: int
    session: Session
    # started_at + the absolute session lifetime: no token of the session outlives it.
    session_ends_at: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_in_s: int
    refresh_expires_in_s: int


class TokenIssuer:
    def __init__(
        self,
        secret: str,
        access_ttl_s: int,
        refresh_ttl_s: int,
        max_session_s: int | None = None,
        audience: str = ISSUER,
        leeway_s: int = 0,
    ) -> None:
        self._secret = secret
        self._access_ttl_s = access_ttl_s
        self._refresh_ttl_s = refresh_ttl_s
        self._max_session_s = refresh_ttl_s if max_session_s is None else max_session_s
        self._audience = audience
        # Replicas' clocks differ by a little: a token minted by one must not be "not yet valid" on another.
        self._leeway_s = leeway_s

    def _encode(self, principal: Principal, session: Session, token_type: TokenType, exp: int, now: int) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": self._audience,
            "sub": principal.client_id,
            "org_id": principal.org_id,
            "typ": token_type,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "gen": session.grant.generation,
            "sep": session.grant.epoch,
            "fam": session.family,
            "sat": session.started_at,
        }
        if principal.app_id is not None:
            claims["app_id"] = principal.app_id
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def _pair(self, principal: Principal, session: Session, now: int) -> TokenPair:
        ends_at = session.started_at + self._max_session_s
        access_exp = min(now + self._access_ttl_s, ends_at)
        refresh_exp = min(now + self._refresh_ttl_s, ends_at)
        return TokenPair(
            access_token=self._encode(principal, session, "access", access_exp, now),
            refresh_token=self._encode(principal, session, "refresh", refresh_exp, now),
            access_expires_in_s=access_exp - now,
            refresh_expires_in_s=refresh_exp - now,
        )

    def issue(self, principal: Principal, grant: SessionGrant, now: int | None = None) -> TokenPair:
        """The first pair of a new session."""
        now = int(time.time()) if now is None else now
        return self._pair(principal, Session(grant, str(uuid.uuid4()), now), now)

    def renew(self, refresh: TokenClaims, now: int | None = None) -> TokenPair:
        """The next pair of the refresh token's session: same family, same end."""
        now = int(time.time()) if now is None else now
        return self._pair(refresh.principal, refresh.session, now)

    def decode(self, token: str, expected: TokenType | None, now: int | None = None) -> TokenClaims:
        now = int(time.time()) if now is None else now
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                audience=self._audience,
                leeway=self._leeway_s,
                # exp is checked below, exactly and against `now`: the leeway is for iat and nbf only.
                options={"require": _REQUIRED, "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken("token invalid") from exc
        token_type = claims.get("typ")
        if token_type not in ("access", "refresh") or (expected is not None and token_type != expected):
            raise InvalidToken(f"not an {expected} token")
        principal = Principal.parse(str(claims["sub"]))
        if principal is None or principal.org_id != claims.get("org_id") or principal.app_id != claims.get("app_id"):
            raise InvalidToken("token subject invalid")
        expires_at, started_at = _int_claim(claims, "exp"), _int_claim(claims, "sat")
        if expires_at <= now:
            raise TokenExpired("token expired")
        session = Session(
            SessionGrant(_int_claim(claims, "gen"), _int_claim(claims, "sep")), str(claims["fam"]), started_at
        )
        return TokenClaims(
            principal, token_type, str(claims["jti"]), expires_at, session, started_at + self._max_session_s
        )


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidToken(f"claim {name} is not an integer")
    return value


def _family_key(claims: TokenClaims) -> str:
    # Token ids are UUIDs, so no token id can be mistaken for a family's key.
    return f"family#{claims.session.family}"


class RevocationStore:
    def __init__(self, ddb: DynamoDBClient, table: str, cache_ttl_s: float, memo_ttl_s: float = 3600.0) -> None:
        self._ddb = ddb
        self._table = table
        self._not_revoked: TTLCache[str, bool] | None = TTLCache(MEMO_ENTRIES, cache_ttl_s) if cache_ttl_s > 0 else None
        # Token ids and family keys known to be revoked. Forgetting one costs a read, never a wrong answer.
        self._revoked: TTLCache[str, bool] = TTLCache(MEMO_ENTRIES, memo_ttl_s)

    async def _put(self, pk: str, claims: TokenClaims, expires_at: int, conditional: bool) -> bool:
        try:
            await self._ddb.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": pk},
                    "sub": {"S": claims.principal.client_id},
                    "typ": {"S": claims.token_type if pk == claims.jti else "family"},
                    "expires_at": {"N": str(expires_at)},
                },
                # Unconditional writes (a family) put an always-true condition: one call shape for both.
                ConditionExpression="attribute_not_exists(pk)" if conditional else "attribute_not_exists(no_such)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def revoke(self, claims: TokenClaims) -> None:
        """Revoke one token (RFC 7009); revoking it again is no error."""
        self._revoked[claims.jti] = True
        await self._put(claims.jti, claims, claims.expires_at, conditional=True)

    async def spend(self, refresh: TokenClaims) -> bool:
        """Use up a refresh token; False if it was spent or revoked before (only one caller can ever get True)."""
        return await self._put(refresh.jti, refresh, refresh.expires_at, conditional=True)

    async def revoke_family(self, claims: TokenClaims) -> None:
        """Revoke every token of the claims' session, issued or yet to be."""
        key = _family_key(claims)
        self._revoked[key] = True
        await self._put(key, claims, claims.session_ends_at, conditional=False)

    async def _exists(self, pk: str) -> bool:
        response = await self._ddb.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return "Item" in response

    async def family_revoked(self, claims: TokenClaims) -> bool:
        return await self._any_revoked([_family_key(claims)])

    async def is_revoked(self, claims: TokenClaims) -> bool:
        """The token itself or its family."""
        return await self._any_revoked([claims.jti, _family_key(claims)])

    async def _any_revoked(self, keys: list[str]) -> bool:
        if any(k in self._revoked for k in keys):
            return True
        memo = "|".join(keys)
        if self._not_revoked is not None and memo in self._not_revoked:
            return False
        found = await asyncio.gather(*(self._exists(k) for k in keys))
        for key, revoked in zip(keys, found, strict=True):
            if revoked:
                self._revoked[key] = True
        if any(found):
            return True
        if self._not_revoked is not None:
            self._not_revoked[memo] = True
        return False
