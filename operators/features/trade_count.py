"""Number of trades in a bar built from trades, as a float. NaN for a bar not built from ticks
(n_trades == 0) or with zero volume."""

from __future__ import annotations

from operators.features.base import NAN
from schemas.messages import Bar


class TradeCount:
    family = "trade_count"

    def __init__(self) -> None:
        self.name = "trade_count"
        self.columns = (self.name,)
        self.warmup = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        n = bar.n_trades
        self.value = float(n) if n > 0 and bar.volume != 0.0 else NAN
        return self.value
