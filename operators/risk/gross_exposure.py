"""Portfolio tier: gross exposure (sum of |position value|) after the fill at most `max_pct` of
equity; with the default 1.0 the book is never more than fully invested.

Orders that reduce a position pass. Equity <= 0 / NaN, or an unmarked open position, denies
anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class GrossExposure:
    name: ClassVar[str] = "gross_exposure"
    tier: ClassVar[Tier] = Tier.PORTFOLIO
    max_pct: float = 1.0  # of equity

    def __post_init__(self) -> None:
        if not self.max_pct > 0.0:
            raise ValueError("gross_exposure.max_pct must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk:
            return None
        if not ctx.equity > 0.0:
            return Denial(self.name, f"equity {ctx.equity:.2f} is not positive", ctx.equity, 0.0)
        value = ctx.post_gross / ctx.equity
        if within(value, self.max_pct):
            return None
        return Denial(
            self.name,
            f"gross exposure after fill {value:.2%} of equity exceeds {self.max_pct:.2%}",
            value,
            self.max_pct,
        )
