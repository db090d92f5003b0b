"""Access and refresh tokens (HS256 JWTs) and their revocation.

A revoked token id is kept in the revoked-tokens table until the token would have expired anyway (its TTL), so the
table never grows beyond the live tokens. Each process remembers "not revoked" answers briefly; its own revocations
it knows at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import jwt

from catalog.credentials import Principal

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

ISSUER = "bedrock-cost-keeper"
ALGORITHM = "HS256"
TokenType = Literal["access", "refresh"]


class InvalidToken(ValueError):
    """Not a token this service issued for this use: bad signature, wrong type, malformed claims."""


class TokenExpired(InvalidToken):
    """A token of ours whose lifetime is over: the client should authenticate afresh."""


class TokenRevoked(Exception):
    """A token of ours that was revoked, or a refresh token that was already spent."""


@dataclass(frozen=True)
class TokenClaims:
    principal: Principal
    token_type: TokenType
    jti: str
    expires_at: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_in_s: int
    refresh_expires_in_s: int


class TokenIssuer:
    def __init__(self, secret: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._secret = secret
        self._access_ttl_s = access_ttl_s
        self._refresh_ttl_s = refresh_ttl_s

    def _encode(self, principal: Principal, token_type: TokenType, ttl_s: int, now: int) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": principal.client_id,
            "org_id": principal.org_id,
            "typ": token_type,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + ttl_s,
        }
        if principal.app_id is not None:
            claims["app_id"] = principal.app_id
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def issue(self, principal: Principal, now: int | None = None) -> TokenPair:
        now = int(time.time()) if now is None else now
        return TokenPair(
            access_token=self._encode(principal, "access", self._access_ttl_s, now),
            refresh_token=self._encode(principal, "refresh", self._refresh_ttl_s, now),
            access_expires_in_s=self._access_ttl_s,
            refresh_expires_in_s=self._refresh_ttl_s,
        )

    def decode(self, token: str, expected: TokenType | None) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "jti", "sub", "typ"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("token invalid") from exc
        token_type = claims.get("typ")
        if token_type not in ("access", "refresh") or (expected is not None and token_type != expected):
            raise InvalidToken(f"not an {expected} token")
        principal = Principal.parse(str(claims["sub"]))
        if principal is None or principal.org_id != claims.get("org_id") or principal.app_id != claims.get("app_id"):
            raise InvalidToken("token subject invalid")
        return TokenClaims(principal, token_type, str(claims["jti"]), int(claims["exp"]))


class RevocationStore:
    def __init__(self, ddb: DynamoDBClient, table: str, cache_ttl_s: float) -> None:
        self._ddb = ddb
        self._table = table
        self._cache_ttl_s = cache_ttl_s
        self._not_revoked_until: dict[str, float] = {}
        self._revoked: dict[str, int] = {}

    async def revoke(self, claims: TokenClaims) -> bool:
        """Revoke a token id; False if it was revoked already (a refresh token used twice)."""
        if len(self._revoked) > 100_000:
            # Past its expiry a token fails on its own; remembering its revocation is no longer needed.
            now_s = time.time()
            self._revoked = {jti: exp for jti, exp in self._revoked.items() if exp > now_s}
        self._revoked[claims.jti] = claims.expires_at
        self._not_revoked_until.pop(claims.jti, None)
        try:
            await self._ddb.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": claims.jti},
                    "sub": {"S": claims.principal.client_id},
                    "typ": {"S": claims.token_type},
                    "expires_at": {"N": str(claims.expires_at)},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def is_revoked(self, claims: TokenClaims) -> bool:
        now = time.monotonic()
        if claims.jti in self._revoked:
            return True
        if self._not_revoked_until.get(claims.jti, 0.0) > now:
            return False
        response = await self._ddb.get_item(TableName=self._table, Key={"pk": {"S": claims.jti}})
        if "Item" in response:
            self._revoked[claims.jti] = claims.expires_at
            return True
        if len(self._not_revoked_until) > 100_000:
            self._not_revoked_until = {k: v for k, v in self._not_revoked_until.items() if v > now}
        self._not_revoked_until[claims.jti] = now + self._cache_ttl_s
        return False
