"""System tier: drawdown from peak equity above `max_drawdown` stops new risk; the trading
state machine (operators/risk/state.py) turns the same breach into HALTED.

Drawdown = (peak - equity) / peak. Peak <= 0 / NaN or NaN equity is a breach (fail closed).
Orders that reduce a position pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, within


@dataclass(frozen=True)
class DrawdownBreaker:
    name: ClassVar[str] = "drawdown_breaker"
    tier: ClassVar[Tier] = Tier.SYSTEM
    max_drawdown: float = 0.05  # of peak equity

    def __post_init__(self) -> None:
        if not self.max_drawdown > 0.0:
            raise ValueError("drawdown_breaker.max_drawdown must be > 0")

    def breach(self, ctx: RiskContext, symbol: str) -> Denial | None:
        """The account-wide breach, independent of any intent (`symbol` is unused)."""
        peak = ctx.peak_equity
        if not peak > 0.0:
            return Denial(self.name, f"peak equity {peak:.2f} is not positive", peak, 0.0)
        dd = (peak - ctx.equity) / peak
        if within(dd, self.max_drawdown):
            return None
        return Denial(
            self.name,
            f"drawdown {dd:.2%} from peak exceeds {self.max_drawdown:.2%}",
            dd,
            self.max_drawdown,
        )

    def check(self, ctx: RiskContext) -> Denial | None:
        return None if ctx.reduces_risk else self.breach(ctx, ctx.symbol)
