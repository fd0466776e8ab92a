"""Average True Range, as talib.ATR: the first value (bar n) is the mean of the true ranges of bars
1..n (bar 0 has no previous close), then Wilder smoothing atr = (atr * (n-1) + tr) / n."""

from __future__ import annotations

from operators.features.base import NAN, BarColumns, spec_name
from schemas.messages import Bar


class ATR:
    family = "atr"

    def __init__(self, n: int = 14) -> None:
        if n < 1:
            raise ValueError("ATR period must be >= 1")
        self.n = n
        self.name = spec_name("atr", n)
        self.columns = (self.name,)
        self.warmup = n
        self._prev_close = NAN
        self._count = 0  # bars seen
        self._acc = 0.0  # sum of the first n true ranges
        self.value = NAN

    def update(self, bar: Bar) -> float:
        h = bar.high
        lo = bar.low
        pc = self._prev_close
        self._prev_close = bar.close
        count = self._count = self._count + 1
        if count == 1:
            return NAN
        tr = h - lo
        t = abs(h - pc)
        if t > tr:
            tr = t
        t = abs(lo - pc)
        if t > tr:
            tr = t
        n = self.n
        if count <= n:
            self._acc += tr
            return NAN
        if count == n + 1:
            self.value = (self._acc + tr) / n
        else:
            self.value = (self.value * (n - 1) + tr) / n
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        n = self.n
        nf, n1 = float(n), float(n - 1)  # float op int converts the int first: the same op
        pc, count0, acc, v = self._prev_close, self._count, self._acc, self.value
        count = count0
        out: list[float] = []
        append = out.append
        bars = iter(cols.bars)  # attribute reads beat building field lists
        for b in bars:  # update's arithmetic, in locals, until the warm-up is over
            h = b.high
            lo = b.low
            count += 1
            if count == 1:
                pc = b.close
                append(NAN)
                continue
            tr = h - lo
            t = abs(h - pc)
            if t > tr:
                tr = t
            t = abs(lo - pc)
            if t > tr:
                tr = t
            pc = b.close
            if count <= n:
                acc += tr
                append(NAN)
                continue
            v = (acc + tr) / nf if count == n + 1 else (v * n1 + tr) / nf
            append(v)
            break
        for b in bars:  # then only Wilder smoothing
            h = b.high
            lo = b.low
            tr = h - lo
            t = abs(h - pc)
            if t > tr:
                tr = t
            t = abs(lo - pc)
            if t > tr:
                tr = t
            pc = b.close
            v = (v * n1 + tr) / nf
            append(v)
        self._prev_close, self._count, self._acc, self.value = pc, count0 + len(out), acc, v
        return out
