"""Builders for the unit tests: valid orgs, apps, usage records and stream records with only the relevant bits set."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aggregator.usage_record import UsageRecord
from catalog.model import App, AppSettings, ModelSpec, Org, OrgSettings, Prices
from catalog.token_counts import TOKEN_FIELDS, TokenCounts

ORG_ID = "550e8400-e29b-41d4-a716-446655440000"
OTHER_ORG_ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def prices(input_: int = 3_000_000, output: int = 15_000_000, cache_read: int = 0, cache_write: int = 0) -> Prices:
    return Prices(
        input_per_mtok_usd_micros=input_,
        output_per_mtok_usd_micros=output,
        cache_read_per_mtok_usd_micros=cache_read,
        cache_write_per_mtok_usd_micros=cache_write,
    )


def org(
    labels: tuple[str, ...] = ("premium", "standard", "economy"),
    *,
    quotas: dict[str, int] | None = None,
    quota_scope: str = "ORG",
    timezone: str = "UTC",
    ordering: list[str] | None = None,
    org_id: str = ORG_ID,
) -> Org:
    settings = OrgSettings.model_validate(
        {
            "timezone": timezone,
            "quota_scope": quota_scope,
            "models": {
                label: ModelSpec(bedrock_model_id=f"vendor.{label}-v1", prices=prices()).model_dump()
                for label in labels
            },
            "model_ordering": ordering if ordering is not None else list(labels),
            "daily_quotas_usd_micros": quotas or {},
        }
    )
    return Org(org_id=org_id, settings=settings, price_version=1)


def app(
    app_id: str = "chatbot",
    *,
    quotas: dict[str, int] | None = None,
    ordering: list[str] | None = None,
    org_id: str = ORG_ID,
) -> App:
    return App(
        org_id=org_id,
        app_id=app_id,
        settings=AppSettings(daily_quotas_usd_micros=quotas or {}, model_ordering=ordering),
    )


def usage(**overrides: Any) -> UsageRecord:
    """A usage record; token counts are given by their field names (input_tokens=...) like every other field."""
    counts = {name: overrides.pop(name) for name in TOKEN_FIELDS if name in overrides}
    record = UsageRecord(
        org_id=ORG_ID,
        app_id="chatbot",
        request_id=str(uuid.uuid4()),
        model_label="standard",
        bedrock_model_id="vendor.standard-v1",
        timestamp=datetime(2024, 6, 15, 12, 0, tzinfo=UTC),
        org_timezone="UTC",
        tokens=TokenCounts(**{"input_tokens": 1_000, "output_tokens": 200, **counts}),
        cost_usd_micros=6_000,
        price_version=1,
        accepted_at_ms=1_718_452_800_000,
        written_at_ms=1_718_452_800_050,
    )
    return with_changes(record, **overrides)


_sequence = iter(range(10**20, 10**21))


def insert(record: UsageRecord) -> Mapping[str, Any]:
    """A stream record in the low-level format GetRecords and Lambda share."""
    return {
        "eventName": "INSERT",
        "dynamodb": {"NewImage": record.to_item(), "SequenceNumber": str(next(_sequence))},
    }


def modify(old: UsageRecord, new: UsageRecord) -> Mapping[str, Any]:
    return {
        "eventName": "MODIFY",
        "dynamodb": {"OldImage": old.to_item(), "NewImage": new.to_item(), "SequenceNumber": str(next(_sequence))},
    }


def remove(record: UsageRecord) -> Mapping[str, Any]:
    return {
        "eventName": "REMOVE",
        "dynamodb": {"OldImage": record.to_item(), "SequenceNumber": str(next(_sequence))},
    }


def with_changes(record: UsageRecord, **overrides: Any) -> UsageRecord:
    """dataclasses.replace, with token counts given by their field names."""
    counts = {name: overrides.pop(name) for name in TOKEN_FIELDS if name in overrides}
    if counts:
        overrides["tokens"] = TokenCounts(**{**record.tokens.counts(), **counts})
    return replace(record, **overrides)
