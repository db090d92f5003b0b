"""What a model call costs per token category: rate cards by service tier, and the batch discount.

A rate card (`Prices`) holds one integer micro-USD price per million tokens for each token category. A model (or one
Region of an inference profile) is priced by `Pricing`: the Standard tier's card, optional Priority and Flex cards,
and batch inference as its own card or as a percentage off Standard. Tiers are never guessed: a call served by a
tier that has no card is refused (TierNotPriced), so no client can pick a price the org did not set.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from catalog.token_counts import price_field

MAX_PRICE_USD_MICROS = 10**15
UsdMicros = Annotated[int, Field(ge=0, le=MAX_PRICE_USD_MICROS, strict=True)]
ServiceTier = Literal["standard", "priority", "flex"]
SERVICE_TIERS: tuple[ServiceTier, ...] = ("standard", "priority", "flex")


class TierNotPriced(ValueError):
    """A call was served by a service tier (or as batch) for which its model has no price."""

    code = "SERVICE_TIER_NOT_PRICED"


class Prices(BaseModel):
    """Prices per one million tokens, in integer micro-USD ($3.00 per 1M tokens is 3_000_000)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok_usd_micros: UsdMicros
    output_per_mtok_usd_micros: UsdMicros
    cache_read_per_mtok_usd_micros: UsdMicros = 0
    # 5-minute cache writes.
    cache_write_per_mtok_usd_micros: UsdMicros = 0
    cache_write_1h_per_mtok_usd_micros: UsdMicros = 0

    def per_mtok(self, token_field: str) -> int:
        """The price of one million tokens of a TokenCounts field, e.g. 'input_tokens'."""
        price: int = getattr(self, price_field(token_field))
        return price


class Pricing(BaseModel):
    """Every price of one model: Standard on demand, the other tiers where offered, and batch inference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prices: Prices
    priority_prices: Prices | None = None
    flex_prices: Prices | None = None
    # Batch inference (CreateModelInvocationJob): its own card, or a percentage off the Standard card (50 on most
    # models). Neither: batch usage is refused.
    batch_prices: Prices | None = None
    batch_discount_percent: int | None = Field(default=None, ge=0, le=100, strict=True)

    @model_validator(mode="after")
    def _one_batch_price(self) -> Pricing:
        if self.batch_prices is not None and self.batch_discount_percent is not None:
            raise ValueError("give batch_prices or batch_discount_percent, not both")
        return self

    def rate_card(self, tier: ServiceTier, batch: bool) -> tuple[Prices, int]:
        """The card that prices a call, and the percentage taken off it."""
        if batch:
            if tier != "standard":
                raise TierNotPriced(f"batch inference has no {tier} tier")
            if self.batch_prices is not None:
                return self.batch_prices, 0
            if self.batch_discount_percent is not None:
                return self.prices, self.batch_discount_percent
            raise TierNotPriced("this model has no batch price")
        card = {"standard": self.prices, "priority": self.priority_prices, "flex": self.flex_prices}[tier]
        if card is None:
            raise TierNotPriced(f"this model has no {tier} tier price")
        return card, 0

    def described(self) -> dict[str, Any]:
        """The prices as answers show them (unset tiers left out)."""
        return self.model_dump(include=set(Pricing.model_fields), exclude_none=True)
