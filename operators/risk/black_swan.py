"""System tier: a symbol whose recent realized volatility is above `k` x its normal level is in
a black-swan regime: no new risk in it. The state machine turns a breach into REDUCING or
HALTED (`risk.state.black_swan_action`).

Missing, NaN or non-positive volatilities pass: during warm-up there is no normal level to
compare to, and stale or missing data is stale_data's job. Orders that reduce a position pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier


@dataclass(frozen=True)
class BlackSwan:
    name: ClassVar[str] = "black_swan"
    tier: ClassVar[Tier] = Tier.SYSTEM
    k: float = 3.0  # x normal volatility

    def __post_init__(self) -> None:
        if not self.k > 0.0:
            raise ValueError("black_swan.k must be > 0")

    def breach(self, ctx: RiskContext, symbol: str) -> Denial | None:
        view = ctx.market.get(symbol)
        if view is None or view.realized_vol is None or view.normal_vol is None:
            return None
        vol, normal = view.realized_vol, view.normal_vol
        if not (normal > 0.0 and vol >= 0.0):  # NaN or nonsense: no verdict
            return None
        ratio = vol / normal
        if ratio <= self.k:
            return None
        return Denial(
            self.name,
            f"{symbol} volatility {ratio:.2f}x normal exceeds {self.k:g}x",
            ratio,
            self.k,
        )

    def check(self, ctx: RiskContext) -> Denial | None:
        return None if ctx.reduces_risk else self.breach(ctx, ctx.symbol)
