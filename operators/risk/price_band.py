"""Order tier: fat-finger guard, the order's price within `max_bps` of the market's last price.

The limit price is compared when there is one, else the reference price. No usable last price
(missing view, NaN, <= 0) denies: an order priced against nothing is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class PriceBand:
    name: ClassVar[str] = "price_band"
    tier: ClassVar[Tier] = Tier.ORDER
    max_bps: float = 500.0

    def __post_init__(self) -> None:
        if not self.max_bps > 0.0:
            raise ValueError("price_band.max_bps must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        view = ctx.market.get(ctx.symbol)
        last = view.last_price if view is not None else float("nan")
        price = ctx.price if ctx.limit_price is None else ctx.limit_price
        if not last > 0.0:
            return Denial(self.name, f"no last price for {ctx.symbol}", price, self.max_bps)
        dev_bps = abs(price - last) * 1e4 / last
        if within(dev_bps, self.max_bps):
            return None
        return Denial(
            self.name,
            f"price {price:.10g} is {dev_bps:.1f} bps from last {last:.10g} (max {self.max_bps:g})",
            dev_bps,
            self.max_bps,
        )
