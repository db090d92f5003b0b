"""A Bedrock usage block posted as the response carried it, and the earlier service's payload, as submissions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from ingest_api.submission import BatchSubmission, Rejection, UsageSubmission, check_against
from tests.unit.factories import app, org

NOW = datetime(2024, 6, 15, 12, tzinfo=UTC)

# A Converse response's usage with prompt caching at both TTLs, shaped as
# https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html documents it (cacheDetails sorted
# 1h before 5m), and its serviceTier (API_runtime_ServiceTier.html).
CONVERSE_USAGE: dict[str, Any] = {
    "inputTokens": 120,
    "outputTokens": 480,
    "totalTokens": 4_600,
    "cacheReadInputTokens": 2_000,
    "cacheWriteInputTokens": 2_000,
    "cacheDetails": [{"ttl": "1h", "inputTokens": 1_500}, {"ttl": "5m", "inputTokens": 500}],
}


def submission(**fields: Any) -> UsageSubmission:
    return UsageSubmission.model_validate(
        {"request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "model_label": "standard", "timestamp": NOW, **fields}
    )


def test_a_converse_usage_block_and_service_tier_read_verbatim() -> None:
    s = submission(usage=CONVERSE_USAGE, serviceTier={"type": "priority"})
    assert (s.input_tokens, s.output_tokens, s.cache_read_tokens) == (120, 480, 2_000)
    assert (s.cache_write_tokens, s.cache_write_1h_tokens) == (500, 1_500)
    assert s.service_tier == "priority"


def test_cache_writes_without_a_breakdown_are_five_minute_writes() -> None:
    s = submission(usage={"inputTokens": 10, "outputTokens": 5, "cacheWriteInputTokens": 700})
    assert (s.cache_write_tokens, s.cache_write_1h_tokens) == (700, 0)


@pytest.mark.parametrize(
    ("tier", "expected"),
    [("default", "standard"), ({"type": "default"}, "standard"), ("flex", "flex"), ({"type": "flex"}, "flex")],
)
def test_bedrocks_tier_names_are_ours(tier: Any, expected: str) -> None:
    assert submission(service_tier=tier).service_tier == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"usage": {**CONVERSE_USAGE, "cacheWriteInputTokens": 1_999}}, "not the sum of cacheDetails"),
        ({"usage": {**CONVERSE_USAGE, "reasoningTokens": 5}}, "reasoningTokens"),
        ({"usage": CONVERSE_USAGE, "input_tokens": 1}, "not both"),
        ({"usage": {**CONVERSE_USAGE, "cacheDetails": [{"ttl": "1d", "inputTokens": 1}]}}, "ttl"),
        ({"serviceTier": {"type": "reserved"}}, "reserved"),
        ({"service_tier": "gold"}, "service_tier"),
        ({"calling_region": "US-EAST-1"}, "calling_region"),
        ({"status": "FAILED"}, "status"),
        ({"batch": "yes"}, "batch"),
    ],
)
def test_what_does_not_add_up_or_is_unknown_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        submission(**fields)


def test_the_earlier_services_payload_is_accepted_as_it_is() -> None:
    reference = {
        "request_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "model_label": "standard",
        "bedrock_model_id": "vendor.standard-v1",
        "calling_region": "us-east-1",
        "input_tokens": 1500,
        "output_tokens": 800,
        "status": "ERROR",
        "timestamp": "2024-06-15T11:59:00Z",
    }
    s = UsageSubmission.model_validate(reference)
    check_against(s, org(), app(), NOW, 60, 900)
    assert s.status == "ERROR" and s.calling_region == "us-east-1"
    assert BatchSubmission.model_validate({"requests": [reference]}).items == [reference]
    with pytest.raises(ValidationError):
        BatchSubmission.model_validate({"items": [reference], "requests": [reference]})


def test_a_model_id_that_is_not_the_labels_is_a_mismatch_not_a_cheaper_price() -> None:
    with pytest.raises(Rejection) as info:
        check_against(submission(bedrock_model_id="vendor.economy-v1"), org(), app(), NOW, 60, 900)
    assert (info.value.code, info.value.status) == ("MODEL_MISMATCH", 400)
    assert "vendor.standard-v1" in info.value.message
