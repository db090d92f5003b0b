"""catalog/model.py: id validation and the org/app settings validators."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from catalog.model import (
    MAX_MODELS,
    MAX_QUOTA_USD_MICROS,
    App,
    AppSettings,
    Org,
    OrgSettings,
    Prices,
    is_org_id,
    is_slug,
)
from tests.unit.factories import ORG_ID, app, org

# --- ids ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [ORG_ID, "00000000-0000-0000-0000-000000000000", str(uuid.uuid4())])
def test_canonical_lowercase_uuids_are_org_ids(value: str) -> None:
    assert is_org_id(value)


@pytest.mark.parametrize(
    "value",
    [
        ORG_ID.upper(),  # same UUID, not canonical: two spellings would be two orgs
        ORG_ID.replace("-", ""),
        "{" + ORG_ID + "}",
        "urn:uuid:" + ORG_ID,
        ORG_ID + "\n",  # '$' alone would let a trailing newline through
        " " + ORG_ID,
        ORG_ID + "#DAY#2024-01-01",  # key separator smuggling
        ORG_ID + "-app-chatbot",  # client-id separator smuggling
        ORG_ID[:-1],
        ORG_ID[:-1] + "g",
        "",
        "acme",
    ],
)
def test_everything_else_is_not_an_org_id(value: str) -> None:
    assert not is_org_id(value)


@given(st.uuids())
def test_every_uuid_in_canonical_form_is_an_org_id(value: uuid.UUID) -> None:
    assert is_org_id(str(value))
    assert not is_org_id(str(value).upper()) or str(value) == str(value).upper()


@pytest.mark.parametrize("value", ["a", "0", "chatbot", "chat-bot", "chat_bot", "a-app-b", "x" * 64, "v2-0"])
def test_slugs(value: str) -> None:
    assert is_slug(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 65,
        "Chatbot",
        "-chatbot",
        "chatbot-",
        "_chatbot",
        "chatbot_",
        "chat--bot",
        "chat#bot",  # key separator
        "APP#x#MODEL#y",
        "chat bot",
        "chat.bot",
        "chatbot\n",  # trailing newline: regex '$' matches before it
        "chätbot",
    ],
)
def test_not_slugs(value: str) -> None:
    assert not is_slug(value)


@given(st.text(max_size=70))
def test_a_slug_never_contains_a_key_separator_or_whitespace(value: str) -> None:
    if is_slug(value):
        assert "#" not in value
        assert value == value.strip()
        assert value.isascii()
        assert value.lower() == value


# --- OrgSettings ------------------------------------------------------------------------------------------------------

MODEL: dict[str, Any] = {
    "bedrock_model_id": "anthropic.claude-3-haiku",
    "prices": {"input_per_mtok_usd_micros": 250_000, "output_per_mtok_usd_micros": 1_250_000},
}


def settings(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "timezone": "Europe/Berlin",
        "models": {"premium": MODEL, "economy": MODEL},
        "model_ordering": ["premium", "economy"],
        "daily_quotas_usd_micros": {"premium": 5_000_000},
    }
    base.update(overrides)
    return base


def test_valid_settings_and_defaults() -> None:
    s = OrgSettings.model_validate(settings())
    assert s.timezone == "Europe/Berlin"
    assert s.quota_scope == "ORG"
    assert s.model_ordering == ["premium", "economy"]
    minimal = OrgSettings.model_validate({"models": {"m": MODEL}, "model_ordering": ["m"]})
    assert minimal.timezone == "UTC"
    assert minimal.daily_quotas_usd_micros == {}
    assert minimal.models["m"].prices.cache_read_per_mtok_usd_micros == 0


def test_ordering_may_leave_out_a_model() -> None:
    # A model without a place in the ordering is priced but never selected.
    assert OrgSettings.model_validate(settings(model_ordering=["economy"])).model_ordering == ["economy"]


def rejected(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        OrgSettings.model_validate(settings(**overrides))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"model_ordering": ["premium", "gpt"]}, "model_ordering names labels with no model"),
        ({"model_ordering": ["premium", "economy", "premium"]}, "repeats a label"),
        ({"daily_quotas_usd_micros": {"gpt": 1}}, "daily_quotas_usd_micros names labels with no model"),
        ({"daily_quotas_usd_micros": {"premium": -1}}, "greater than or equal to 0"),
        ({"daily_quotas_usd_micros": {"premium": MAX_QUOTA_USD_MICROS + 1}}, "less than or equal to"),
        ({"daily_quotas_usd_micros": {"premium": 1.5}}, "int"),  # strict: no floats for money
        ({"daily_quotas_usd_micros": {"premium": "100"}}, "int"),  # strict: no numeric strings either
        ({"timezone": "Mars/Olympus_Mons"}, "unknown IANA time zone"),
        ({"timezone": ""}, "unknown IANA time zone"),
        ({"timezone": "../../etc/passwd"}, "unknown IANA time zone"),
        ({"quota_scope": "TEAM"}, "quota_scope"),
        ({"models": {}}, "models"),
        ({"model_ordering": []}, "model_ordering"),
        ({"models": {"Premium": MODEL}, "model_ordering": ["Premium"]}, "must be 1-64"),
        ({"models": {"a#b": MODEL}, "model_ordering": ["a#b"]}, "must be 1-64"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
        ({"models": {"m": {**MODEL, "region": "us-east-1"}}, "model_ordering": ["m"]}, "Extra inputs"),
        ({"models": {"m": {**MODEL, "bedrock_model_id": ""}}, "model_ordering": ["m"]}, "bedrock_model_id"),
        (
            {
                "models": {"m": {**MODEL, "prices": {**MODEL["prices"], "input_per_mtok_usd_micros": -5}}},
                "model_ordering": ["m"],
            },
            "greater than or equal to 0",
        ),
    ],
)
def test_invalid_settings_are_rejected(overrides: dict[str, Any], fragment: str) -> None:
    rejected(overrides, fragment)


def test_at_most_max_models() -> None:
    labels = [f"m{i}" for i in range(MAX_MODELS + 1)]
    rejected({"models": dict.fromkeys(labels, MODEL), "model_ordering": labels[:1]}, "models")
    ok = OrgSettings.model_validate({"models": dict.fromkeys(labels[:MAX_MODELS], MODEL), "model_ordering": labels[:1]})
    assert len(ok.models) == MAX_MODELS


def test_settings_are_frozen() -> None:
    s = OrgSettings.model_validate(settings())
    with pytest.raises(ValidationError):
        s.timezone = "UTC"  # type: ignore[misc]


def test_prices_reject_floats() -> None:
    with pytest.raises(ValidationError):
        Prices.model_validate({"input_per_mtok_usd_micros": 3.0, "output_per_mtok_usd_micros": 15})


# --- Org and App ------------------------------------------------------------------------------------------------------


def test_org_requires_a_canonical_org_id_and_a_price_version() -> None:
    s = OrgSettings.model_validate(settings())
    assert Org(org_id=ORG_ID, settings=s, price_version=1).org_id == ORG_ID
    with pytest.raises(ValidationError, match="lowercase UUID"):
        Org(org_id=ORG_ID.upper(), settings=s, price_version=1)
    with pytest.raises(ValidationError, match="lowercase UUID"):
        Org(org_id=ORG_ID + "-app-x", settings=s, price_version=1)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Org(org_id=ORG_ID, settings=s, price_version=0)


def test_prices_for() -> None:
    o = Org(org_id=ORG_ID, settings=OrgSettings.model_validate(settings()), price_version=1)
    premium = o.prices_for("premium")
    assert premium is not None
    assert premium.output_per_mtok_usd_micros == 1_250_000
    assert o.prices_for("gpt") is None


@pytest.mark.parametrize("app_id", ["Chatbot", "chat#bot", "chatbot\n", "", "a--b"])
def test_app_ids_are_slugs(app_id: str) -> None:
    with pytest.raises(ValidationError, match="must be 1-64"):
        App(org_id=ORG_ID, app_id=app_id, settings=AppSettings())


def test_app_settings_validation() -> None:
    with pytest.raises(ValidationError, match="model_ordering"):
        AppSettings(model_ordering=[])
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        AppSettings.model_validate({"daily_quotas_usd_micros": {"premium": -1}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        AppSettings.model_validate({"quota_scope": "APP"})


def test_app_check_against_org_names_unknown_labels() -> None:
    o = org(("premium", "economy"))
    app(quotas={"premium": 5}, ordering=["economy", "premium"]).check_against(o)  # known labels pass
    with pytest.raises(ValueError, match=r"\['gpt', 'llama'\]"):
        app(quotas={"gpt": 5, "premium": 1}, ordering=["llama", "gpt"]).check_against(o)


def test_app_ordering_defaults_to_the_orgs() -> None:
    o = org(("premium", "standard", "economy"))
    assert app().ordering(o) == ["premium", "standard", "economy"]
    assert app(ordering=["economy", "premium"]).ordering(o) == ["economy", "premium"]
    # A copy: the caller cannot reorder the org's settings through it.
    app().ordering(o).reverse()
    assert o.settings.model_ordering == ["premium", "standard", "economy"]
