"""What an org and an app are: time zone, model labels with their prices, ordering and daily quotas.

Ids are validated here, once, so that no caller can smuggle a key separator ('#') or a client-id separator into a
DynamoDB key: org ids are canonical lowercase UUIDs, app ids and model labels a short slug.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.config import JsonDict

from catalog.price_catalog import CatalogPriced
from catalog.price_history import PriceHistory
from catalog.profiles import InferenceProfile
from catalog.rates import Prices, Pricing, ServiceTier, TierNotPriced
from catalog.token_caps import TokenCaps

# An org's model labels and each app's inference profiles have a price history of their own.
ModelPriceHistory = PriceHistory[CatalogPriced]
ProfileHistory = PriceHistory[InferenceProfile]

__all__ = [
    "MAX_MODELS",
    "MAX_QUOTA_USD_MICROS",
    "App",
    "AppSettings",
    "CallingRegionRequired",
    "LabelConflict",
    "ModelPriceHistory",
    "ModelSpec",
    "Org",
    "OrgSettings",
    "Prices",
    "Pricing",
    "ProfileHistory",
    "ResolvedLabel",
    "ServiceTier",
    "TierNotPriced",
    "UnknownCallingRegion",
    "UnknownLabels",
    "UnknownModelLabel",
    "is_org_id",
    "is_slug",
    "local_midnight",
    "org_local_day",
    "resolve_label",
]

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"
_SLUG = re.compile(SLUG_PATTERN)
ORG_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_ORG_ID = re.compile(ORG_ID_PATTERN)
MAX_MODELS = 20
MAX_QUOTA_USD_MICROS = 10**15  # a billion dollars a day: far beyond any real quota, far below int64 overflow


class UnknownLabels(ValueError):
    """An app names model labels that neither its org nor its own inference profiles have."""


class LabelConflict(ValueError):
    """An app's inference profile label is also one of its org's model labels: a label must mean one thing."""


class UnknownModelLabel(ValueError):
    code = "UNKNOWN_MODEL_LABEL"


class CallingRegionRequired(ValueError):
    code = "CALLING_REGION_REQUIRED"


class UnknownCallingRegion(ValueError):
    code = "UNKNOWN_CALLING_REGION"


def is_org_id(value: str) -> bool:
    # fullmatch, not match: '$' also matches before a trailing newline.
    if not _ORG_ID.fullmatch(value):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def is_slug(value: str) -> bool:
    # fullmatch: a slug with a trailing newline would otherwise pass and reach keys and client ids.
    return bool(_SLUG.fullmatch(value)) and "--" not in value


def _org_id(value: str) -> str:
    if not is_org_id(value):
        raise ValueError("org_id must be a lowercase UUID such as 550e8400-e29b-41d4-a716-446655440000")
    return value


def _slug(value: str) -> str:
    if not is_slug(value):
        raise ValueError("must be 1-64 of a-z 0-9 _ - (starting and ending with a letter or digit, no '--')")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


# The JSON schemas state the patterns so that the OpenAPI document tells clients (and the fuzzer) what is accepted;
# the validators stay the authority ('--' in a slug and non-canonical UUIDs are refused beyond the pattern).
OrgId = Annotated[str, AfterValidator(_org_id), WithJsonSchema({"type": "string", "pattern": ORG_ID_PATTERN})]
Slug = Annotated[str, AfterValidator(_slug), WithJsonSchema({"type": "string", "pattern": SLUG_PATTERN})]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
UsdMicros = Annotated[int, Field(ge=0, le=MAX_QUOTA_USD_MICROS, strict=True)]
QuotaScope = Literal["ORG", "APP"]


class ModelSpec(CatalogPriced):
    """A model label's Bedrock model and its prices (catalog.rates.Pricing's fields, flat), or a `catalog_model`."""


# Examples for the OpenAPI document; tests/unit/test_openapi_document.py keeps them valid.
ORG_SETTINGS_EXAMPLE: JsonDict = {
    "name": "Acme",
    "timezone": "Europe/Berlin",
    "quota_scope": "ORG",
    "models": {
        "premium": {
            "bedrock_model_id": "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "prices": {"input_per_mtok_usd_micros": 3_000_000, "output_per_mtok_usd_micros": 15_000_000},
        },
        "economy": {
            "bedrock_model_id": "amazon.nova-micro-v1:0",
            "prices": {"input_per_mtok_usd_micros": 35_000, "output_per_mtok_usd_micros": 140_000},
        },
    },
    "model_ordering": ["premium", "economy"],
    "daily_quotas_usd_micros": {"premium": 5_000_000, "economy": 1_000_000},
}
APP_SETTINGS_EXAMPLE: JsonDict = {"name": "Support bot", "daily_quotas_usd_micros": {"premium": 2_000_000}}


class OrgSettings(BaseModel):
    """The body of PUT /api/v1/orgs/{org_id}: everything an admin sets on an org."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [ORG_SETTINGS_EXAMPLE]})

    name: str = Field(default="", max_length=200)
    timezone: TimeZoneName = "UTC"
    quota_scope: QuotaScope = "ORG"
    models: dict[Slug, ModelSpec] = Field(min_length=1, max_length=MAX_MODELS)
    # Preference order for model selection: the first label under its quota wins.
    model_ordering: list[Slug] = Field(min_length=1, max_length=MAX_MODELS)
    daily_quotas_usd_micros: dict[Slug, UsdMicros] = Field(default_factory=dict)
    # Tokens one event may report, per category (catalog/token_caps.py); unset: the service defaults.
    max_tokens_per_event: TokenCaps | None = None

    @model_validator(mode="after")
    def _labels_are_known(self) -> OrgSettings:
        unknown = [label for label in self.model_ordering if label not in self.models]
        if unknown:
            raise ValueError(f"model_ordering names labels with no model: {unknown}")
        if len(set(self.model_ordering)) != len(self.model_ordering):
            raise ValueError("model_ordering repeats a label")
        unknown = [label for label in self.daily_quotas_usd_micros if label not in self.models]
        if unknown:
            raise ValueError(f"daily_quotas_usd_micros names labels with no model: {unknown}")
        return self


