"""Daily tier: stop adding risk once today's loss exceeds `max_pct` of start-of-day equity.

Loss = (sod_equity - equity) / sod_equity. Orders that reduce a position pass. A start-of-day
equity <= 0 or NaN, or NaN equity, denies anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class MaxDailyLoss:
    name: ClassVar[str] = "max_daily_loss"
    tier: ClassVar[Tier] = Tier.DAILY
    max_pct: float = 0.02  # of start-of-day equity

    def __post_init__(self) -> None:
        if not self.max_pct > 0.0:
            raise ValueError("max_daily_loss.max_pct must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk:
            return None
        sod = ctx.sod_equity
        if not sod > 0.0:
            return Denial(self.name, f"start-of-day equity {sod:.2f} is not positive", sod, 0.0)
        loss = (sod - ctx.equity) / sod
        if within(loss, self.max_pct):
            return None
        return Denial(
            self.name, f"daily loss {loss:.2%} exceeds {self.max_pct:.2%}", loss, self.max_pct
        )
