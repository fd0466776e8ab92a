"""Average Directional Index with Wilder's +DI/-DI, as talib.ADX / PLUS_DI / MINUS_DI compute them.

TA-Lib's recurrences: the first n-1 directional moves and true ranges are summed, then each bar
applies `s = s - s/n + x` (Wilder smoothing of sums, not of means). DI = 100 * DM_s / TR_s from
bar n; ADX is seeded with the mean of the first n DX values (bar 2n-1) and then Wilder-smoothed.
A bar whose smoothed TR (or DI sum) is zero leaves ADX unchanged, and its DI are 0.0. All three
columns share ADX's warm-up 2n-1 (the DI columns are NaN before it)."""

from __future__ import annotations

from operators.features.base import NAN, BarColumns, spec_name
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

    def update_many(self, cols: BarColumns) -> list[tuple[float, float, float]]:
        n = self.n
        n2 = 2 * n
        nf, n1 = float(n), float(n - 1)  # float op int converts the int first: the same op
        count0, ph, pl, pc = self._count, self._ph, self._pl, self._pc
        pdm, mdm, trs, adx = self._pdm, self._mdm, self._tr, self._adx
        count = count0
        out: list[tuple[float, float, float]] = []
        append = out.append
        bars = iter(cols.bars)  # attribute reads beat building field lists
        for b in bars if count < n2 else ():  # update's arithmetic, in locals, while warming up
            h = b.high
            lo = b.low
            count += 1
            if count == 1:
                ph, pl, pc = h, lo, b.close
                append(_NAN3)
                continue
            diff_p = h - ph
            diff_m = pl - lo
            tr = h - lo
            t = abs(h - pc)
            if t > tr:
                tr = t
            t = abs(lo - pc)
            if t > tr:
                tr = t
            ph, pl, pc = h, lo, b.close
            if count <= n:
                if diff_m > 0.0 and diff_p < diff_m:
                    mdm = mdm + diff_m
                elif diff_p > 0.0 and diff_p > diff_m:
                    pdm = pdm + diff_p
                trs += tr
                append(_NAN3)
                continue
            pdm -= pdm / nf
            mdm -= mdm / nf
            if diff_m > 0.0 and diff_p < diff_m:
                mdm += diff_m
            elif diff_p > 0.0 and diff_p > diff_m:
                pdm += diff_p
            trs = trs - trs / nf + tr
            if trs != 0.0:
                plus_di = 100.0 * (pdm / trs)
                minus_di = 100.0 * (mdm / trs)
                s = minus_di + plus_di
                if s != 0.0:
                    dx = 100.0 * (abs(minus_di - plus_di) / s)
                    adx += dx  # bars n..2n-1: sum the first n DX
            else:
                plus_di = minus_di = 0.0
            if count == n2:
                adx /= nf
                append((adx, plus_di, minus_di))
                break
            append(_NAN3)
        k0 = len(out)
        for b in bars:  # then Wilder smoothing only
            h = b.high
            lo = b.low
            diff_p = h - ph
            diff_m = pl - lo
            tr = h - lo
            t = abs(h - pc)
            if t > tr:
                tr = t
            t = abs(lo - pc)
            if t > tr:
                tr = t
            ph, pl, pc = h, lo, b.close
            pdm -= pdm / nf
            mdm -= mdm / nf
            if diff_m > 0.0 and diff_p < diff_m:
                mdm += diff_m
            elif diff_p > 0.0 and diff_p > diff_m:
                pdm += diff_p
            trs = trs - trs / nf + tr
            if trs != 0.0:
                plus_di = 100.0 * (pdm / trs)
                minus_di = 100.0 * (mdm / trs)
                s = minus_di + plus_di
                if s != 0.0:
                    adx = (adx * n1 + 100.0 * (abs(minus_di - plus_di) / s)) / nf
            else:
                plus_di = minus_di = 0.0
            append((adx, plus_di, minus_di))
        self._count = count + len(out) - k0
        self._ph, self._pl, self._pc = ph, pl, pc
        self._pdm, self._mdm, self._tr, self._adx = pdm, mdm, trs, adx
        return out
