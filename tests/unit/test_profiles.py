"""Inference profiles: their ids, Regions, labels; the price catalog; and the optional check against Bedrock."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from catalog.model import (
    App,
    AppSettings,
    CallingRegionRequired,
    LabelConflict,
    ModelSpec,
    UnknownCallingRegion,
    UnknownLabels,
    UnknownModelLabel,
    resolve_label,
)
from catalog.price_catalog import UnknownCatalogModel, price_catalog
from catalog.profiles import InferenceProfile
from ingest_api.profile_check import ProfileCheckDisabled, ProfileChecker, ProfileCheckFailed, home_region, mismatches
from tests.unit.factories import ORG_ID, org

ROUTE = {
    "bedrock_model_id": "anthropic.claude-sonnet-4-20250514-v1:0",
    "catalog_model": "anthropic.claude-sonnet-4-20250514-v1:0",
}


def profile(
    profile_id: str = "us.anthropic.claude-sonnet-4-20250514-v1:0", regions: dict[str, Any] | None = None
) -> InferenceProfile:
    return InferenceProfile.model_validate(
        {"inference_profile_id": profile_id, "regions": regions or {"us-east-1": ROUTE, "us-west-2": ROUTE}}
    )


@pytest.mark.parametrize(
    "profile_id",
    [
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us-gov.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "apac.amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:application-inference-profile/x9",
    ],
)
def test_system_ids_and_both_kinds_of_arn_are_valid(profile_id: str) -> None:
    assert profile(profile_id).inference_profile_id == profile_id


@pytest.mark.parametrize(
    "profile_id",
    [
        "anthropic.claude-v2",
        "xx.anthropic.claude",
        "arn:aws:s3:::bucket",
        "us.anthropic.claude\n",
        "",
        "us." + "a" * 300,
    ],
)
def test_anything_else_is_not_a_profile_id(profile_id: str) -> None:
    with pytest.raises(ValidationError, match="inference_profile_id"):
        profile(profile_id)


def test_regions_are_region_names() -> None:
    with pytest.raises(ValidationError, match="Region"):
        profile(regions={"us-east-1": ROUTE, "Virginia": ROUTE})


def test_routes_can_be_priced_from_the_catalog() -> None:
    route = profile().regions["us-east-1"]
    assert route.prices.cache_write_1h_per_mtok_usd_micros == 6_000_000
    assert route.batch_discount_percent == 50


def test_a_profile_label_resolves_by_calling_region() -> None:
    tenant = org()
    app = App(org_id=ORG_ID, app_id="chatbot", settings=AppSettings(), profiles={"sonnet": profile()})
    resolved = resolve_label(tenant, app, "sonnet", "us-west-2")
    assert resolved.inference_profile_id == "us.anthropic.claude-sonnet-4-20250514-v1:0"
    assert resolved.bedrock_model_id == "anthropic.claude-sonnet-4-20250514-v1:0"
    # An org label resolves without a Region, and records one if given.
    assert resolve_label(tenant, app, "premium", None).bedrock_model_id == "vendor.premium-v1"
    with pytest.raises(CallingRegionRequired):
        resolve_label(tenant, app, "sonnet", None)
    with pytest.raises(UnknownCallingRegion, match="us-east-1"):
        resolve_label(tenant, app, "sonnet", "eu-west-1")
    with pytest.raises(UnknownModelLabel):
        resolve_label(tenant, app, "other", None)


def test_an_app_may_order_and_cap_its_profiles_but_not_shadow_its_orgs_labels() -> None:
    tenant = org()
    settings = AppSettings(model_ordering=["sonnet", "economy"], daily_quotas_usd_micros={"sonnet": 10})
    App(org_id=ORG_ID, app_id="a", settings=settings, profiles={"sonnet": profile()}).check_against(tenant)
    with pytest.raises(UnknownLabels):
        App(org_id=ORG_ID, app_id="a", settings=settings).check_against(tenant)
    with pytest.raises(LabelConflict, match="premium"):
        App(org_id=ORG_ID, app_id="a", settings=AppSettings(), profiles={"premium": profile()}).check_against(tenant)


def test_the_catalog_is_dated_and_explicit_prices_win() -> None:
    catalog = price_catalog()
    assert catalog.taken_on <= date.today()
    listed = catalog.pricing("amazon.nova-pro-v1:0", "us-west-2")  # no entry of its own: the default
    assert listed.prices.input_per_mtok_usd_micros == 800_000
    assert listed.priority_prices is not None and listed.flex_prices is not None
    spec = ModelSpec.model_validate(
        {
            "catalog_model": "amazon.nova-pro-v1:0",
            "prices": {"input_per_mtok_usd_micros": 1, "output_per_mtok_usd_micros": 2},
            "batch_discount_percent": 40,
        }
    )
    assert (spec.bedrock_model_id, spec.prices.input_per_mtok_usd_micros, spec.batch_discount_percent) == (
        "amazon.nova-pro-v1:0",
        1,
        40,
    )
    assert spec.flex_prices == listed.flex_prices
    with pytest.raises(UnknownCatalogModel):
        catalog.pricing("vendor.unknown-v9")
    with pytest.raises(ValidationError, match="no model"):
        ModelSpec.model_validate({"catalog_model": "vendor.unknown-v9"})


def test_global_profiles_are_priced_below_geographic_ones() -> None:
    catalog = price_catalog()
    base = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    global_price = catalog.pricing("global." + base).prices.input_per_mtok_usd_micros
    us_price = catalog.pricing("us." + base).prices.input_per_mtok_usd_micros
    assert global_price < us_price


# --- the optional check against Bedrock's GetInferenceProfile ------------------------------------------------------


def described(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"models": [{"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{m}"} for r, m in pairs]}


def test_the_check_compares_each_declared_route_with_bedrocks_answer() -> None:
    model = ROUTE["bedrock_model_id"]
    assert mismatches(profile(), described(("us-east-1", model), ("us-west-2", model), ("us-east-2", model))) == []
    assert mismatches(profile(), described(("us-east-1", model))) == [
        f"us-west-2: Bedrock does not route this profile to {model}"
    ]


def test_the_check_asks_in_the_arns_region_or_the_profiles_first() -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc"
    assert home_region(profile(arn), "us-east-1") == "eu-west-1"
    assert home_region(profile(), "eu-central-1") == "us-east-1"


def test_a_checker_without_aws_refuses_and_one_with_it_reports_mismatches() -> None:
    with pytest.raises(ProfileCheckDisabled):
        asyncio.run(ProfileChecker(None, "us-east-1").check(profile()))
    asked: list[tuple[str, str]] = []

    async def describe(profile_id: str, region: str) -> dict[str, Any]:
        asked.append((profile_id, region))
        return described(("us-east-1", "amazon.nova-pro-v1:0"))

    with pytest.raises(ProfileCheckFailed, match="us-east-1"):
        asyncio.run(ProfileChecker(describe, "us-east-1").check(profile()))
    assert asked == [("us.anthropic.claude-sonnet-4-20250514-v1:0", "us-east-1")]
