"""Parkinson (1980) range volatility: sqrt(mean over the last n bars of ln(high/low)**2 / (4 ln 2)).

Per-bar, not annualised. A bar with high == low contributes 0. The window sum of ln(h/l)**2 is an
exact integer in binary fixed point (units of 2**-110), so it cannot drift over a long stream;
the only rounding is each term's (<= 2**-111 absolute) and one final division.
"""

from __future__ import annotations

import math
from collections import deque
from itertools import islice
from operator import truediv

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from schemas.messages import Bar

_K = 110
_TWO_K = float(2**_K)
_FOUR_LN2 = 4.0 * math.log(2.0)
_INV_TWO_K = 2.0**-_K

# The batch kernels below (shared with garch.py and garman_klass.py, whose windows hold the same
# kind of fixed-point ints) keep the window sums as two int64 limbs, hi * 2**52 + lo: a term below
# 2**104 has |hi| <= 2**52, so a sum of _MAX_N of them (hi or lo) cannot leave int64.
_LIMB = 52
_LIMB_F = float(2**_LIMB)
_INV_LIMB = 2.0**-_LIMB
_MASK = (1 << _LIMB) - 1
_TOP = 2**104
_TOP_F = float(_TOP)
_MAX_N = 2046
MIN_RUN = 128  # a shorter run goes bar by bar: numpy's per-call costs would eat the gain


def window_sums(
    window: deque[int], total: int, n: int, q: np.ndarray, *, signed: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact sums of a window of the last n ints (now `window`, summing to `total`) after each
    of `q` (integer-valued floats) is appended and the oldest dropped past n, as int64 limbs
    `(hi, lo)`: sum == hi * 2**52 + lo, 0 <= lo < 2**52. None where a limb could overflow (a term
    of 2**104 or more, a NaN, n > _MAX_N): then go bar by bar. Unless `signed`, every term is >= 0
    (so each is <= total)."""
    if n > _MAX_N or not bool((np.abs(q) < _TOP_F).all()):
        return None
    if signed:
        if window and not -_TOP < min(window) <= max(window) < _TOP:
            return None
    elif not 0 <= total < _TOP:
        return None
    hi_f = np.floor(q * _INV_LIMB)
    lo = (q - hi_f * _LIMB_F).astype(np.int64)  # exact: an integer in [0, 2**52)
    hi = hi_f.astype(np.int64)
    dh, dl = hi.copy(), lo.copy()
    d = n - len(window)  # terms appended before the first drop
    drops = len(q) - d
    if drops > 0:
        old = list(islice(window, drops))
        rest = drops - len(old)
        dh[d:] -= np.concatenate((np.array([g >> _LIMB for g in old], np.int64), hi[:rest]))
        dl[d:] -= np.concatenate((np.array([g & _MASK for g in old], np.int64), lo[:rest]))
    # hi's running sum may wrap in between; the window sums themselves fit, so they come out exact
    sh = np.cumsum(dh)
    sh += total >> _LIMB
    sl = np.cumsum(dl)
    sl += total & _MASK
    sh += sl >> _LIMB
    sl &= _MASK
    return sh, sl


def last_sum(hi: np.ndarray, lo: np.ndarray) -> int:
    """The last of `window_sums`' sums, as a Python int."""
    return (int(hi[-1]) << _LIMB) + int(lo[-1])


def window_means(hi: np.ndarray, lo: np.ndarray, n: int) -> np.ndarray:
    """s / n for each window sum s = hi * 2**52 + lo of `window_sums`, correctly rounded as
    Python's int / int is (so s / (n * 2**K) is this times 2**-K, exactly)."""
    a, b = np.divmod(hi, n)
    c, r = np.divmod((b << _LIMB) + lo, n)  # s == n * (a * 2**52 + c) + r, 0 <= c < 2**52, r < n
    # where a >= 2, I = a * 2**52 + c >= 2**53, so one float addition rounds it; the fraction
    # r / n < 1 <= ulp / 2 then only matters where I is an exact midpoint and rounded down
    y: np.ndarray = a.astype(np.float64) * _LIMB_F + c.astype(np.float64)
    yh = np.floor(y * _INV_LIMB)
    below = (a - yh.astype(np.int64)) * (1 << _LIMB) + (c - (y - yh * _LIMB_F).astype(np.int64))
    up = (below > 0) & (below * 2 == np.spacing(y).astype(np.int64)) & (r > 0)
    if up.any():
        y[up] = np.nextafter(y[up], np.inf)
    for i in np.flatnonzero(a < 2).tolist():  # below 2**53 (or negative): rare, in Python ints
        y[i] = ((int(hi[i]) << _LIMB) + int(lo[i])) / n
    return y


def slide(window: deque[int], q: np.ndarray, n: int) -> deque[int]:
    """The window after appending the ints `q` (integer-valued floats below 2**104) to `window`
    and dropping the oldest past n (in place while the run is shorter than n)."""
    if len(q) >= n:
        return deque(map(int, q[len(q) - n :].tolist()))
    window.extend(map(int, q.tolist()))
    for _ in range(len(window) - n):
        window.popleft()
    return window


class Parkinson:
    family = "parkinson"

    def __init__(self, n: int = 20) -> None:
        if n < 1:
            raise ValueError(f"Parkinson volatility window must be >= 1, got {n}")
        self.n = n
        self.name = spec_name("parkinson", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()
        self._sum = 0
        self._den = n * 2**_K
        self.value = NAN

    def update(self, bar: Bar) -> float:
        x = math.log(bar.high / bar.low)
        q = round(x * x * _TWO_K)
        window = self._window
        window.append(q)
        s = self._sum + q
        if len(window) > self.n:
            s -= window.popleft()
        self._sum = s
        if len(window) == self.n:
            self.value = math.sqrt(s / self._den / _FOUR_LN2)
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        bars = cols.bars
        if len(bars) < MIN_RUN:
            return [self.update(b) for b in bars]
        window, n = self._window, self.n
        try:
            xs = list(map(math.log, map(truediv, cols.field("high"), cols.field("low"))))
        except (ArithmeticError, ValueError):
            return [self.update(b) for b in bars]  # update raises: it does, in its place
        x = np.array(xs, dtype=np.float64)
        q = np.rint(x * x * _TWO_K)  # round(): ties to even, an exact integer
        sums = window_sums(window, self._sum, n, q)
        if sums is None:  # out of the kernels' range (or a NaN, where update raises)
            return [self.update(b) for b in bars]
        hi, lo = sums
        full = max(n - len(window) - 1, 0)  # the first bar whose window is full
        out = [self.value] * min(full, len(bars))
        if full < len(bars):
            vals = np.sqrt(window_means(hi[full:], lo[full:], n) * _INV_TWO_K / _FOUR_LN2)
            out += vals.tolist()
            self.value = out[-1]
        self._window = slide(window, q, n)
        self._sum = last_sum(hi, lo)
        return out
