"""The optional check of a registered inference profile against Bedrock's own description of it.

Registering a profile needs no AWS call: its Region routes and prices are the org's to state. Where the API runs with
AWS credentials and CK_BEDROCK_PROFILE_CHECK=1, a registration may ask (`"verify": true`) for Bedrock's
GetInferenceProfile to confirm that each declared Region routes to the declared model.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from catalog.profiles import InferenceProfile

# Foundation model ARNs name their Region and model: arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude...
_MODEL_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:(?P<region>[a-z0-9-]+):[0-9]*:foundation-model/(?P<model>.+)$")
_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:bedrock:(?P<region>[a-z0-9-]+):")

Describe = Callable[[str, str], Awaitable[dict[str, Any]]]


class ProfileCheckDisabled(Exception):
    """A registration asked for a check this deployment does not make (no AWS access configured for it)."""


class ProfileCheckFailed(ValueError):
    """Bedrock does not describe the profile as it was registered (or does not know it)."""


class ProfileCheckUnavailable(Exception):
    """Bedrock could not be asked: a network or service failure; the registration may be retried."""


def routes_of(description: dict[str, Any]) -> set[tuple[str, str]]:
    """(Region, model id) pairs of a GetInferenceProfile answer's `models`."""
    pairs: set[tuple[str, str]] = set()
    for model in description.get("models", []):
        match = _MODEL_ARN.match(str(model.get("modelArn", "")))
        if match:
            pairs.add((match["region"], match["model"]))
    return pairs


def mismatches(profile: InferenceProfile, description: dict[str, Any]) -> list[str]:
    """What the registration states that Bedrock's description does not; empty when they agree."""
    described = routes_of(description)
    return [
        f"{region}: Bedrock does not route this profile to {route.bedrock_model_id}"
        for region, route in sorted(profile.regions.items())
        if (region, route.bedrock_model_id) not in described
    ]


def home_region(profile: InferenceProfile, default: str) -> str:
    """Where to ask about a profile: its ARN's Region, else the first Region it is registered for."""
    match = _ARN_REGION.match(profile.inference_profile_id)
    if match:
        return match["region"]
    return min(profile.regions, default=default)


class ProfileChecker:
    def __init__(self, describe: Describe | None, default_region: str) -> None:
        # None: checks are disabled in this deployment.
        self._describe = describe
        self._default_region = default_region

    async def check(self, profile: InferenceProfile) -> None:
        if self._describe is None:
            raise ProfileCheckDisabled("this API does not check profiles with Bedrock (CK_BEDROCK_PROFILE_CHECK)")
        description = await self._describe(profile.inference_profile_id, home_region(profile, self._default_region))
        problems = mismatches(profile, description)
        if problems:
            raise ProfileCheckFailed("; ".join(problems))


def bedrock_describer(client_kwargs: Callable[[str], dict[str, Any]]) -> Describe:
    """GetInferenceProfile through aiobotocore, one short-lived client per check (checks are rare)."""
    from aiobotocore.session import get_session
    from botocore.exceptions import BotoCoreError, ClientError

    async def describe(profile_id: str, region: str) -> dict[str, Any]:
        kwargs = {**client_kwargs("bedrock"), "region_name": region}
        try:
            async with get_session().create_client("bedrock", **kwargs) as bedrock:
                answer: dict[str, Any] = await bedrock.get_inference_profile(inferenceProfileIdentifier=profile_id)
                return answer
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "AccessDeniedException", "ValidationException"):
                raise ProfileCheckFailed(f"Bedrock: {code}: {exc.response['Error'].get('Message', '')}") from exc
            raise ProfileCheckUnavailable(f"Bedrock: {code}") from exc
        except BotoCoreError as exc:
            raise ProfileCheckUnavailable(f"Bedrock could not be reached: {type(exc).__name__}") from exc

    return describe
