"""Rolling Engle-Granger style cointegration of a symbol on a reference symbol.

Over the last n aligned bars (alignment rules: see pair_corr) with y = ln(close_sym) and
x = ln(close_ref): OLS y = a + b*x gives the hedge ratio b; the residuals e_i = y_i - a - b*x_i
(all under the CURRENT fit) give
  halflife = -ln 2 / ln(1 + phi) from the AR(1) OLS  e_i - e_{i-1} = c + phi*e_{i-1}  over the
             window's n-1 consecutive pairs, NaN unless -1 < phi < 0 (not mean-reverting);
  z        = e_t / sqrt(SSR / n)  (population std; the residual mean is 0 with an intercept).

Log prices ~10 whose window variance is ~1e-5 would cancel catastrophically in float running
sums, so each log price is quantised once to an int (x * 2**52: exact for |x| >= 1) and all
rolling sums — including the lag-1 cross sums that the AR(1) needs, since e_i expands into x, y
terms — are exact ints. Every statistic is then a ratio of exact ints, rounded once to float.
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

from operators.features.base import NAN, spec_name
from schemas.messages import Bar

LOG_BITS = 52
_LOG_SCALE = float(2**LOG_BITS)
_LN2 = math.log(2.0)
_NAN3 = (NAN, NAN, NAN)


class CointSpread:
    family: ClassVar[str] = "coint"

    def __init__(self, ref: str = "BTCUSDT", n: int = 1440) -> None:
        if not isinstance(ref, str) or not ref:
            raise ValueError(f"coint: reference symbol must be a non-empty str, got {ref!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 3:
            raise ValueError(f"coint: window must be an int >= 3, got {n!r}")
        self.ref = ref.upper()
        self.n = n
        self.name: str = spec_name("coint", self.ref, n)
        self.columns: tuple[str, ...] = (
            f"{self.name}_hedge",
            f"{self.name}_halflife",
            f"{self.name}_z",
        )
        self.warmup = n - 1
        self._window: deque[tuple[int, int]] = deque()  # (qx, qy) of the last n aligned bars
        # window sums and lag-1 cross sums over its consecutive pairs (prev * next)
        self._sx = self._sy = self._sxx = self._syy = self._sxy = 0
        self._lxx = self._lyy = self._lxy = self._lyx = 0  # lxy = sum x_{i-1} * y_i

    def update(self, bar: Bar, ref_bar: Bar | None) -> tuple[float, float, float]:
        if ref_bar is None or ref_bar.ts_event != bar.ts_event or bar.symbol == self.ref:
            return _NAN3
        y = round(math.log(bar.close) * _LOG_SCALE)
        x = round(math.log(ref_bar.close) * _LOG_SCALE)
        w = self._window
        n = self.n
        if w:
            px, py = w[-1]
            self._lxx += px * x
            self._lyy += py * y
            self._lxy += px * y
            self._lyx += py * x
        w.append((x, y))
        sx, sy = self._sx + x, self._sy + y
        sxx, syy, sxy = self._sxx + x * x, self._syy + y * y, self._sxy + x * y
        if len(w) > n:
            ox, oy = w.popleft()
            nx, ny = w[0]
            sx -= ox
            sy -= oy
            sxx -= ox * ox
            syy -= oy * oy
            sxy -= ox * oy
            self._lxx -= ox * nx
            self._lyy -= oy * ny
            self._lxy -= ox * ny
            self._lyx -= oy * nx
        self._sx, self._sy, self._sxx, self._syy, self._sxy = sx, sy, sxx, syy, sxy
        if len(w) < n:
            return _NAN3
        p = n * sxx - sx * sx  # n^2 var(x)
        if p <= 0:
            return _NAN3
        q = n * sxy - sx * sy  # n^2 cov(x, y); b = q / p
        d = (n * syy - sy * sy) * p - q * q  # n * SSR * p  (>= 0 exactly)
        hedge = q / p
        # residuals scaled by n*p: n*p*e_t = p*(n*y_t - Sy) - q*(n*x_t - Sx)
        et = p * (n * y - sy) - q * (n * x - sx)
        z = et / math.sqrt(p * d) if d > 0 else NAN
        # AR(1) of f_i = p*y_i - q*x_i (= p*e_i + const) over the pairs (f_{i-1}, f_i):
        # head sums drop the last bar, tail sums drop the first
        fx, fy = w[0]
        m = n - 1
        fh = p * (sy - y) - q * (sx - x)
        ft = p * (sy - fy) - q * (sx - fx)
        pp, pq, qq = p * p, p * q, q * q
        cross = pp * self._lyy - pq * (self._lxy + self._lyx) + qq * self._lxx
        sq = pp * (syy - y * y) - 2 * pq * (sxy - x * y) + qq * (sxx - x * x)
        cov = m * cross - fh * ft  # m^2 * cov(f_{i-1}, f_i)
        var = m * sq - fh * fh  # m^2 * var(f_{i-1});  1 + phi = cov / var
        if 0 < cov < var:
            rho = cov / var
            ln_rho = math.log(rho) if rho < 0.5 else math.log1p((cov - var) / var)
            halflife = -_LN2 / ln_rho
        else:
            halflife = NAN
        return (hedge, halflife, z)
