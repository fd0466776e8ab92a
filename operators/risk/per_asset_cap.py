"""Portfolio tier: exposure to one base asset across all its markets (BTCUSDT + BTCUSDC + ...)
after the fill at most a fraction of equity: `max_pct`, or the asset's entry in `caps`.

Legs add as absolute values (a long in one market does not offset a short in another). Orders
that reduce the traded position pass. Equity <= 0 / NaN, or an unmarked position in the same
asset, denies anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier, base_asset, within


@dataclass(frozen=True)
class PerAssetCap:
    name: ClassVar[str] = "per_asset_cap"
    tier: ClassVar[Tier] = Tier.PORTFOLIO
    max_pct: float = 0.10  # of equity, per base asset
    caps: tuple[tuple[str, float], ...] = ()  # (asset, fraction) overrides, e.g. (("BTC", 0.2),)

    def __post_init__(self) -> None:
        if not self.max_pct > 0.0 or any(not c > 0.0 for _, c in self.caps):
            raise ValueError("per_asset_cap limits must be > 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk:
            return None
        if not ctx.equity > 0.0:
            return Denial(self.name, f"equity {ctx.equity:.2f} is not positive", ctx.equity, 0.0)
        asset = base_asset(ctx.symbol)
        limit = dict(self.caps).get(asset, self.max_pct)
        exposure = ctx.post_position_notional
        for sym, q in ctx.positions.items():
            if sym != ctx.symbol and q != 0.0 and base_asset(sym) == asset:
                exposure += abs(q * ctx.marks.get(sym, float("nan")))
        value = exposure / ctx.equity
        if within(value, limit):
            return None
        return Denial(
            self.name,
            f"{asset} exposure after fill {value:.2%} of equity exceeds {limit:.2%}",
            value,
            limit,
        )
