"""System tier: no new risk while the strategy's rolling Sharpe ratio is below `min_sharpe`.

None (window too short) or NaN (zero variance) passes: no evidence yet that the strategy has
stopped working. Orders that reduce a position pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier


@dataclass(frozen=True)
class MinSharpe:
    name: ClassVar[str] = "min_sharpe"
    tier: ClassVar[Tier] = Tier.SYSTEM
    min_sharpe: float = 0.0

    def __post_init__(self) -> None:
        if math.isnan(self.min_sharpe):
            raise ValueError("min_sharpe.min_sharpe must be a number")

    def check(self, ctx: RiskContext) -> Denial | None:
        s = ctx.sharpe
        if ctx.reduces_risk or s is None or math.isnan(s) or s >= self.min_sharpe:
            return None
        return Denial(
            self.name, f"rolling Sharpe {s:.2f} below {self.min_sharpe:g}", s, self.min_sharpe
        )
