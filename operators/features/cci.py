"""Commodity Channel Index over n bars of the typical price tp = (high + low + close) / 3:
(tp - mean tp) / (0.015 * mean |tp_i - mean tp|), as talib.CCI (0 when either part is 0).

With T = high + low + close in units of 1/SCALE and S = sum T over the window, everything is an
exact integer up to one division: CCI = n * (n*T_t - S) / (0.015 * sum |n*T_i - S|). The mean
deviation needs the whole window each bar (O(n)); there is no running form."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class CCI:
    family = "cci"

    def __init__(self, n: int = 20) -> None:
        if n < 2:
            raise ValueError("CCI period must be >= 2")
        self.n = n
        self.name = spec_name("cci", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()  # n * T_i
        self._sum = 0  # sum of T_i
        self.value = NAN

    def update(self, bar: Bar) -> float:
        t = round(bar.high * SCALE) + round(bar.low * SCALE) + round(bar.close * SCALE)
        n = self.n
        window = self._window
        window.append(n * t)
        self._sum += t
        if len(window) > n:
            self._sum -= window.popleft() // n
        elif len(window) < n:
            return self.value
        s = self._sum
        dev = sum(map(abs, map(s.__rsub__, window)))  # sum |n*T_i - S|
        num = n * t - s
        self.value = n * num / (0.015 * dev) if num != 0 and dev != 0 else 0.0
        return self.value
