"""ingest_api/tokens.py::TokenIssuer: HS256 access and refresh tokens. (RevocationStore needs DynamoDB: integration.)"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from catalog.credentials import Principal
from catalog.sessions import SessionGrant
from ingest_api.tokens import ALGORITHM, ISSUER, InvalidToken, TokenExpired, TokenIssuer
from tests.unit.factories import ORG_ID, OTHER_ORG_ID

SECRET = "unit-test-signing-secret-0123456789abcdef"
ACCESS_TTL_S = 900
REFRESH_TTL_S = 86_400
MAX_SESSION_S = 3 * REFRESH_TTL_S
LEEWAY_S = 10
APP = Principal(ORG_ID, "chatbot")
ORG = Principal(ORG_ID)
GRANT = SessionGrant(generation=3, epoch=1)


def issuer(secret: str = SECRET, audience: str = ISSUER) -> TokenIssuer:
    return TokenIssuer(secret, ACCESS_TTL_S, REFRESH_TTL_S, MAX_SESSION_S, audience=audience, leeway_s=LEEWAY_S)


def now_s() -> int:
    return int(time.time())


def forge(claims: dict[str, Any], secret: str = SECRET) -> str:
    """A token signed with the real secret but with claims the issuer would never write."""
    base: dict[str, Any] = {"iss": ISSUER, "sub": APP.client_id, "org_id": ORG_ID, "app_id": "chatbot", "typ": "access"}
    base |= {"jti": "j-1", "iat": now_s(), "nbf": now_s(), "exp": now_s() + 600, "aud": ISSUER}
    base |= {"gen": 3, "sep": 1, "fam": "f-1", "sat": now_s()}
    merged = {k: v for k, v in (base | claims).items() if v is not None}
    return jwt.encode(merged, secret, algorithm=ALGORITHM)


@pytest.mark.parametrize("principal", [APP, ORG, Principal(OTHER_ORG_ID, "my-app-x")])
def test_issue_and_decode_round_trip(principal: Principal) -> None:
    t = issuer()
    now = now_s()
    pair = t.issue(principal, GRANT, now=now)
    assert (pair.access_expires_in_s, pair.refresh_expires_in_s) == (ACCESS_TTL_S, REFRESH_TTL_S)
    access = t.decode(pair.access_token, "access")
    refresh = t.decode(pair.refresh_token, "refresh")
    assert access.principal == principal
    assert refresh.principal == principal
    assert (access.token_type, refresh.token_type) == ("access", "refresh")
    assert access.expires_at == now + ACCESS_TTL_S
    assert refresh.expires_at == now + REFRESH_TTL_S
    # Each token has its own id: revoking the refresh token must not revoke the access token, nor a later pair.
    later = t.decode(t.issue(principal, GRANT, now=now).access_token, "access")
    assert len({access.jti, refresh.jti, later.jti}) == 3


def test_decode_without_an_expected_type_accepts_both() -> None:
    t = issuer()
    pair = t.issue(APP, GRANT)
    assert t.decode(pair.access_token, None).token_type == "access"
    assert t.decode(pair.refresh_token, None).token_type == "refresh"


def test_wrong_token_type_is_rejected() -> None:
    t = issuer()
    pair = t.issue(APP, GRANT)
    with pytest.raises(InvalidToken, match="not an access token"):
        t.decode(pair.refresh_token, "access")
    with pytest.raises(InvalidToken, match="refresh token"):
        t.decode(pair.access_token, "refresh")


def test_unknown_token_type_is_rejected_even_when_any_type_is_expected() -> None:
    with pytest.raises(InvalidToken):
        issuer().decode(forge({"typ": "id"}), None)


def test_expired_tokens_are_rejected() -> None:
    t = issuer()
    pair = t.issue(APP, GRANT, now=now_s() - REFRESH_TTL_S - 10)
    with pytest.raises(InvalidToken, match="expired"):
        t.decode(pair.access_token, "access")
    with pytest.raises(InvalidToken, match="expired"):
        t.decode(pair.refresh_token, "refresh")


def test_a_token_signed_with_another_secret_is_rejected() -> None:
    pair = issuer("another-signing-secret-0123456789abcdef").issue(APP, GRANT)
    with pytest.raises(InvalidToken, match="invalid"):
        issuer().decode(pair.access_token, "access")


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_payload_is_rejected() -> None:
    t = issuer()
    header, payload, signature = t.issue(APP, GRANT).access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    # Claim another org's app, keeping the original signature.
    claims |= {"sub": Principal(OTHER_ORG_ID, "chatbot").client_id, "org_id": OTHER_ORG_ID}
    with pytest.raises(InvalidToken, match="invalid"):
        t.decode(f"{header}.{b64(claims)}.{signature}", "access")


def test_tampered_signature_is_rejected() -> None:
    t = issuer()
    header, payload, signature = t.issue(APP, GRANT).access_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidToken):
        t.decode(f"{header}.{payload}.{flipped}", "access")


def test_unsigned_tokens_are_rejected() -> None:
    t = issuer()
    _, payload, _ = t.issue(APP, GRANT).access_token.split(".")
    with pytest.raises(InvalidToken):
        t.decode(f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.", "access")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b"])
def test_garbage_is_rejected(token: str) -> None:
    with pytest.raises(InvalidToken):
        issuer().decode(token, "access")


@pytest.mark.parametrize("missing", ["exp", "iat", "nbf", "jti", "sub", "typ", "aud", "gen", "sep", "fam", "sat"])
def test_required_claims(missing: str) -> None:
    with pytest.raises(InvalidToken):
        issuer().decode(forge({missing: None}), None)


def test_wrong_issuer_is_rejected() -> None:
    with pytest.raises(InvalidToken):
        issuer().decode(forge({"iss": "someone-else"}), "access")
    with pytest.raises(InvalidToken):
        issuer().decode(forge({"iss": None}), "access")


def test_forged_claims_pass_only_when_consistent() -> None:
    # The forge helper itself yields a valid token: the rejections below are down to the one claim changed.
    claims = issuer().decode(forge({}), "access")
    assert claims.principal == APP


@pytest.mark.parametrize(
    "claims",
    [
        {"org_id": OTHER_ORG_ID},  # subject names one org, org_id claim another
        {"org_id": None},
        {"app_id": "search"},  # subject names one app, app_id claim another
        {"app_id": None},  # app subject without its app_id claim
        {"sub": ORG.client_id},  # org subject carrying an app_id claim
        {"sub": f"org-{ORG_ID.upper()}-app-chatbot"},
        {"sub": "org-acme-app-chatbot"},
        {"sub": f"org-{ORG_ID}-app-chat#bot", "app_id": "chat#bot"},
    ],
)
def test_subject_mismatch_is_rejected(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken, match="subject invalid"):
        issuer().decode(forge(claims), "access")


def test_org_subject_without_app_claim_is_accepted() -> None:
    claims = issuer().decode(forge({"sub": ORG.client_id, "app_id": None}), "access")
    assert claims.principal == ORG


def test_tokens_carry_their_session_and_a_refresh_keeps_it() -> None:
    t = issuer()
    now = now_s() - 120
    first = t.issue(APP, GRANT, now=now)
    access, refresh = t.decode(first.access_token, "access"), t.decode(first.refresh_token, "refresh")
    assert access.session == refresh.session
    assert (access.session.grant, access.session.started_at) == (GRANT, now)
    renewed = t.renew(refresh, now=now + 60)
    again = t.decode(renewed.refresh_token, "refresh", now=now + 60)
    assert again.session == refresh.session and again.jti != refresh.jti
    # A new session is a new family.
    assert t.decode(t.issue(APP, GRANT).access_token, "access").session.family != access.session.family


def test_a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() -> None:
    t = issuer()
    started = now_s() - MAX_SESSION_S + 100
    refresh = t.decode(t.issue(APP, GRANT, now=started).refresh_token, "refresh", now=started)
    at = started
    while at + REFRESH_TTL_S // 2 < started + MAX_SESSION_S:
        at += REFRESH_TTL_S // 2
        pair = t.renew(refresh, now=at)
        refresh = t.decode(pair.refresh_token, "refresh", now=at)
    assert refresh.expires_at == started + MAX_SESSION_S == refresh.session_ends_at
    assert pair.refresh_expires_in_s == started + MAX_SESSION_S - at
    assert pair.access_expires_in_s <= pair.refresh_expires_in_s
    with pytest.raises(TokenExpired):
        t.decode(pair.refresh_token, "refresh", now=started + MAX_SESSION_S)


def test_the_audience_must_be_ours() -> None:
    with pytest.raises(InvalidToken):
        issuer().decode(issuer(audience="another-deployment").issue(APP, GRANT).access_token, "access")
    with pytest.raises(InvalidToken):
        issuer().decode(forge({"aud": "another-deployment"}), "access")


def test_iat_and_nbf_get_a_leeway_and_exp_none() -> None:
    ahead = now_s() + LEEWAY_S // 2  # minted by a replica whose clock runs a little ahead
    assert issuer().decode(forge({"iat": ahead, "nbf": ahead}), "access").principal == APP
    far = now_s() + LEEWAY_S * 6
    with pytest.raises(InvalidToken):
        issuer().decode(forge({"iat": far, "nbf": far}), "access")
    with pytest.raises(TokenExpired):
        issuer().decode(forge({"exp": now_s() - 1}), "access")


@pytest.mark.parametrize("claim", ["gen", "sep", "sat"])
def test_session_claims_must_be_integers(claim: str) -> None:
    with pytest.raises(InvalidToken):
        issuer().decode(forge({claim: "1"}), "access")
    with pytest.raises(InvalidToken):
        issuer().decode(forge({claim: True}), "access")
