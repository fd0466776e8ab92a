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
from collections.abc import Sequence
from itertools import accumulate, repeat
from operator import attrgetter, mul, sub, truediv

from operators.features.base import NAN, spec_name
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

    def update_many(self, bars: Sequence[Bar]) -> list[float]:
        """`[self.update(b) for b in bars]`, the same values and state: the window sums are
        differences of exact integer prefix sums."""
        closes = list(map(attrgetter("close"), bars))
        if not closes:
            return []
        out: list[float] = []
        if self._prev is None:  # the very first bar: no return yet
            out.append(self.value)
            prevs = closes[:-1]
            new = closes[1:]
        else:
            prevs = [self._prev, *closes[:-1]]
            new = closes
        self._prev = closes[-1]
        rets = map(round, map(mul, map(math.log, map(truediv, new, prevs)), repeat(_TWO_K)))
        w, window = self.w, self._rets
        seq = [*window, *rets]
        first = len(window)
        cut = min(max(w - 1 - first, 0), len(seq) - first)  # returns before the window fills
        s1 = [0, *accumulate(seq)]
        s2 = [0, *accumulate(map(mul, seq, seq))]
        out += [self.value] * cut
        lo = first + cut + 1  # s1[i] - s1[i - w]: the window ending at seq[i - 1], i >= lo
        s = list(map(sub, s1[lo:], s1[lo - w :]))
        sq = map(mul, map(sub, s2[lo:], s2[lo - w :]), repeat(w))
        out += map(math.sqrt, map(truediv, map(sub, sq, map(mul, s, s)), repeat(self._den)))
        window.clear()  # the last w returns of seq (fewer while filling)
        window.extend(seq[max(len(seq) - w, 0) :])
        kept = len(seq) - len(window)
        self._sum, self._sumsq = s1[-1] - s1[kept], s2[-1] - s2[kept]
        self.value = out[-1]
        return out
