"""Portfolio tier: |net exposure| (sum of signed position values) after the fill at most
`max_pct` of equity: how directional the whole book may be.

Orders that reduce the traded symbol's position pass, even when they move the net the other
way. Equity <= 0 / NaN, or an unmarked open position, denies anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class NetExposure:
    name: ClassVar[str] = "net_exposure"
    tier: ClassVar[Tier] = Tier.PORTFOLIO
    max_pct: float = 1.0  # of equity

    def __post_init__(self) -> None:
        if not self.max_pct > 0.0:
            raise ValueError("net_exposure.max_pct must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk:
            return None
        if not ctx.equity > 0.0:
            return Denial(self.name, f"equity {ctx.equity:.2f} is not positive", ctx.equity, 0.0)
        value = abs(ctx.post_net) / ctx.equity
        if within(value, self.max_pct):
            return None
        return Denial(
            self.name,
            f"|net exposure| after fill {value:.2%} of equity exceeds {self.max_pct:.2%}",
            value,
            self.max_pct,
        )
