"""Momentum: close - close_{t-n}, as talib.MOM."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from schemas.messages import Bar


class Momentum:
    family = "momentum"

    def __init__(self, n: int = 20) -> None:
        if n < 1:
            raise ValueError("momentum period must be >= 1")
        self.n = n
        self.name = spec_name("momentum", n)
        self.columns = (self.name,)
        self.warmup = n
        self._closes: deque[float] = deque(maxlen=n + 1)
        self.value = NAN

    def update(self, bar: Bar) -> float:
        closes = self._closes
        closes.append(bar.close)
        if len(closes) > self.n:
            self.value = closes[-1] - closes[0]
        return self.value
