"""Money Flow Index, as talib.MFI: money flow = typical price (h+l+c)/3 * volume, positive when the
typical price rose from the previous bar, negative when it fell, neither when unchanged;
MFI = 100 * pos / (pos + neg) over the last n flows (first value at bar n), 0.0 when both are 0.

The up/down decision compares h+l+c in exact fixed point, so equal typical prices are never split
by float rounding. The window sums run in float and are re-summed from the window every n bars
(and zeroed after n flowless bars), so an unbounded stream never accumulates drift."""

from __future__ import annotations

from collections import deque

from operators.features.base import NAN, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar


class MFI:
    family = "mfi"

    def __init__(self, n: int = 14) -> None:
        if n < 2:
            raise ValueError("MFI period must be >= 2")
        self.n = n
        self.name = spec_name("mfi", n)
        self.columns = (self.name,)
        self.warmup = n
        self._prev: int | None = None  # previous h+l+c in units of 1/SCALE
        self._pos: deque[float] = deque()
        self._neg: deque[float] = deque()
        self._pos_sum = 0.0
        self._neg_sum = 0.0
        self._since_resum = 0
        self._zero_run = 0  # consecutive bars without money flow
        self.value = NAN

    def update(self, bar: Bar) -> float:
        h = bar.high
        lo = bar.low
        c = bar.close
        s = round(h * SCALE) + round(lo * SCALE) + round(c * SCALE)
        prev = self._prev
        self._prev = s
        if prev is None:
            return NAN
        flow = (h + lo + c) / 3.0 * bar.volume
        pos = self._pos
        neg = self._neg
        if s > prev:
            p, q = flow, 0.0
        elif s < prev:
            p, q = 0.0, flow
        else:
            p = q = 0.0
        pos.append(p)
        neg.append(q)
        n = self.n
        if len(pos) > n:
            self._pos_sum += p - pos.popleft()
            self._neg_sum += q - neg.popleft()
        else:
            self._pos_sum += p
            self._neg_sum += q
        if p == 0.0 and q == 0.0:
            self._zero_run += 1
            if self._zero_run >= n:  # the whole window is flowless: drop any residue
                self._pos_sum = self._neg_sum = 0.0
        else:
            self._zero_run = 0
        if len(pos) < n:
            return NAN
        self._since_resum += 1
        if self._since_resum >= n:
            self._since_resum = 0
            self._pos_sum = sum(pos)
            self._neg_sum = sum(neg)
        ps = self._pos_sum
        total = ps + self._neg_sum
        if total <= 0.0:
            self.value = 0.0
        else:
            self.value = 100.0 * (min(max(ps, 0.0), total) / total)
        return self.value
