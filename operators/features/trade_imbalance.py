"""Taker order-flow imbalance of a bar built from trades: (buy - sell) / volume with
sell = volume - buy, in [-1, 1]. NaN for a bar not built from ticks (n_trades == 0: no buy volume
known) or with zero volume. Computed on exact fixed-point volumes: (2*B - V) / V rounded once."""

from __future__ import annotations

from operators.features.base import NAN
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class TradeImbalance:
    family = "trade_imbalance"

    def __init__(self) -> None:
        self.name = "trade_imbalance"
        self.columns = (self.name,)
        self.warmup = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        v = round(bar.volume * SCALE)
        if bar.n_trades <= 0 or v == 0:
            self.value = NAN
        else:
            self.value = (2 * round(bar.buy_volume * SCALE) - v) / v
        return self.value
