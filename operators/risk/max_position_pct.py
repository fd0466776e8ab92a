"""Position tier: the symbol's position after the fill at most `max_pct` of equity.

Orders that reduce the position pass. Equity <= 0 or NaN denies anything else (no capital to
size against); so does a NaN quantity or price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class MaxPositionPct:
    name: ClassVar[str] = "max_position_pct"
    tier: ClassVar[Tier] = Tier.POSITION
    max_pct: float = 0.08  # of equity

    def __post_init__(self) -> None:
        if not self.max_pct > 0.0:
            raise ValueError("max_position_pct.max_pct must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk:
            return None
        if not ctx.equity > 0.0:
            return Denial(self.name, f"equity {ctx.equity:.2f} is not positive", ctx.equity, 0.0)
        value = ctx.post_position_notional / ctx.equity
        if within(value, self.max_pct):
            return None
        return Denial(
            self.name,
            f"position after fill {value:.2%} of equity exceeds {self.max_pct:.2%}",
            value,
            self.max_pct,
        )
