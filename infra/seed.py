"""Seed data: the test org and app of the seed guide, written straight to the config table.

Idempotent: an org or app that exists keeps its secret (secrets are shown only when created); its settings are
brought back to the seed's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from catalog.model import AppSettings, ModelSpec, OrgSettings, Prices
from catalog.store import CatalogStore
from runtime.aws import AwsSettings, open_async_clients

SEED_ORG_ID = "550e8400-e29b-41d4-a716-446655440000"
SEED_APP_ID = "test-app"

# Public on-demand list prices per 1M tokens at the time of writing, in micro-USD.
SEED_ORG = OrgSettings(
    name="Test Org",
    timezone="UTC",
    quota_scope="ORG",
    models={
        "premium": ModelSpec(
            bedrock_model_id="anthropic.claude-3-5-sonnet-20241022-v2:0",
            prices=Prices(
                input_per_mtok_usd_micros=3_000_000,
                output_per_mtok_usd_micros=15_000_000,
                cache_read_per_mtok_usd_micros=300_000,
                cache_write_per_mtok_usd_micros=3_750_000,
            ),
        ),
        "standard": ModelSpec(
            bedrock_model_id="anthropic.claude-3-5-haiku-20241022-v1:0",
            prices=Prices(
                input_per_mtok_usd_micros=800_000,
                output_per_mtok_usd_micros=4_000_000,
                cache_read_per_mtok_usd_micros=80_000,
                cache_write_per_mtok_usd_micros=1_000_000,
            ),
        ),
        "economy": ModelSpec(
            bedrock_model_id="amazon.nova-micro-v1:0",
            prices=Prices(
                input_per_mtok_usd_micros=35_000,
                output_per_mtok_usd_micros=140_000,
                cache_read_per_mtok_usd_micros=8_750,
                cache_write_per_mtok_usd_micros=0,
            ),
        ),
    },
    model_ordering=["premium", "standard", "economy"],
    daily_quotas_usd_micros={"premium": 1_000_000, "standard": 500_000, "economy": 100_000},
)
# The guide's test app has models of its own: premium, then standard, never economy.
SEED_APP = AppSettings(
    name="Test App",
    model_ordering=["premium", "standard"],
    daily_quotas_usd_micros={"premium": 500_000, "standard": 250_000},
)


@dataclass(frozen=True)
class SeededCredential:
    client_id: str
    client_secret: str | None  # None: it existed already, its secret is unchanged


async def seed(settings: AwsSettings, report: Callable[[str], None] = print) -> list[SeededCredential]:
    async with open_async_clients(settings) as clients:
        catalog = CatalogStore(clients.dynamodb, settings.names.config_table, cache_ttl_s=0)
        org, org_provisioned = await catalog.put_org(SEED_ORG_ID, SEED_ORG)
        report(f"org {SEED_ORG_ID}: {'created' if org_provisioned.created else 'updated'}")
        _, app_provisioned = await catalog.put_app(org, SEED_APP_ID, SEED_APP)
        report(f"app {SEED_APP_ID}: {'created' if app_provisioned.created else 'updated'}")
    return [
        SeededCredential(org_provisioned.client_id, org_provisioned.client_secret),
        SeededCredential(app_provisioned.client_id, app_provisioned.client_secret),
    ]
