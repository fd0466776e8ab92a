"""Portfolio tier: at most `max_positions` symbols with a non-zero position.

Only an order that opens a position in a flat symbol can breach it; everything else passes.
A NaN quantity counts as opening one (fail closed; the order tier rejects it anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class MaxOpenPositions:
    name: ClassVar[str] = "max_open_positions"
    tier: ClassVar[Tier] = Tier.PORTFOLIO
    max_positions: int = 10

    def __post_init__(self) -> None:
        if not self.max_positions >= 1:
            raise ValueError("max_open_positions.max_positions must be >= 1")

    def check(self, ctx: RiskContext) -> Denial | None:
        if not ctx.opens_position:
            return None
        value = ctx.open_positions + 1
        if within(value, self.max_positions):
            return None
        return Denial(
            self.name,
            f"opening {ctx.symbol} makes {value} open positions, max {self.max_positions}",
            float(value),
            float(self.max_positions),
        )
