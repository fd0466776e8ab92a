"""Rate of change in percent over n bars, (close / close_{t-n} - 1) * 100, as talib.ROC
(0 when the old close is 0)."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from schemas.messages import Bar


class ROC:
    family = "roc"

    def __init__(self, n: int = 10) -> None:
        if n < 1:
            raise ValueError("ROC period must be >= 1")
        self.n = n
        self.name = spec_name("roc", n)
        self.columns = (self.name,)
        self.warmup = n
        self._closes: deque[float] = deque(maxlen=n + 1)
        self.value = NAN

    def update(self, bar: Bar) -> float:
        closes = self._closes
        closes.append(bar.close)
        if len(closes) > self.n:
            old = closes[0]
            self.value = (closes[-1] / old - 1.0) * 100.0 if old != 0.0 else 0.0
        return self.value
