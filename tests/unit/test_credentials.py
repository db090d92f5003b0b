"""catalog/credentials.py: client ids, secret hashing and rotation with a grace period."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.credentials import (
    MAX_GRACE_HOURS,
    SECRET_PREFIX,
    Principal,
    StoredSecret,
    hash_secret,
    matching_generation,
    new_secret,
    rotated,
    secret_matches,
)
from catalog.model import is_slug
from catalog.sessions import SessionGrant, SessionState
from tests.unit.factories import ORG_ID, OTHER_ORG_ID

NOW_S = 1_718_452_800
HOUR_S = 3600

# --- Principal ------------------------------------------------------------------------------------------------------


def test_client_id_formats() -> None:
    assert Principal(ORG_ID).client_id == f"org-{ORG_ID}"
    assert Principal(ORG_ID, "chatbot").client_id == f"org-{ORG_ID}-app-chatbot"


@pytest.mark.parametrize("principal", [Principal(ORG_ID), Principal(ORG_ID, "chatbot"), Principal(OTHER_ORG_ID, "x")])
def test_parse_inverts_client_id(principal: Principal) -> None:
    assert Principal.parse(principal.client_id) == principal


def test_app_ids_that_contain_the_separator_still_parse_to_the_right_principal() -> None:
    # The first '-app-' is the separator because a UUID (hex and '-') can never contain it.
    p = Principal(ORG_ID, "my-app-app-x")
    assert p.client_id == f"org-{ORG_ID}-app-my-app-app-x"
    assert Principal.parse(p.client_id) == p
    assert Principal.parse(f"org-{ORG_ID}-app-app") == Principal(ORG_ID, "app")


@pytest.mark.parametrize(
    "client_id",
    [
        "",
        ORG_ID,  # no prefix
        f"app-{ORG_ID}",
        f"ORG-{ORG_ID}",
        f"org-{ORG_ID.upper()}",  # same UUID, other spelling: must not name a second principal
        f"org-{ORG_ID.upper()}-app-chatbot",
        f"org-{ORG_ID}-app-",  # empty app id
        f"org-{ORG_ID}-app-Chatbot",
        f"org-{ORG_ID}-app-chat#bot",  # key separator in the app id
        f"org-{ORG_ID}-app-chatbot\n",
        f"org-{ORG_ID}-app--chatbot",
        f"org-{ORG_ID}#DAY#2024-01-01",
        f"org-{ORG_ID}-apps-chatbot",
        f"org-{ORG_ID}-chatbot",
        f"org-{ORG_ID}\n",
        "org-acme-app-chatbot",  # org slug instead of a UUID
        f"org-{ORG_ID[:-1]}-app-chatbot",
    ],
)
def test_parse_rejects_malformed_client_ids(client_id: str) -> None:
    assert Principal.parse(client_id) is None


app_ids = st.from_regex(r"\A[a-z0-9](?:[a-z0-9_-]{0,20}[a-z0-9])?\Z").filter(is_slug)


@given(st.uuids(), st.none() | app_ids)
def test_parse_round_trips_every_valid_principal(org_uuid: uuid.UUID, app_id: str | None) -> None:
    p = Principal(str(org_uuid), app_id)
    assert Principal.parse(p.client_id) == p


@given(st.uuids(), st.none() | app_ids, st.uuids(), st.none() | app_ids)
def test_distinct_principals_have_distinct_client_ids(
    org_a: uuid.UUID, app_a: str | None, org_b: uuid.UUID, app_b: str | None
) -> None:
    a, b = Principal(str(org_a), app_a), Principal(str(org_b), app_b)
    assert (a.client_id == b.client_id) == (a == b)


near_client_ids = st.builds(
    lambda org_uuid, tail: f"org-{org_uuid}{tail}",
    st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper()),
    st.text(alphabet="-apx#\nA0_", max_size=16),
)


@given(near_client_ids | st.text(max_size=80))
def test_whatever_parses_names_itself(client_id: str) -> None:
    # No string other than a principal's own client id parses to that principal.
    p = Principal.parse(client_id)
    if p is not None:
        assert p.client_id == client_id


# --- secrets --------------------------------------------------------------------------------------------------------


def test_new_secrets_are_prefixed_random_and_long() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for s in secrets:
        assert s.startswith(SECRET_PREFIX)
        assert len(s) - len(SECRET_PREFIX) >= 43  # 32 bytes, url-safe base64


def test_hash_is_sha256_hex_and_not_the_secret() -> None:
    s = new_secret()
    assert hash_secret(s) == hashlib.sha256(s.encode()).hexdigest()
    assert s not in hash_secret(s)
    assert hash_secret(s) != hash_secret(s + "x")


def test_secret_matches_the_current_secret_only() -> None:
    s = new_secret()
    stored = [StoredSecret(sha256=hash_secret(s))]
    assert secret_matches(s, stored, NOW_S)
    assert not secret_matches(new_secret(), stored, NOW_S)
    assert not secret_matches(hash_secret(s), stored, NOW_S)  # the stored hash is not a credential
    assert not secret_matches(s, [], NOW_S)


def test_an_old_secret_works_until_its_not_after() -> None:
    s = new_secret()
    stored = [StoredSecret(sha256=hash_secret(new_secret())), StoredSecret(sha256=hash_secret(s), not_after=NOW_S)]
    assert secret_matches(s, stored, NOW_S - 1)
    assert not secret_matches(s, stored, NOW_S)
    assert not secret_matches(s, stored, NOW_S + 1)


# --- rotation -------------------------------------------------------------------------------------------------------


def test_rotation_without_grace_drops_the_old_secret_at_once() -> None:
    old, new = new_secret(), new_secret()
    after = rotated([StoredSecret(sha256=hash_secret(old))], hash_secret(new), 0, NOW_S)
    assert after == [StoredSecret(sha256=hash_secret(new), generation=1)]
    assert secret_matches(new, after, NOW_S)
    assert not secret_matches(old, after, NOW_S)


@pytest.mark.parametrize("grace_hours", [1, 24, MAX_GRACE_HOURS])
def test_rotation_with_grace_keeps_the_old_secret_for_exactly_the_grace(grace_hours: int) -> None:
    old, new = new_secret(), new_secret()
    after = rotated([StoredSecret(sha256=hash_secret(old))], hash_secret(new), grace_hours, NOW_S)
    expiry = NOW_S + grace_hours * HOUR_S
    assert after == [
        StoredSecret(sha256=hash_secret(new), generation=1),
        StoredSecret(sha256=hash_secret(old), not_after=expiry),
    ]
    assert secret_matches(old, after, expiry - 1)
    assert not secret_matches(old, after, expiry)
    # The new secret has no end.
    assert secret_matches(new, after, NOW_S + 10 * 365 * 24 * HOUR_S)


@pytest.mark.parametrize("grace_hours", [-1, MAX_GRACE_HOURS + 1, 10_000])
def test_rotation_rejects_grace_out_of_range(grace_hours: int) -> None:
    with pytest.raises(ValueError, match="grace period"):
        rotated([StoredSecret(sha256=hash_secret(new_secret()))], hash_secret(new_secret()), grace_hours, NOW_S)


def test_rotation_drops_expired_secrets_and_keeps_live_ones() -> None:
    first, second, third = new_secret(), new_secret(), new_secret()
    after_one = rotated([StoredSecret(sha256=hash_secret(first))], hash_secret(second), 24, NOW_S)
    # Rotating again within the first grace keeps `first` until its own expiry: grace is not extended.
    after_two = rotated(after_one, hash_secret(third), 24, NOW_S + HOUR_S)
    assert after_two == [
        StoredSecret(sha256=hash_secret(third), generation=2),
        StoredSecret(sha256=hash_secret(second), not_after=NOW_S + HOUR_S + 24 * HOUR_S, generation=1),
        StoredSecret(sha256=hash_secret(first), not_after=NOW_S + 24 * HOUR_S),
    ]
    assert all(secret_matches(s, after_two, NOW_S + 2 * HOUR_S) for s in (first, second, third))
    # A day later `first` has expired; a rotation with a 2 h grace drops it and caps `second` at the new grace.
    fourth = new_secret()
    after_three = rotated(after_two, hash_secret(fourth), 2, NOW_S + 24 * HOUR_S)
    assert after_three == [
        StoredSecret(sha256=hash_secret(fourth), generation=3),
        StoredSecret(sha256=hash_secret(third), not_after=NOW_S + 26 * HOUR_S, generation=2),
        StoredSecret(sha256=hash_secret(second), not_after=NOW_S + HOUR_S + 24 * HOUR_S, generation=1),
    ]
    assert not secret_matches(first, after_three, NOW_S + 24 * HOUR_S)


def test_an_emergency_rotation_without_grace_cuts_off_every_older_secret() -> None:
    # After a leak: a secret still inside an earlier rotation's grace must stop working too.
    first, second, third = new_secret(), new_secret(), new_secret()
    after_one = rotated([StoredSecret(sha256=hash_secret(first))], hash_secret(second), 168, NOW_S)
    after_two = rotated(after_one, hash_secret(third), 0, NOW_S + HOUR_S)
    assert after_two == [StoredSecret(sha256=hash_secret(third), generation=2)]
    assert not secret_matches(first, after_two, NOW_S + HOUR_S)
    assert not secret_matches(second, after_two, NOW_S + HOUR_S)
    assert secret_matches(third, after_two, NOW_S + HOUR_S)


def test_rotation_of_an_empty_list_yields_the_new_secret() -> None:
    new = new_secret()
    assert rotated([], hash_secret(new), 24, NOW_S) == [StoredSecret(sha256=hash_secret(new), generation=1)]


# --- generations and sessions ---------------------------------------------------------------------------------------


def test_each_rotation_mints_the_next_generation_and_a_match_names_its_own() -> None:
    first, second, third = new_secret(), new_secret(), new_secret()
    stored = rotated(
        rotated([StoredSecret(sha256=hash_secret(first))], hash_secret(second), 24, NOW_S),
        hash_secret(third),
        24,
        NOW_S,
    )
    assert [matching_generation(s, stored, NOW_S) for s in (first, second, third)] == [0, 1, 2]
    assert matching_generation(new_secret(), stored, NOW_S) is None
    assert matching_generation(first, stored, NOW_S + 24 * HOUR_S) is None


def test_a_session_lives_as_long_as_the_secret_that_began_it() -> None:
    old, new = new_secret(), new_secret()
    before = [StoredSecret(sha256=hash_secret(old))]
    old_session, unknown = SessionGrant(generation=0, epoch=0), SessionGrant(generation=7, epoch=0)
    assert SessionState(tuple(before), 0).admits(old_session, NOW_S)
    assert not SessionState(tuple(before), 0).admits(unknown, NOW_S)
    graced = SessionState(tuple(rotated(before, hash_secret(new), 2, NOW_S)), 0)
    assert graced.admits(old_session, NOW_S + 2 * HOUR_S - 1)
    assert not graced.admits(old_session, NOW_S + 2 * HOUR_S)  # the grace ended, and the session with it
    assert graced.admits(SessionGrant(1, 0), NOW_S + 2 * HOUR_S)
    cut = SessionState(tuple(rotated(before, hash_secret(new), 0, NOW_S)), 0)
    assert not cut.admits(old_session, NOW_S)


def test_a_new_session_epoch_ends_every_earlier_session() -> None:
    stored = (StoredSecret(sha256=hash_secret(new_secret())),)
    assert SessionState(stored, 1).admits(SessionGrant(0, 1), NOW_S)
    assert not SessionState(stored, 2).admits(SessionGrant(0, 1), NOW_S)
