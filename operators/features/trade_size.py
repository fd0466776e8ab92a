"""Mean trade size (base units) of a bar built from trades: volume / n_trades. NaN for a bar not
built from ticks (n_trades == 0) or with zero volume."""

from __future__ import annotations

from operators.features.base import NAN
from schemas.messages import Bar


class MeanTradeSize:
    family = "trade_size"

    def __init__(self) -> None:
        self.name = "trade_size"
        self.columns = (self.name,)
        self.warmup = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        n = bar.n_trades
        v = bar.volume
        self.value = v / n if n > 0 and v != 0.0 else NAN
        return self.value
