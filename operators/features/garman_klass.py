"""Garman-Klass (1980) OHLC volatility:
sqrt(max(0, mean over the last n bars of [0.5 ln(h/l)**2 - (2 ln 2 - 1) ln(c/o)**2])).

Per-bar, not annualised. For a consistent bar (low <= open, close <= high) |ln(c/o)| <= ln(h/l),
so every term is >= (1.5 - 2 ln 2) ln(h/l)**2 >= 0; the max(0, .) only guards inconsistent bars.
The window sum is an exact integer in binary fixed point (units of 2**-110), so it cannot drift
over a long stream.
"""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import NAN, spec_name
from schemas.messages import Bar

_K = 110
_TWO_K = float(2**_K)
_C = 2.0 * math.log(2.0) - 1.0


class GarmanKlass:
    family = "garman_klass"

    def __init__(self, n: int = 20) -> None:
        if n < 1:
            raise ValueError(f"Garman-Klass volatility window must be >= 1, got {n}")
        self.n = n
        self.name = spec_name("garman_klass", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self._sum = 0
        self._den = n * 2**_K
        self.value = NAN

    def update(self, bar: Bar) -> float:
        hl = math.log(bar.high / bar.low)
        co = math.log(bar.close / bar.open)
        t = round((0.5 * hl * hl - _C * co * co) * _TWO_K)
        window = self._window
        window.append(t)
        s = self._sum + t
        if len(window) > self.n:
            s -= window.popleft()
        self._sum = s
        if len(window) == self.n:
            self.value = math.sqrt(s / self._den) if s > 0 else 0.0
        return self.value
