"""System tier: no new risk in a symbol whose latest bar closed more than `max_age_ns` before
the decision. The state machine puts such a symbol in reduce-only until a fresh bar arrives.

No market view or no bar time yet denies (nothing to trade on); a bar from the future (age < 0,
clock skew between sources) passes. Orders that reduce a position pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier

NS_PER_MINUTE = 60 * 10**9


@dataclass(frozen=True)
class StaleData:
    name: ClassVar[str] = "stale_data"
    tier: ClassVar[Tier] = Tier.SYSTEM
    max_age_ns: int = 3 * NS_PER_MINUTE  # two missed 1m bars

    def __post_init__(self) -> None:
        if not self.max_age_ns > 0:
            raise ValueError("stale_data.max_age_ns must be > 0")

    def breach(self, ctx: RiskContext, symbol: str) -> Denial | None:
        view = ctx.market.get(symbol)
        if view is None or view.last_bar_ts is None:
            return Denial(self.name, f"no bar seen for {symbol}", float("nan"), self.max_age_ns)
        age = ctx.ts - view.last_bar_ts
        if age <= self.max_age_ns:
            return None
        return Denial(
            self.name,
            f"last {symbol} bar {age / 1e9:.0f}s old exceeds {self.max_age_ns / 1e9:.0f}s",
            float(age),
            float(self.max_age_ns),
        )

    def check(self, ctx: RiskContext) -> Denial | None:
        return None if ctx.reduces_risk else self.breach(ctx, ctx.symbol)
