"""Order tier: quantity on the lot grid, limit price on the tick grid (Binance LOT_SIZE and
PRICE_FILTER); the exchange rejects anything else.

Non-finite or non-positive qty / limit price denies. A step of 0 in the metadata means "no grid
known" and passes that half of the check; a NaN or negative step denies (corrupt metadata).
Market orders (no limit price) skip the tick check: the exchange picks the price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, is_multiple


@dataclass(frozen=True)
class LotTick:
    name: ClassVar[str] = "lot_tick"
    tier: ClassVar[Tier] = Tier.ORDER

    def check(self, ctx: RiskContext) -> Denial | None:
        bad = self._grid("qty", ctx.qty, ctx.lot_size, "lot")
        if bad is None and ctx.limit_price is not None:
            bad = self._grid("limit price", ctx.limit_price, ctx.tick_size, "tick")
        return bad

    def _grid(self, what: str, x: float, step: float, unit: str) -> Denial | None:
        if not (math.isfinite(x) and x > 0.0):
            return Denial(self.name, f"{what} {x!r} is not a positive number", x, step)
        if step == 0.0:
            return None
        if not (math.isfinite(step) and step > 0.0):
            return Denial(self.name, f"bad {unit} size {step!r} in symbol metadata", x, step)
        if is_multiple(x, step):
            return None
        return Denial(
            self.name, f"{what} {x:.10g} is not a multiple of {unit} {step:.10g}", x, step
        )
