"""Realized volatility: population standard deviation of the last w one-bar log returns
(not annualised; multiply by sqrt(bars per year) for that). Equals talib.STDDEV(logret, w)."""

from __future__ import annotations

import math
from collections import deque

from schemas.messages import Bar


class RealizedVol:
    def __init__(self, w: int = 20) -> None:
        if w < 2:
            raise ValueError("volatility window must be >= 2")
        self.w = w
        self.name = f"realized_vol_{w}"
        self._prev: float | None = None
        self._rets: deque[float] = deque()
        self._sum = 0.0
        self._sumsq = 0.0
        self.value = float("nan")

    def update(self, bar: Bar) -> float:
        prev, self._prev = self._prev, bar.close
        if prev is None:
            return self.value
        r = math.log(bar.close / prev)
        self._rets.append(r)
        self._sum += r
        self._sumsq += r * r
        if len(self._rets) > self.w:
            old = self._rets.popleft()
            self._sum -= old
            self._sumsq -= old * old
        if len(self._rets) == self.w:
            mean = self._sum / self.w
            var = self._sumsq / self.w - mean * mean
            self.value = math.sqrt(var) if var > 0.0 else 0.0
        return self.value
