"""catalog/token_caps.py and its check at submission: one event cannot report more tokens than its org allows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from catalog.model import Org, OrgSettings
from catalog.token_caps import DEFAULT_TOKEN_CAPS, TokenCaps, TokensOverCap, check_caps
from catalog.token_counts import MAX_TOKENS_PER_CATEGORY, TOKEN_FIELDS, TokenCounts
from ingest_api.submission import Rejection, UsageSubmission, check_against
from tests.unit.factories import app, org

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def test_every_token_category_has_a_default_cap_and_an_override() -> None:
    assert set(DEFAULT_TOKEN_CAPS) == set(TOKEN_FIELDS) == set(TokenCaps.model_fields)
    assert all(0 < cap < MAX_TOKENS_PER_CATEGORY for cap in DEFAULT_TOKEN_CAPS.values())


def test_counts_up_to_the_caps_pass_and_beyond_them_are_refused_with_each_category_named() -> None:
    check_caps(TokenCounts(**DEFAULT_TOKEN_CAPS), None)
    with pytest.raises(TokensOverCap) as info:
        check_caps(TokenCounts(output_tokens=10**9, input_tokens=5, cache_read_tokens=2_000_001), None)
    assert info.value.details == {
        "output_tokens": {"tokens": 10**9, "cap": DEFAULT_TOKEN_CAPS["output_tokens"]},
        "cache_read_tokens": {"tokens": 2_000_001, "cap": DEFAULT_TOKEN_CAPS["cache_read_tokens"]},
    }


def test_an_org_raises_or_lowers_a_category_and_keeps_the_defaults_of_the_others() -> None:
    caps = TokenCaps(output_tokens=1_000_000, input_tokens=100)
    assert caps.effective() == {**DEFAULT_TOKEN_CAPS, "output_tokens": 1_000_000, "input_tokens": 100}
    check_caps(TokenCounts(output_tokens=900_000), caps)
    with pytest.raises(TokensOverCap):
        check_caps(TokenCounts(input_tokens=101), caps)


def capped_org(caps: dict[str, int] | None) -> Org:
    base = org()
    settings = OrgSettings.model_validate({**base.settings.model_dump(), "max_tokens_per_event": caps})
    return base.model_copy(update={"settings": settings})


@pytest.mark.parametrize(
    ("caps", "output_tokens", "refused"),
    [
        (None, 300_000, False),
        (None, 300_001, True),
        ({"output_tokens": 5_000_000}, 4_000_000, False),
        ({"output_tokens": 50}, 51, True),
    ],
)
def test_submissions_are_checked_against_their_orgs_caps(
    caps: dict[str, int] | None, output_tokens: int, refused: bool
) -> None:
    submission = UsageSubmission(
        request_id="0f8fad5b-d9cb-469f-a165-70867728950e",
        model_label="standard",
        output_tokens=output_tokens,
        timestamp=NOW,
    )
    if not refused:
        check_against(submission, capped_org(caps), app(), NOW, 60, 900)
        return
    with pytest.raises(Rejection) as info:
        check_against(submission, capped_org(caps), app(), NOW, 60, 900)
    cap = (caps or DEFAULT_TOKEN_CAPS)["output_tokens"]
    assert (info.value.status, info.value.code) == (422, "TOKENS_OVER_CAP")
    assert info.value.details == {"output_tokens": {"tokens": output_tokens, "cap": cap}}


def test_caps_are_part_of_the_orgs_settings_and_validated() -> None:
    with pytest.raises(ValueError, match="max_tokens_per_event"):
        capped_org({"output_tokens": -1})
    with pytest.raises(ValueError, match="max_tokens_per_event"):
        capped_org({"reasoning_tokens": 5})
