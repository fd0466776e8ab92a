"""Deviation of the close from the rolling VWAP of the last n bars: close / VWAP - 1, with
VWAP = sum(typical * volume) / sum(volume) and typical = (h + l + c) / 3; NaN while the window has
no volume. Sums are exact integers of fixed-point values, so the result is the exact ratio
(3*C*sum(V) - sum((H+L+C)*V)) / sum((H+L+C)*V) rounded once."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import accumulate, chain, islice
from operator import itemgetter, mul, sub, truediv

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar

MIN_RUN = 128  # a shorter run goes bar by bar: numpy's per-call costs would eat the gain
_FIELDS = ("close", "volume", "high", "low")
_EXACT = 2.0**53  # below this, numpy's rint(x * SCALE) is round(x * SCALE) as an exact int64
_SMALL = 2**47
_SMALL_N = 2**13


def running_sums(total: int, new: list[int], gone: Iterable[int], d: int) -> list[int]:
    """total + new[0] + ... + new[i] after each i, less the `gone` terms from the (d+1)-th on."""
    sums = list(accumulate(chain(new[:d], map(sub, new[d:], gone)), initial=total))
    del sums[0]
    return sums


def small_running_sums(
    total: int, new: np.ndarray, old: list[int], d: int, n: int
) -> np.ndarray | None:
    """`running_sums` in int64, for windows of n terms (`new` appended, the `old` ones dropped
    first) below 2**47 in magnitude; None where they might not fit. A window sum is then at most
    |total| + 2 * n * 2**47 <= 2**62 in magnitude: no partial sum leaves int64."""
    if n > _SMALL_N or abs(total) > 2**61 or not bool((np.abs(new) < _SMALL).all()):
        return None
    if old and not -_SMALL < min(old) <= max(old) < _SMALL:
        return None
    dv = new.copy()
    drops = len(new) - d
    if drops > 0:
        dv[d:] -= np.concatenate((np.array(old, dtype=np.int64), new[: drops - len(old)]))
    sums = np.cumsum(dv)
    sums += total
    return sums


class VwapDeviation:
    family = "vwap_dev"

    def __init__(self, n: int = 20) -> None:
        if n < 1:
            raise ValueError("VWAP window must be >= 1")
        self.n = n
        self.name = spec_name("vwap_dev", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[tuple[int, int]] = deque()  # ((H+L+C)*V, V) per bar
        self._pv = 0  # sum of (H+L+C)*V in units of 1/SCALE^2
        self._v = 0  # sum of V in units of 1/SCALE
        self.value = NAN

    def update(self, bar: Bar) -> float:
        c = round(bar.close * SCALE)
        v = round(bar.volume * SCALE)
        pv = (round(bar.high * SCALE) + round(bar.low * SCALE) + c) * v
        window = self._window
        window.append((pv, v))
        spv = self._pv + pv
        sv = self._v + v
        if len(window) > self.n:
            old_pv, old_v = window.popleft()
            spv -= old_pv
            sv -= old_v
        self._pv = spv
        self._v = sv
        if len(window) < self.n:
            return NAN
        # int / int is correctly rounded, however large the sums
        self.value = (3 * c * sv - spv) / spv if spv else NAN
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        bars = cols.bars
        size = len(bars)
        if size < MIN_RUN:
            return [self.update(b) for b in bars]
        try:
            fp = [np.rint(np.array(cols.field(f), dtype=np.float64) * SCALE) for f in _FIELDS]
        except (TypeError, ValueError, OverflowError):
            return [self.update(b) for b in bars]  # update raises: it does, in its place
        # rint is round's ties-to-even; below 2**53 the int64 is exact (a NaN, where update
        # raises, fails too)
        if not all(bool((np.abs(x) < _EXACT).all()) for x in fp):
            return [self.update(b) for b in bars]
        c, v, h, lo = (x.astype(np.int64) for x in fp)
        vs = v.tolist()
        pvs = list(map(mul, (h + lo + c).tolist(), vs))  # (H + L + C) * V in Python ints
        window, n = self._window, self.n
        d = n - len(window)  # bars before the first drop
        old = list(islice(window, max(size - d, 0)))
        spv = running_sums(self._pv, pvs, chain(map(itemgetter(0), old), pvs), d)
        old_v = list(map(itemgetter(1), old))
        fast = small_running_sums(self._v, v, old_v, d, n)
        sv = running_sums(self._v, vs, chain(old_v, vs), d) if fast is None else fast.tolist()
        full = max(d - 1, 0)  # the first bar whose window is full
        out = [NAN] * min(full, size)
        if full < size:
            c3, sv_full, spv_full = (3 * c[full:]).tolist(), sv[full:], spv[full:]
            if all(spv_full):  # update's (3 * c * sv - spv) / spv, in exact ints
                out += map(truediv, map(sub, map(mul, c3, sv_full), spv_full), spv_full)
            else:
                rows = zip(c3, sv_full, spv_full, strict=True)
                out += [(a * b - s) / s if s else NAN for a, b, s in rows]
            self.value = out[-1]
        if size >= n:
            self._window = deque(zip(pvs[size - n :], vs[size - n :], strict=True))
        else:
            window.extend(zip(pvs, vs, strict=True))
            for _ in range(len(window) - n):
                window.popleft()
        self._pv, self._v = spv[-1], sv[-1]
        return out
