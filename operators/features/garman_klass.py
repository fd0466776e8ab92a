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
from operator import truediv

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.features.parkinson import (
    MIN_RUN,
    last_sum,
    slide,
    window_means,
    window_sums,
)
from schemas.messages import Bar

_K = 110
_TWO_K = float(2**_K)
_C = 2.0 * math.log(2.0) - 1.0
_INV_TWO_K = 2.0**-_K


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

    def update_many(self, cols: BarColumns) -> list[float]:
        bars = cols.bars
        if len(bars) < MIN_RUN:
            return [self.update(b) for b in bars]
        window, n, log = self._window, self.n, math.log
        try:
            hls = list(map(log, map(truediv, cols.field("high"), cols.field("low"))))
            cos = list(map(log, map(truediv, cols.field("close"), cols.field("open"))))
        except (ArithmeticError, ValueError):
            return [self.update(b) for b in bars]  # update raises: it does, in its place
        hl = np.array(hls, dtype=np.float64)
        co = np.array(cos, dtype=np.float64)
        t = np.rint((0.5 * hl * hl - _C * co * co) * _TWO_K)  # update's float ops, elementwise
        sums = window_sums(window, self._sum, n, t, signed=True)
        if sums is None:  # out of the kernels' range (or a NaN, where update raises)
            return [self.update(b) for b in bars]
        hi, lo = sums
        total = last_sum(hi, lo)
        full = max(n - len(window) - 1, 0)  # the first bar whose window is full
        out = [self.value] * min(full, len(bars))
        if full < len(bars):
            hi, lo = hi[full:], lo[full:]
            pos = (hi > 0) | ((hi == 0) & (lo > 0))  # s > 0 (0 <= lo < 2**52)
            vals = np.zeros(len(hi))
            vals[pos] = np.sqrt(window_means(hi[pos], lo[pos], n) * _INV_TWO_K)
            out += vals.tolist()
            self.value = out[-1]
        self._window = slide(window, t, n)
        self._sum = total
        return out
