"""Z-score of the bar's volume within the last n volumes (including this one), with the population
standard deviation: (v - mean) / std, 0.0 when the window is constant. The window sums are exact
integers of fixed-point volumes, so z = (n*v - S) / sqrt(n*Q - S^2) has no cancellation error."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from itertools import chain, islice, repeat
from operator import mul, sub, truediv

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.features.vwap import MIN_RUN, running_sums, small_running_sums
from operators.fixedpoint import SCALE
from schemas.messages import Bar

_EXACT = 2.0**53  # below this, numpy's rint(x * SCALE) is round(x * SCALE) as an exact int64


class VolumeZScore:
    family = "volume_zscore"

    def __init__(self, n: int = 20) -> None:
        if n < 2:
            raise ValueError("volume z-score window must be >= 2")
        self.n = n
        self.name = spec_name("volume_zscore", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self._sum = 0  # sum and sum of squares of the window, in units of 1/SCALE (and squared)
        self._sumsq = 0
        self.value = NAN

    def update(self, bar: Bar) -> float:
        v = round(bar.volume * SCALE)
        window = self._window
        window.append(v)
        s = self._sum + v
        q = self._sumsq + v * v
        n = self.n
        if len(window) > n:
            old = window.popleft()
            s -= old
            q -= old * old
        self._sum = s
        self._sumsq = q
        if len(window) < n:
            return NAN
        var_n2 = n * q - s * s  # n^2 * population variance, exact
        self.value = (n * v - s) / math.sqrt(var_n2) if var_n2 > 0 else 0.0
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        bars = cols.bars
        size = len(bars)
        if size < MIN_RUN:
            return [self.update(b) for b in bars]
        try:
            fp = np.rint(np.array(cols.field("volume"), dtype=np.float64) * SCALE)
        except (TypeError, ValueError, OverflowError):
            return [self.update(b) for b in bars]  # update raises: it does, in its place
        # rint is round's ties-to-even; below 2**53 the int64 is exact (a NaN, where update
        # raises, fails too)
        if not bool((np.abs(fp) < _EXACT).all()):
            return [self.update(b) for b in bars]
        v = fp.astype(np.int64)
        vs = v.tolist()
        sq = list(map(mul, vs, vs))
        window, n = self._window, self.n
        d = n - len(window)  # bars before the first drop
        old = list(islice(window, max(size - d, 0)))
        q = running_sums(self._sumsq, sq, chain(map(mul, old, old), sq), d)
        full = max(d - 1, 0)  # the first bar whose window is full
        s_fast = small_running_sums(self._sum, v, old, d, n)
        if s_fast is None:
            s = running_sums(self._sum, vs, chain(old, vs), d)
            num: Iterable[int] = map(sub, map(mul, repeat(n), vs[full:]), s[full:])
        else:
            s = s_fast.tolist()
            num = (n * v[full:] - s_fast[full:]).tolist()  # below 2**63: exact in int64
        out = [NAN] * min(full, size)
        if full < size:
            st = s[full:]
            var_n2 = list(map(sub, map(mul, repeat(n), q[full:]), map(mul, st, st)))
            if min(var_n2) > 0:
                out += map(truediv, num, map(math.sqrt, var_n2))
            else:
                rows = zip(num, var_n2, strict=True)
                out += [a / math.sqrt(b) if b > 0 else 0.0 for a, b in rows]
            self.value = out[-1]
        if size >= n:
            self._window = deque(vs[size - n :])
        else:
            window.extend(vs)
            for _ in range(len(window) - n):
                window.popleft()
        self._sum, self._sumsq = s[-1], q[-1]
        return out
