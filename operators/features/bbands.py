"""Bollinger bands of closes (SMA middle, population stddev, width k stddevs each side), reported
as %b = (close - lower) / (upper - lower) and bandwidth = (upper - lower) / middle.

Both are computed from exact fixed-point sums: with S = sum v, Q = sum v^2 over the window (v =
close in units of 1/SCALE) and D = n*Q - S^2 (an exact integer, n^2 * variance * SCALE^2):
    %b    = 0.5 + (n*v_t - S) / (2k * sqrt(D))
    width = 2k * sqrt(D) / S
so nothing cancels: TA-Lib's running float sum of squares of ~40,000 prices loses ~7 digits of
the variance. A flat window (D == 0, upper == lower) gives %b = 0.5 (the close is the middle of a
zero-width band) and width 0."""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar

_NAN2 = (NAN, NAN)


class Bollinger:
    family = "bbands"

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        if n < 2:
            raise ValueError("Bollinger period must be >= 2")
        if not (math.isfinite(k) and k > 0.0):
            raise ValueError("Bollinger width k must be a finite number > 0")
        self.n = n
        self.k = float(k)
        self.name = spec_name("bbands", n, self.k)
        self.columns = (self.name + "_pctb", self.name + "_width")
        self.warmup = n - 1
        self._two_k = 2.0 * self.k
        self._window: deque[int] = deque()
        self._sum = 0
        self._sumsq = 0

    def update(self, bar: Bar) -> tuple[float, float]:
        v = round(bar.close * SCALE)
        window = self._window
        window.append(v)
        self._sum += v
        self._sumsq += v * v
        n = self.n
        if len(window) > n:
            old = window.popleft()
            self._sum -= old
            self._sumsq -= old * old
        elif len(window) < n:
            return _NAN2
        s = self._sum
        d = n * self._sumsq - s * s
        if d == 0:
            return (0.5, 0.0)
        band = self._two_k * math.sqrt(d)  # (upper - lower) * n * SCALE
        return (0.5 + (n * v - s) / band, band / s)