class AppSettings(BaseModel):
    """The body of PUT /api/v1/orgs/{org_id}/apps/{app_id}."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [APP_SETTINGS_EXAMPLE]})

    name: str = Field(default="", max_length=200)
    # Per-app quotas; in APP quota scope a label without one here falls back to the org's quota for that label.
    daily_quotas_usd_micros: dict[Slug, UsdMicros] = Field(default_factory=dict)
    # Optional per-app preference order; defaults to the org's.
    model_ordering: list[Slug] | None = Field(default=None, min_length=1, max_length=MAX_MODELS)

    @model_validator(mode="after")
    def _ordering_has_no_repeats(self) -> AppSettings:
        # As for the org's ordering: a repeated label would take two positions of the day's sticky fallback.
        if self.model_ordering is not None and len(set(self.model_ordering)) != len(self.model_ordering):
            raise ValueError("model_ordering repeats a label")
        return self


def org_local_day(instant: datetime, timezone: str) -> date:
    """The calendar day an instant falls on in an org's time zone: the day its spend counts towards."""
    if instant.tzinfo is None:
        raise ValueError("timestamp must carry a time zone")
    return instant.astimezone(ZoneInfo(timezone)).date()


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant an org-local day begins."""
    return datetime.combine(day, time.min, ZoneInfo(timezone))


class Org(BaseModel):
    """An org as stored: its settings plus what the service maintains."""

    model_config = ConfigDict(frozen=True)

    org_id: OrgId
    settings: OrgSettings
    # Bumped whenever any price changes (a label's prices, or a label added or removed): the latest version.
    price_version: int = Field(ge=1)
    # Every version still needed, with when it took effect; None: only this one, in force since ever.
    price_history: ModelPriceHistory | None = None

    def history(self) -> ModelPriceHistory:
        return self.price_history or ModelPriceHistory.first(self.price_version, self.settings.models)

    def priced_at(self, label: str, instant: datetime) -> Org:
        """This org with the models and price version that price `label` at `instant` (catalog/price_history.py).

        Only the models differ from the current settings: ordering and quotas are today's. The view is not
        validated again (a version may lack a label today's ordering names); it is for pricing, never stored.
        """
        version = self.history().for_label(label, instant)
        if version is None or version.version == self.price_version:
            return self
        settings = self.settings.model_copy(update={"models": version.models})
        return self.model_copy(update={"settings": settings, "price_version": version.version})

    def local_day(self, instant: datetime) -> date:
        return org_local_day(instant, self.settings.timezone)

    def day_start(self, day: date) -> datetime:
        return local_midnight(day, self.settings.timezone)

    def prices_for(self, label: str) -> Prices | None:
        spec = self.settings.models.get(label)
        return spec.prices if spec else None


class App(BaseModel):
    model_config = ConfigDict(frozen=True)

    org_id: OrgId
    app_id: Slug
    settings: AppSettings
    # Registered through their own routes, not with the app's settings.
    profiles: dict[Slug, InferenceProfile] = Field(default_factory=dict)
    # Like the org's prices, the profiles have versions (bumped by every change to them) and a history.
    profile_version: int = Field(default=1, ge=1)
    profile_history: ProfileHistory | None = None

    def history(self) -> ProfileHistory:
        return self.profile_history or ProfileHistory.first(self.profile_version, self.profiles)

    def priced_at(self, label: str, instant: datetime) -> App:
        """This app with the profiles and profile version that price `label` at `instant` (as Org.priced_at)."""
        version = self.history().for_label(label, instant)
        if version is None or version.version == self.profile_version:
            return self
        return self.model_copy(update={"profiles": version.models, "profile_version": version.version})

    def labels(self, org: Org) -> set[str]:
        """Every label this app may use: its org's models and its own inference profiles."""
        return set(org.settings.models) | set(self.profiles)

    def check_against(self, org: Org) -> None:
        known = self.labels(org)
        unknown = [label for label in self.settings.daily_quotas_usd_micros if label not in known]
        unknown += [label for label in self.settings.model_ordering or [] if label not in known]
        if unknown:
            raise UnknownLabels(f"labels unknown to org {org.org_id}: {sorted(set(unknown))}")
        conflicts = sorted(set(self.profiles) & set(org.settings.models))
        if conflicts:
            raise LabelConflict(f"inference profile labels are also the org's model labels: {conflicts}")

    def ordering(self, org: Org) -> list[str]:
        return list(self.settings.model_ordering or org.settings.model_ordering)


@dataclass(frozen=True)
class ResolvedLabel:
    """What a model label stands for in one call: the model that served it and its prices."""

    model_label: str
    bedrock_model_id: str
    pricing: Pricing
    calling_region: str | None
    inference_profile_id: str | None = None  # set for a profile label


def resolve_label(org: Org, app: App | None, label: str, calling_region: str | None) -> ResolvedLabel:
    """A label of the org's models, or of the app's inference profiles priced for the Region that served the call.

    `app` may be None where only the org's labels are to be known (its profiles need not be read for them).
    """
    spec = org.settings.models.get(label)
    if spec is not None:
        return ResolvedLabel(label, spec.bedrock_model_id, spec, calling_region)
    profile = app.profiles.get(label) if app is not None else None
    if profile is None:
        known = ", ".join(app.ordering(org) if app is not None else org.settings.model_ordering)
        raise UnknownModelLabel(f"model_label {label!r} is not one of: {known}")
    if calling_region is None:
        raise CallingRegionRequired(f"{label!r} is an inference profile: calling_region is required")
    route = profile.regions.get(calling_region)
    if route is None:
        raise UnknownCallingRegion(
            f"inference profile {label!r} has no route for {calling_region}; it serves {sorted(profile.regions)}"
        )
    return ResolvedLabel(label, route.bedrock_model_id, route, calling_region, profile.inference_profile_id)
