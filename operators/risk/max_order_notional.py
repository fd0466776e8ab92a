"""Order tier: cap one order's notional in quote currency. NaN notional denies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class MaxOrderNotional:
    name: ClassVar[str] = "max_order_notional"
    tier: ClassVar[Tier] = Tier.ORDER
    max_notional: float = 50_000.0  # quote (USDT)

    def __post_init__(self) -> None:
        if not self.max_notional > 0.0:
            raise ValueError("max_order_notional.max_notional must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        value = ctx.notional
        if within(value, self.max_notional):
            return None
        return Denial(
            self.name,
            f"order notional {value:.2f} exceeds {self.max_notional:.2f}",
            value,
            self.max_notional,
        )
