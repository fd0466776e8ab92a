"""Position sizing from the one account (docs/risk.md, docs/adr/0009): how much quote a new
position may hold. Three modes:

- `FractionOfEquity(f)`: f x equity (f = 1: all-in on a spot account);
- `FixedNotional(n)`: n quote per position;
- `VolTarget(target, cap)`: equity x target_vol / forecast_vol, capped at cap x equity. The
  forecast is the symbol's recent one-bar volatility scaled to a year; while it warms up (None)
  or is zero the position gets nothing: an unmeasured risk is not sized.

The account step turns the notional into an order: a spot buy spends it as a quote budget
(like Binance's quoteOrderQty: base quantity fixed at the fill price, floored to the lot), a
margin order takes qty = notional / price floored to the lot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class Sizer(Protocol):
    def notional(self, equity: float, price: float, vol: float | None) -> float: ...


@dataclass(frozen=True)
class FractionOfEquity:
    fraction: float

    def __post_init__(self) -> None:
        if not self.fraction > 0.0:
            raise ValueError(f"sizing fraction must be > 0, got {self.fraction}")

    def notional(self, equity: float, price: float, vol: float | None) -> float:
        return self.fraction * equity


@dataclass(frozen=True)
class FixedNotional:
    amount: float

    def __post_init__(self) -> None:
        if not self.amount > 0.0:
            raise ValueError(f"sizing notional must be > 0, got {self.amount}")

    def notional(self, equity: float, price: float, vol: float | None) -> float:
        return self.amount


@dataclass(frozen=True)
class VolTarget:
    target_vol: float  # annualized
    max_fraction: float  # of equity
    bars_per_year: float  # to annualize the one-bar forecast

    def __post_init__(self) -> None:
        if not (self.target_vol > 0.0 and self.max_fraction > 0.0 and self.bars_per_year > 0.0):
            raise ValueError("vol targeting needs target_vol, max_fraction, bars_per_year > 0")

    def notional(self, equity: float, price: float, vol: float | None) -> float:
        if vol is None or not vol > 0.0 or not math.isfinite(vol):
            return 0.0
        forecast = vol * math.sqrt(self.bars_per_year)
        return min(self.target_vol / forecast, self.max_fraction) * equity
