"""SMA(fast) / SMA(slow) - 1 of closes. Both sums are exact fixed-point integers and the ratio
minus one is formed as one integer fraction, (S_f*slow - S_s*fast) / (S_s*fast), so the small
difference of two nearly equal averages is correctly rounded instead of cancelled."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class SmaRatio:
    family = "sma_ratio"

    def __init__(self, fast: int = 5, slow: int = 20) -> None:
        if fast < 1:
            raise ValueError("SMA ratio fast period must be >= 1")
        if slow <= fast:
            raise ValueError("SMA ratio slow period must be > fast period")
        self.fast = fast
        self.slow = slow
        self.name = spec_name("sma_ratio", fast, slow)
        self.columns = (self.name,)
        self.warmup = slow - 1
        self._window: deque[int] = deque()  # last `slow` closes in units of 1/SCALE
        self._sum_slow = 0
        self._sum_fast = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        v = round(bar.close * SCALE)
        window = self._window
        window.append(v)
        self._sum_slow += v
        self._sum_fast += v
        k = len(window)
        if k > self.fast:
            self._sum_fast -= window[k - 1 - self.fast]
        if k > self.slow:
            self._sum_slow -= window.popleft()
            k -= 1
        if k == self.slow:
            den = self._sum_slow * self.fast
            self.value = (self._sum_fast * self.slow - den) / den if den != 0 else NAN
        return self.value
