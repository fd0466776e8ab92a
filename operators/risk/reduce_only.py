"""System tier: while the trading state is reduce-only (REDUCING, HALTED, or a stale symbol),
only orders that shrink a position pass. NaN sizes never count as reducing, so they deny.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier


@dataclass(frozen=True)
class ReduceOnly:
    name: ClassVar[str] = "reduce_only"
    tier: ClassVar[Tier] = Tier.SYSTEM

    def check(self, ctx: RiskContext) -> Denial | None:
        if not ctx.reduce_only or ctx.reduces_risk:
            return None
        return Denial(
            self.name,
            f"reduce-only: {ctx.side} {ctx.qty:.10g} {ctx.symbol} would not shrink "
            f"position {ctx.position_qty:.10g}",
            ctx.post_qty,
            ctx.position_qty,
        )
