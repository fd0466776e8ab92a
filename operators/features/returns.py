"""Log return of the close over the last k bars: ln(close_t / close_{t-k})."""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import NAN, BarColumns, spec_name
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

    def update_many(self, cols: BarColumns) -> list[float]:
        k, log = self.k, math.log
        seen = list(self._closes)
        ext = seen + cols.field("close")
        out: list[float] = []
        v = self.value
        for i in range(len(seen), len(ext)):
            if i >= k:  # the deque (maxlen k + 1) holds k + 1 closes: full, or all seen so far
                v = log(ext[i] / ext[i - k])
            out.append(v)
        self._closes = deque(ext[-(k + 1) :], maxlen=k + 1)
        self.value = v
        return out
