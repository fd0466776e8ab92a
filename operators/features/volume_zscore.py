"""Z-score of the bar's volume within the last n volumes (including this one), with the population
standard deviation: (v - mean) / std, 0.0 when the window is constant. The window sums are exact
integers of fixed-point volumes, so z = (n*v - S) / sqrt(n*Q - S^2) has no cancellation error."""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class VolumeZScore:
    family = "volume_zscore"

    def __init__(self, n: int = 20) -> None:
        if n < 2:
            raise ValueError("volume z-score window must be >= 2")
        self.n = n
        self.name = spec_name("volume_zscore", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self._sum = 0  # sum and sum of squares of the window, in units of 1/SCALE (and squared)
        self._sumsq = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        v = round(bar.volume * SCALE)
        window = self._window
        window.append(v)
        s = self._sum + v
        q = self._sumsq + v * v
        n = self.n
        if len(window) > n:
            old = window.popleft()
            s -= old
            q -= old * old
        self._sum = s
        self._sumsq = q
        if len(window) < n:
            return NAN
        var_n2 = n * q - s * s  # n^2 * population variance, exact
        self.value = (n * v - s) / math.sqrt(var_n2) if var_n2 > 0 else 0.0
        return self.value
