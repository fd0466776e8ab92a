"""Daily tier: at most `max_trades` orders per UTC day; this order would be trades_today + 1.

Orders that reduce a position pass (and still count once they fill). A negative counter is
treated as given (it passes); the counter is the flow's, not the rule's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class MaxTradesPerDay:
    name: ClassVar[str] = "max_trades_per_day"
    tier: ClassVar[Tier] = Tier.DAILY
    max_trades: int = 15

    def __post_init__(self) -> None:
        if not self.max_trades >= 1:
            raise ValueError("max_trades_per_day.max_trades must be >= 1")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk:
            return None
        value = ctx.trades_today + 1
        if within(value, self.max_trades):
            return None
        return Denial(
            self.name,
            f"trade {value} today exceeds {self.max_trades} per day",
            float(value),
            float(self.max_trades),
        )
