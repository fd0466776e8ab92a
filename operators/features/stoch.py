"""Slow stochastic oscillator, as talib.STOCH with SMA smoothing: fast %K = 100 * (close - lowest
low) / (highest high - lowest low) over k bars (0 when the range is 0), %K = SMA(fast %K, smooth),
%D = SMA(%K, d). Both columns start at bar (k - 1) + (smooth - 1) + (d - 1). Highest/lowest come
from monotonic deques (O(1) amortised); the short SMAs are re-summed each bar (no drift)."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from schemas.messages import Bar

_NAN2 = (NAN, NAN)


class Stochastic:
    family = "stoch"

    def __init__(self, k: int = 14, smooth: int = 3, d: int = 3) -> None:
        if k < 1:
            raise ValueError("stochastic %K period must be >= 1")
        if smooth < 1:
            raise ValueError("stochastic %K smoothing period must be >= 1")
        if d < 1:
            raise ValueError("stochastic %D period must be >= 1")
        self.k = k
        self.smooth = smooth
        self.d = d
        self.name = spec_name("stoch", k, smooth, d)
        self.columns = (self.name + "_k", self.name + "_d")
        self.warmup = (k - 1) + (smooth - 1) + (d - 1)
        self._i = -1
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()
        self._fastk: deque[float] = deque(maxlen=smooth)
        self._slowk: deque[float] = deque(maxlen=d)

    def update(self, bar: Bar) -> tuple[float, float]:
        self._i += 1
        i = self._i
        h = bar.high
        lo = bar.low
        highs = self._highs
        lows = self._lows
        while highs and highs[-1][1] <= h:
            highs.pop()
        highs.append((i, h))
        while lows and lows[-1][1] >= lo:
            lows.pop()
        lows.append((i, lo))
        first = i - self.k + 1
        if highs[0][0] < first:
            highs.popleft()
        if lows[0][0] < first:
            lows.popleft()
        if first < 0:
            return _NAN2
        ll = lows[0][1]
        rng = highs[0][1] - ll
        fastk = self._fastk
        fastk.append((bar.close - ll) / rng * 100.0 if rng != 0.0 else 0.0)
        if len(fastk) < self.smooth:
            return _NAN2
        slowk = self._slowk
        sk = sum(fastk) / self.smooth
        slowk.append(sk)
        if len(slowk) < self.d:
            return _NAN2
        return (sk, sum(slowk) / self.d)
