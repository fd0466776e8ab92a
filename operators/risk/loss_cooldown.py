"""Daily tier: after `max_consecutive` losing trades in a row, no new risk for `cooldown_ns`.

The cooldown ends exactly `cooldown_ns` after the last loss (that instant passes). Orders that
reduce a position pass. With the streak reached but no last-loss time known, it denies: the
end of the cooldown cannot be placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from operators.risk.context import Denial, RiskContext, Tier

NS_PER_MINUTE = 60 * 10**9


@dataclass(frozen=True)
class LossCooldown:
    name: ClassVar[str] = "loss_cooldown"
    tier: ClassVar[Tier] = Tier.DAILY
    max_consecutive: int = 8
    cooldown_ns: int = 60 * NS_PER_MINUTE

    def __post_init__(self) -> None:
        if not self.max_consecutive >= 1:
            raise ValueError("loss_cooldown.max_consecutive must be >= 1")
        if not self.cooldown_ns >= 0:
            raise ValueError("loss_cooldown.cooldown_ns must be >= 0")

    def check(self, ctx: RiskContext) -> Denial | None:
        if ctx.reduces_risk or ctx.consecutive_losses < self.max_consecutive:
            return None
        streak = f"{ctx.consecutive_losses} consecutive losses"
        if ctx.last_loss_ts is None:
            return Denial(self.name, f"{streak}, last loss time unknown", float("nan"), 0.0)
        elapsed = ctx.ts - ctx.last_loss_ts
        if elapsed >= self.cooldown_ns:
            return None
        return Denial(
            self.name,
            f"{streak}: cooling down {elapsed / 1e9:.0f}s of {self.cooldown_ns / 1e9:.0f}s",
            float(elapsed),
            float(self.cooldown_ns),
        )
