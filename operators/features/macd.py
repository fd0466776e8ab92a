"""MACD: EMA(fast) - EMA(slow) of closes, its EMA(signal) and the histogram line - signal, as
talib.MACD computes them. TA-Lib aligns the two EMAs: both are seeded at bar slow-1, the slow one
with the SMA of the first `slow` closes and the fast one with the SMA of the last `fast` closes
(not of the first `fast`); the signal EMA is then seeded with the SMA of the first `signal` MACD
values, so all three columns start at bar (slow - 1) + (signal - 1)."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, BarColumns, spec_name
from schemas.messages import Bar

_NAN3 = (NAN, NAN, NAN)


class MACD:
    family = "macd"

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if fast < 2:
            raise ValueError("MACD fast period must be >= 2")
        if slow <= fast:
            raise ValueError("MACD slow period must be > fast period")
        if signal < 1:
            raise ValueError("MACD signal period must be >= 1")
        self.fast = fast
        self.slow = slow
        self.signal = signal
        self.name = spec_name("macd", fast, slow, signal)
        self.columns = (self.name + "_line", self.name + "_signal", self.name + "_hist")
        self.warmup = (slow - 1) + (signal - 1)
        self._kf = 2.0 / (fast + 1)
        self._ks = 2.0 / (slow + 1)
        self._kg = 2.0 / (signal + 1)
        self._closes: deque[float] = deque()  # the first `slow` closes, for the seeds only
        self._fast_ema = NAN
        self._slow_ema = NAN
        self._nlines = 0  # MACD line values seen so far
        self._sig = 0.0  # sum of the first `signal` lines, then the signal EMA

    def update(self, bar: Bar) -> tuple[float, float, float]:
        c = bar.close
        if self._nlines == 0:
            closes = self._closes
            closes.append(c)
            if len(closes) < self.slow:
                return _NAN3
            # TA-Lib's seeds: sum in input order, then divide (same rounding as its INT_EMA)
            total = 0.0
            for x in closes:
                total += x
            self._slow_ema = total / self.slow
            total = 0.0
            for x in list(closes)[self.slow - self.fast :]:
                total += x
            self._fast_ema = total / self.fast
            closes.clear()
        else:
            self._fast_ema = (c - self._fast_ema) * self._kf + self._fast_ema
            self._slow_ema = (c - self._slow_ema) * self._ks + self._slow_ema
        line = self._fast_ema - self._slow_ema
        self._nlines += 1
        n = self._nlines
        if n < self.signal:
            self._sig += line
            return _NAN3
        if n == self.signal:
            self._sig = (self._sig + line) / self.signal
        else:
            self._sig = (line - self._sig) * self._kg + self._sig
        return (line, self._sig, line - self._sig)

    def update_many(self, cols: BarColumns) -> list[tuple[float, float, float]]:
        fast, slow, signal = self.fast, self.slow, self.signal
        kf, ks, kg = self._kf, self._ks, self._kg
        closes = self._closes
        fe, se, nl, sig = self._fast_ema, self._slow_ema, self._nlines, self._sig
        out: list[tuple[float, float, float]] = []
        append = out.append
        bars = iter(cols.bars)  # attribute reads beat building field lists
        for b in bars if nl < signal else ():  # update's arithmetic, in locals, while warming up
            c = b.close
            if nl == 0:
                closes.append(c)
                if len(closes) < slow:
                    append(_NAN3)
                    continue
                total = 0.0
                for x in closes:
                    total += x
                se = total / slow
                total = 0.0
                for x in list(closes)[slow - fast :]:
                    total += x
                fe = total / fast
                closes.clear()
            else:
                fe = (c - fe) * kf + fe
                se = (c - se) * ks + se
            line = fe - se
            nl += 1
            if nl < signal:
                sig += line
                append(_NAN3)
                continue
            sig = (sig + line) / signal
            append((line, sig, line - sig))
            break
        n0 = len(out)
        for b in bars:  # then three EMA steps a bar
            c = b.close
            fe = (c - fe) * kf + fe
            se = (c - se) * ks + se
            line = fe - se
            sig = (line - sig) * kg + sig
            append((line, sig, line - sig))
        self._fast_ema, self._slow_ema, self._sig = fe, se, sig
        self._nlines = nl + len(out) - n0
        return out
