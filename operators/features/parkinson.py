"""Parkinson (1980) range volatility: sqrt(mean over the last n bars of ln(high/low)**2 / (4 ln 2)).

Per-bar, not annualised. A bar with high == low contributes 0. The window sum of ln(h/l)**2 is an
exact integer in binary fixed point (units of 2**-110), so it cannot drift over a long stream;
the only rounding is each term's (<= 2**-111 absolute) and one final division.
"""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import NAN, spec_name
from schemas.messages import Bar

_K = 110
_TWO_K = float(2**_K)
_FOUR_LN2 = 4.0 * math.log(2.0)


class Parkinson:
    family = "parkinson"

    def __init__(self, n: int = 20) -> None:
        if n < 1:
            raise ValueError(f"Parkinson volatility window must be >= 1, got {n}")
        self.n = n
        self.name = spec_name("parkinson", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self._sum = 0
        self._den = n * 2**_K
        self.value = NAN

    def update(self, bar: Bar) -> float:
        x = math.log(bar.high / bar.low)
        q = round(x * x * _TWO_K)
        window = self._window
        window.append(q)
        s = self._sum + q
        if len(window) > self.n:
            s -= window.popleft()
        self._sum = s
        if len(window) == self.n:
            self.value = math.sqrt(s / self._den / _FOUR_LN2)
        return self.value
