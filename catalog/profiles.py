"""Inference profiles an app registers: a profile label that maps each calling Region to a Bedrock model and prices.

Cross-Region inference profiles have system ids such as `us.anthropic.claude-sonnet-4-5-20250929-v1:0` or
`global.anthropic...`; application inference profiles (made for cost allocation) are invoked by ARN, e.g.
`arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123`. Either may be registered. A call
through a profile is served in some Region, and is priced for the Region that served it (`calling_region`).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from catalog.price_catalog import CatalogPriced

REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$"
_REGION = re.compile(REGION_PATTERN)
# An ARN (system or application profile, in any partition) or a system profile id with its Region-group prefix.
PROFILE_ID_PATTERN = (
    r"^(arn:aws(-[a-z]+)*:bedrock:[a-z0-9-]+:[0-9]{12}:(application-)?inference-profile/[A-Za-z0-9._:-]{1,200}"
    r"|(us|eu|apac|jp|au|ca|us-gov|global)\.[a-z0-9-]+\.[A-Za-z0-9._:-]{1,200})$"
)
_PROFILE_ID = re.compile(PROFILE_ID_PATTERN)
MAX_REGIONS = 30


def _region(value: str) -> str:
    if not _REGION.fullmatch(value):
        raise ValueError("must be an AWS Region name such as us-east-1")
    return value


def _profile_id(value: str) -> str:
    if not _PROFILE_ID.fullmatch(value):
        raise ValueError(
            "must be an inference profile ARN (arn:aws:bedrock:REGION:ACCOUNT:application-inference-profile/ID or "
            "...:inference-profile/ID) or a system profile id such as us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        )
    return value


RegionName = Annotated[str, AfterValidator(_region), WithJsonSchema({"type": "string", "pattern": REGION_PATTERN})]
ProfileId = Annotated[
    str, AfterValidator(_profile_id), WithJsonSchema({"type": "string", "pattern": PROFILE_ID_PATTERN})
]


class ProfileRoute(CatalogPriced):
    """Where a profile sends calls made from one Region (its Bedrock model), and what they cost there."""


class InferenceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_profile_id: ProfileId
    description: str = Field(default="", max_length=500)
    regions: dict[RegionName, ProfileRoute] = Field(min_length=1, max_length=MAX_REGIONS)
