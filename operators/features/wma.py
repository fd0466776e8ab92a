"""Linearly weighted moving average of the last n closes (weights 1..n, newest heaviest), kept as
exact fixed-point integer sums so the O(1) running update never drifts. Equals talib.WMA."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class WMA:
    family = "wma"

    def __init__(self, n: int = 20) -> None:
        if n < 2:
            raise ValueError("WMA period must be >= 2")
        self.n = n
        self.name = spec_name("wma", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self._sum = 0  # plain sum of the window, units of 1/SCALE
        self._wsum = 0  # weighted sum (oldest weight 1 ... newest weight n)
        self._den = SCALE * n * (n + 1) // 2
        self.value = NAN

    def update(self, bar: Bar) -> float:
        v = round(bar.close * SCALE)
        window = self._window
        n = self.n
        if len(window) == n:
            # every kept value loses one unit of weight, the new one enters with weight n
            self._wsum += n * v - self._sum
            self._sum += v - window.popleft()
            window.append(v)
            self.value = self._wsum / self._den  # int/int: correctly rounded
            return self.value
        window.append(v)
        self._sum += v
        self._wsum += len(window) * v
        if len(window) == n:
            self.value = self._wsum / self._den
        return self.value
