"""Rolling Pearson correlation of a symbol's 1-bar log returns with a reference symbol's.

Pair features only use ALIGNED bars (the reference has a bar with the same open time): on any
other bar they output NaN and leave their state alone, and returns run between consecutive aligned
bars of each leg. The rolling moments are exact integer sums of fixed-point returns, so the
covariance n*Sxy - Sx*Sy cannot cancel catastrophically (returns ~1e-3, variances ~1e-7).
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

from operators.features.base import NAN, spec_name
from schemas.messages import Bar

RET_BITS = 62  # returns are quantised once to r * 2**62: error <= 2**-63, far below 1e-9 relative
_RET_SCALE = float(2**RET_BITS)


class PairReturnMoments:
    """Shared by corr and beta: the last n aligned (r_sym, r_ref) pairs as fixed-point ints, their
    products, and exact window sums. One update for both (a method call per bar costs ~10%)."""

    family: ClassVar[str] = "pair_moments"
    _beta: ClassVar[bool] = False  # output cov/var(ref) instead of the correlation

    def __init__(self, ref: str, n: int) -> None:
        if not isinstance(ref, str) or not ref:
            raise ValueError(f"{self.family}: reference must be a non-empty symbol, got {ref!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"{self.family}: window must be an int >= 2, got {n!r}")
        self.ref = ref.upper()
        self.n = n
        self.name = spec_name(self.family, self.ref, n)
        self.columns: tuple[str, ...] = (self.name,)
        self.warmup = n  # n returns need n + 1 aligned bars
        self._prev_sym = NAN  # closes of the last aligned bar
        self._prev_ref = NAN
        self._window: deque[tuple[int, int, int, int, int]] = deque()  # x, y, xx, yy, xy
        self._sx = self._sy = self._sxx = self._syy = self._sxy = 0
        self.value = NAN

    def update(self, bar: Bar, ref_bar: Bar | None) -> float:
        if ref_bar is None or ref_bar.ts_event != bar.ts_event or bar.symbol == self.ref:
            self.value = NAN
            return NAN
        c, cr = bar.close, ref_bar.close
        ps, pr = self._prev_sym, self._prev_ref
        self._prev_sym, self._prev_ref = c, cr
        if ps != ps:  # first aligned bar (NaN): no return yet
            return NAN
        x = round(math.log(c / ps) * _RET_SCALE)
        y = round(math.log(cr / pr) * _RET_SCALE)
        xx, yy, xy = x * x, y * y, x * y
        w = self._window
        w.append((x, y, xx, yy, xy))
        n = self.n
        if len(w) > n:
            ox, oy, oxx, oyy, oxy = w.popleft()
            self._sx = sx = self._sx + x - ox
            self._sy = sy = self._sy + y - oy
            self._sxx = sxx = self._sxx + xx - oxx
            self._syy = syy = self._syy + yy - oyy
            self._sxy = sxy = self._sxy + xy - oxy
        else:
            self._sx = sx = self._sx + x
            self._sy = sy = self._sy + y
            self._sxx = sxx = self._sxx + xx
            self._syy = syy = self._syy + yy
            self._sxy = sxy = self._sxy + xy
            if len(w) < n:
                return NAN
        vy = n * syy - sy * sy  # exact n^2 var(r_ref)
        if vy <= 0:
            self.value = NAN
            return NAN
        if self._beta:
            v = (n * sxy - sx * sy) / vy  # int / int: correctly rounded
        else:
            vx = n * sxx - sx * sx
            if vx <= 0:
                self.value = NAN
                return NAN
            v = (n * sxy - sx * sy) / (math.sqrt(vx) * math.sqrt(vy))
        self.value = v
        return v


class RollingCorr(PairReturnMoments):
    """corr(r_sym, r_ref) over the last n aligned returns; NaN if either leg's variance is 0."""

    family = "corr"

    def __init__(self, ref: str = "BTCUSDT", n: int = 60) -> None:
        super().__init__(ref, n)
