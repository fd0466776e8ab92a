"""Position tier: account gross exposure after the fill at most `max_leverage` x equity.

Orders that reduce the position pass. Equity <= 0 / NaN, or an unmarked open position (NaN
gross), denies anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class MaxLeverage:
    name: ClassVar[str] = "max_leverage"
    tier: ClassVar[Tier] = Tier.POSITION
    max_leverage: float = 5.0

    def __post_init__(self) -> None:
        if not self.max_leverage > 0.0:
            raise ValueError("max_leverage.max_leverage must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk:
            return None
        if not ctx.equity > 0.0:
            return Denial(self.name, f"equity {ctx.equity:.2f} is not positive", ctx.equity, 0.0)
        value = ctx.post_gross / ctx.equity
        if within(value, self.max_leverage):
            return None
        return Denial(
            self.name,
            f"leverage after fill {value:.3g}x exceeds {self.max_leverage:g}x",
            value,
            self.max_leverage,
        )
