"""Realized volatility: population standard deviation of the last w one-bar log returns
(not annualised; multiply by sqrt(bars per year) for that). Equals talib.STDDEV(logret, w).

The running sums are exact integers of the returns in binary fixed point (r * 2**80 is an exact
integer for every |r| >= 2**-28), and the variance (w*S2 - S1**2) / w**2 is formed in integers, so
nothing drifts over a long stream and a window of (nearly) equal returns gives exactly 0, where
float sums of r and r**2 cancel catastrophically (w = 2 was off by up to ~1e-6 rel on real bars).
"""

from __future__ import annotations

import math
from collections import deque

from operators.features.base import NAN, BarColumns, spec_name
from schemas.messages import Bar

_K = 80
_TWO_K = float(2**_K)


class RealizedVol:
    family = "realized_vol"

    def __init__(self, w: int = 20) -> None:
        if w < 2:
            raise ValueError("volatility window must be >= 2")
        self.w = w
        self.name = spec_name("realized_vol", w)
        self.columns = (self.name,)
        self.warmup = w
        self._prev: float | None = None
        self._rets: deque[int] = deque()  # fixed-point returns, units of 2**-80
        self._sum = 0
        self._sumsq = 0
        self._den = w * w * 4**_K
        self.value = NAN

    def update(self, bar: Bar) -> float:
        prev, self._prev = self._prev, bar.close
        if prev is None:
            return self.value
        r = round(math.log(bar.close / prev) * _TWO_K)
        rets = self._rets
        rets.append(r)
        s = self._sum + r
        s2 = self._sumsq + r * r
        w = self.w
        if len(rets) > w:
            old = rets.popleft()
            s -= old
            s2 -= old * old
        self._sum = s
        self._sumsq = s2
        if len(rets) == w:
            # exact integer numerator (>= 0 by Cauchy-Schwarz), one correctly rounded division
            self.value = math.sqrt((w * s2 - s * s) / self._den)
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        w, den, log, sqrt, two_k = self.w, self._den, math.log, math.sqrt, _TWO_K
        prev, rets, s, s2, v = self._prev, self._rets, self._sum, self._sumsq, self.value
        out: list[float] = []
        for close in cols.field("close"):  # update's arithmetic, in locals
            if prev is None:
                prev = close
                out.append(v)
                continue
            r = round(log(close / prev) * two_k)
            prev = close
            rets.append(r)
            s += r
            s2 += r * r
            if len(rets) > w:
                old = rets.popleft()
                s -= old
                s2 -= old * old
            if len(rets) == w:
                v = sqrt((w * s2 - s * s) / den)
            out.append(v)
        self._prev, self._sum, self._sumsq, self.value = prev, s, s2, v
        return out
