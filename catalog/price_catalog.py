"""The price catalog shipped with the service (price_catalog.json): Bedrock list prices by model id and Region.

Provisioning may name a catalog model instead of typing prices; the prices are copied into the org's settings then,
so a later catalog update never changes what an org already pays, and explicit prices always win. Nothing is fetched
at run time: the catalog is data in the package, with the date its prices were taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from pydantic import Field, model_validator

from catalog.rates import Pricing

DEFAULT_REGION = "default"


class UnknownCatalogModel(ValueError):
    """Provisioning named a model (or a Region of it) the catalog has no prices for."""


@dataclass(frozen=True)
class PriceCatalog:
    taken_on: date
    source: str
    models: dict[str, dict[str, Pricing]]

    def pricing(self, model_id: str, region: str | None = None) -> Pricing:
        regions = self.models.get(model_id)
        if regions is None:
            raise UnknownCatalogModel(f"the price catalog has no model {model_id!r}")
        found = regions.get(region or DEFAULT_REGION) or regions.get(DEFAULT_REGION)
        if found is None:
            raise UnknownCatalogModel(f"the price catalog has no prices for {model_id!r} in {region}")
        return found


@cache
def price_catalog() -> PriceCatalog:
    document = json.loads(resources.files("catalog").joinpath("price_catalog.json").read_text())
    return PriceCatalog(
        taken_on=date.fromisoformat(document["taken_on"]),
        source=document["source"],
        models={
            model_id: {region: Pricing.model_validate(p) for region, p in entry["regions"].items()}
            for model_id, entry in document["models"].items()
        },
    )


class CatalogPriced(Pricing):
    """A Bedrock model with its prices, which provisioning may take from the catalog by naming `catalog_model`.

    What is not given is copied from the catalog (for `catalog_region`, else its default) and kept, so an org's
    prices never change behind its back when the catalog is updated; explicit prices win.
    """

    bedrock_model_id: str = Field(min_length=1, max_length=200)
    catalog_model: str | None = Field(default=None, max_length=200)
    catalog_region: str | None = Field(default=None, max_length=40)

    @model_validator(mode="before")
    @classmethod
    def _from_catalog(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("catalog_model"), str):
            return data
        listed = price_catalog().pricing(data["catalog_model"], data.get("catalog_region"))
        filled: dict[str, Any] = {"bedrock_model_id": data["catalog_model"]}
        for name, value in listed.model_dump(exclude_none=True).items():
            # A batch price given either way replaces the catalog's, whichever way the catalog states it.
            if name.startswith("batch_") and ("batch_prices" in data or "batch_discount_percent" in data):
                continue
            filled[name] = value
        return {**filled, **data}
