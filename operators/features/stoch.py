"""Slow stochastic oscillator, as talib.STOCH with SMA smoothing: fast %K = 100 * (close - lowest
low) / (highest high - lowest low) over k bars (0 when the range is 0), %K = SMA(fast %K, smooth),
%D = SMA(%K, d). Both columns start at bar (k - 1) + (smooth - 1) + (d - 1). Highest/lowest come
from monotonic deques (O(1) amortised); the short SMAs are re-summed each bar (no drift)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.features.willr import high_low_run, plain_array
from schemas.messages import Bar

_NAN2 = (NAN, NAN)
_BATCH_MIN = 32  # shorter runs take the inlined loop: numpy's per-call overhead dominates them
# sum() of floats adds left to right before 3.12 (compensated since): numpy can repeat only that
SEQUENTIAL_SUM = sum([1e16, 1.0, -1e16]) == 0.0


def window_sums(before: deque[float], new: np.ndarray, w: int) -> tuple[list[float], np.ndarray]:
    """`sum()` of each w-value window of before + new that ends in `new` (`before`: a deque of
    at most w values), and the last w values of before + new."""
    prev = list(before)
    ext = np.concatenate([np.asarray(prev[max(len(prev) - (w - 1), 0) :], np.float64), new])
    last: list[float] = [*prev, *new[-w:].tolist()][-w:]
    if len(ext) < w:
        return last, np.empty(0)
    if SEQUENTIAL_SUM:
        win = np.lib.stride_tricks.sliding_window_view(ext, w)
        acc = 0 + win[:, 0]  # sum() starts from int 0: -0.0 becomes 0.0
        for j in range(1, w):
            acc += win[:, j]
        return last, acc
    vals = ext.tolist()
    return last, np.array([sum(vals[j : j + w]) for j in range(len(vals) - w + 1)])


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

    def update_many(self, cols: BarColumns) -> list[tuple[float, float]]:
        hs, ls, cs = cols.field("high"), cols.field("low"), cols.field("close")
        if len(hs) < _BATCH_MIN:
            return self._loop(hs, ls, cs)
        ah, al, ac = plain_array(hs), plain_array(ls), plain_array(cs)
        if ah is None or al is None or ac is None:
            return self._loop(hs, ls, cs)
        hh, ll = high_low_run(self, hs, ls, ah, al, self.k)
        m = len(hh)  # bars with a full %K window: the last m
        if m == 0:
            return [_NAN2] * len(hs)
        rng = hh - ll
        with np.errstate(divide="ignore", invalid="ignore"):
            fk = np.where(rng != 0.0, (ac[-m:] - ll) / rng * 100.0, 0.0)
        fast, sums = window_sums(self._fastk, fk, self.smooth)
        self._fastk = deque(fast, maxlen=self.smooth)
        sk = sums / self.smooth
        slow, dsums = window_sums(self._slowk, sk, self.d)
        self._slowk = deque(slow, maxlen=self.d)
        rows: list[tuple[float, float]] = list(
            zip(sk[len(sk) - len(dsums) :].tolist(), (dsums / self.d).tolist(), strict=True)
        )
        return [_NAN2] * (len(hs) - len(rows)) + rows

    def _loop(
        self, hs: Sequence[float], ls: Sequence[float], cs: Sequence[float]
    ) -> list[tuple[float, float]]:
        k, smooth, d, i = self.k, self.smooth, self.d, self._i
        highs, lows, fastk, slowk = self._highs, self._lows, self._fastk, self._slowk
        out: list[tuple[float, float]] = []
        for h, lo, c in zip(hs, ls, cs, strict=True):  # update's arithmetic, in locals
            i += 1
            while highs and highs[-1][1] <= h:
                highs.pop()
            highs.append((i, h))
            while lows and lows[-1][1] >= lo:
                lows.pop()
            lows.append((i, lo))
            first = i - k + 1
            if highs[0][0] < first:
                highs.popleft()
            if lows[0][0] < first:
                lows.popleft()
            if first < 0:
                out.append(_NAN2)
                continue
            ll = lows[0][1]
            rng = highs[0][1] - ll
            fastk.append((c - ll) / rng * 100.0 if rng != 0.0 else 0.0)
            if len(fastk) < smooth:
                out.append(_NAN2)
                continue
            sk = sum(fastk) / smooth
            slowk.append(sk)
            out.append((sk, sum(slowk) / d) if len(slowk) == d else _NAN2)
        self._i = i
        return out
