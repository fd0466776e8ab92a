"""Williams %R over n bars: -100 * (highest high - close) / (highest high - lowest low), as
talib.WILLR (0 when the range is 0). Highest/lowest come from monotonic deques (O(1) amortised)."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from schemas.messages import Bar


class WilliamsR:
    family = "willr"

    def __init__(self, n: int = 14) -> None:
        if n < 2:
            raise ValueError("Williams %R period must be >= 2")
        self.n = n
        self.name = spec_name("willr", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._i = -1  # index of the current bar
        # (index, value), values strictly decreasing (highs) / increasing (lows) front to back
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()
        self.value = NAN

    def update(self, bar: Bar) -> float:
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
        first = i - self.n + 1  # oldest index in the window
        if highs[0][0] < first:
            highs.popleft()
        if lows[0][0] < first:
            lows.popleft()
        if first < 0:
            return self.value
        hh = highs[0][1]
        rng = hh - lows[0][1]
        self.value = (hh - bar.close) / rng * -100.0 if rng != 0.0 else 0.0
        return self.value
