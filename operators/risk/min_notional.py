"""Order tier: refuse orders below the exchange's minimum notional (Binance NOTIONAL filter).

NaN or negative notional denies. With no override the symbol's metadata applies; a symbol without
metadata (min_notional 0) therefore only needs a positive notional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, at_least


@dataclass(frozen=True)
class MinNotional:
    name: ClassVar[str] = "min_notional"
    tier: ClassVar[Tier] = Tier.ORDER
    min_notional: float | None = None  # quote; None = the symbol's exchange filter

    def __post_init__(self) -> None:
        if self.min_notional is not None and not self.min_notional >= 0.0:
            raise ValueError("min_notional must be >= 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        limit = ctx.min_notional if self.min_notional is None else self.min_notional
        value = ctx.notional
        if at_least(value, limit) and value > 0.0:
            return None
        return Denial(self.name, f"notional {value:.8g} below minimum {limit:.8g}", value, limit)
