"""Log return of the close over the last k bars: ln(close_t / close_{t-k})."""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import NAN, spec_name
from schemas.messages import Bar


class LogReturn:
    family = "log_returns"

    def __init__(self, k: int = 1) -> None:
        if k < 1:
            raise ValueError("return horizon must be >= 1")
        self.k = k
        self.name = spec_name("log_returns", k)
        self.columns = (self.name,)
        self.warmup = k
        self._closes: deque[float] = deque(maxlen=k + 1)
        self.value = NAN

    def update(self, bar: Bar) -> float:
        self._closes.append(bar.close)
        if len(self._closes) == self.k + 1:
            self.value = math.log(self._closes[-1] / self._closes[0])
        return self.value
