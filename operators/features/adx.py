"""Average Directional Index with Wilder's +DI/-DI, as talib.ADX / PLUS_DI / MINUS_DI compute them.

TA-Lib's recurrences: the first n-1 directional moves and true ranges are summed, then each bar
applies `s = s - s/n + x` (Wilder smoothing of sums, not of means). DI = 100 * DM_s / TR_s from
bar n; ADX is seeded with the mean of the first n DX values (bar 2n-1) and then Wilder-smoothed.
A bar whose smoothed TR (or DI sum) is zero leaves ADX unchanged, and its DI are 0.0. All three
columns share ADX's warm-up 2n-1 (the DI columns are NaN before it)."""

from __future__ import annotations

from operators.features.base import NAN, spec_name
from schemas.messages import Bar

_NAN3 = (NAN, NAN, NAN)


class ADX:
    family = "adx"

    def __init__(self, n: int = 14) -> None:
        if n < 2:
            raise ValueError("ADX period must be >= 2")
        self.n = n
        self.name = spec_name("adx", n)
        self.columns = (self.name + "_adx", self.name + "_plus_di", self.name + "_minus_di")
        self.warmup = 2 * n - 1
        self._count = 0  # bars seen
        self._ph = NAN  # previous high, low, close
        self._pl = NAN
        self._pc = NAN
        self._pdm = 0.0  # smoothed sums of +DM, -DM and TR
        self._mdm = 0.0
        self._tr = 0.0
        self._adx = 0.0  # sum of the first n DX, then the ADX

    def update(self, bar: Bar) -> tuple[float, float, float]:
        h = bar.high
        lo = bar.low
        count = self._count = self._count + 1
        if count == 1:
            self._ph, self._pl, self._pc = h, lo, bar.close
            return _NAN3
        n = self.n
        diff_p = h - self._ph
        diff_m = self._pl - lo
        pc = self._pc
        tr = h - lo
        t = abs(h - pc)
        if t > tr:
            tr = t
        t = abs(lo - pc)
        if t > tr:
            tr = t
        self._ph, self._pl, self._pc = h, lo, bar.close
        pdm = self._pdm
        mdm = self._mdm
        if count <= n:  # bars 1..n-1: plain sums
            if diff_m > 0 and diff_p < diff_m:
                self._mdm = mdm + diff_m
            elif diff_p > 0 and diff_p > diff_m:
                self._pdm = pdm + diff_p
            self._tr += tr
            return _NAN3
        pdm -= pdm / n
        mdm -= mdm / n
        if diff_m > 0 and diff_p < diff_m:
            mdm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            pdm += diff_p
        trs = self._tr = self._tr - self._tr / n + tr
        self._pdm = pdm
        self._mdm = mdm
        adx = self._adx
        if trs != 0.0:
            plus_di = 100.0 * (pdm / trs)
            minus_di = 100.0 * (mdm / trs)
            s = minus_di + plus_di
            if s != 0.0:
                dx = 100.0 * (abs(minus_di - plus_di) / s)
                if count <= 2 * n:  # bars n..2n-1: sum the first n DX
                    adx += dx
                else:
                    adx = (adx * (n - 1) + dx) / n
        else:
            plus_di = minus_di = 0.0
        if count == 2 * n:
            adx /= n
        self._adx = adx
        if count < 2 * n:
            return _NAN3
        return (adx, plus_di, minus_di)
