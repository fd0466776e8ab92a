"""Williams %R over n bars: -100 * (highest high - close) / (highest high - lowest low), as
talib.WILLR (0 when the range is 0). Highest/lowest come from monotonic deques (O(1) amortised)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from schemas.messages import Bar

_BATCH_MIN = 32  # shorter runs take the inlined loop: numpy's per-call overhead dominates them


def plain_array(col: list[float]) -> np.ndarray | None:
    """`col` as float64, or None if it holds NaN/inf (the deques' comparisons) or a zero (which
    of 0.0 and -0.0 is a window's extreme depends on the deques' tie rule)."""
    a = np.fromiter(col, dtype=np.float64, count=len(col))
    return a if np.isfinite(a).all() and a.all() else None


def window_extreme(x: np.ndarray, k: int, acc: np.ufunc, pad: float) -> np.ndarray:
    """`acc` (np.maximum/np.minimum) of each x[j : j + k], j = 0 .. len(x) - k: van Herk /
    Gil-Werman, O(len(x)) for any k; extremes are exact, so this equals the deques' front."""
    m = len(x) - k + 1
    blocks = np.concatenate([x, np.full(-len(x) % k, pad)]).reshape(-1, k)
    pre = acc.accumulate(blocks, axis=1).ravel()
    suf = acc.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    out: np.ndarray = acc(suf[:m], pre[k - 1 : k - 1 + m])
    return out


def extended(
    dq: deque[tuple[int, float]], i: int, keep: int, new: np.ndarray, pad: float
) -> tuple[np.ndarray, list[tuple[int, float] | None]]:
    """The last `keep` values up to bar i, then `new`, with `pad` at the bars the monotonic
    deque `dq` has dropped (each is dominated by a later bar still in any window holding it, so
    no extreme changes), and those last bars as the deque's entries (None where dropped)."""
    prev = min(i + 1, keep)
    base = i - prev + 1
    head: list[tuple[int, float] | None] = [None] * prev
    for e in dq:
        if e[0] >= base:
            head[e[0] - base] = e
    arr = np.empty(prev + len(new), dtype=np.float64)
    arr[:prev] = [pad if e is None else e[1] for e in head]
    arr[prev:] = new
    return arr, head


def rebuild(
    head: list[tuple[int, float] | None], new: list[float], last: int, k: int, higher: bool
) -> deque[tuple[int, float]]:
    """The monotonic deque after bar `last` (new[-1]) over a k-bar window, as `update`'s pops
    leave it: the window's bars strictly above (`higher`) / below every later bar."""
    out: list[tuple[int, float]] = []
    best: float | None = None
    idx = last
    for j in range(len(new) - 1, max(len(new) - k, 0) - 1, -1):
        x = new[j]
        if best is None or (x > best if higher else x < best):
            out.append((idx, x))
            best = x
        idx -= 1
    for e in reversed(head[max(len(head) - (k - len(new)), 0) :] if len(new) < k else []):
        if e is not None and (best is None or (e[1] > best if higher else e[1] < best)):
            out.append(e)
            best = e[1]
    out.reverse()
    return deque(out)


class HighLowWindow(Protocol):
    _i: int  # index of the current bar
    _highs: deque[tuple[int, float]]
    _lows: deque[tuple[int, float]]


def high_low_run(
    st: HighLowWindow, hs: list[float], ls: list[float], ah: np.ndarray, al: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The highest high and lowest low of each n-bar window that ends at one of the run's bars
    (`ah`, `al`: `hs`, `ls` as `plain_array`s), for the last m bars whose window is full (m may
    be 0); the deques and the bar index advanced to the run's end as `update` leaves them."""
    i = st._i
    xh, head_h = extended(st._highs, i, n - 1, ah, -np.inf)
    xl, head_l = extended(st._lows, i, n - 1, al, np.inf)
    last = i + len(hs)
    st._highs = rebuild(head_h, hs, last, n, True)
    st._lows = rebuild(head_l, ls, last, n, False)
    st._i = last
    if len(xh) < n:
        return np.empty(0), np.empty(0)
    return window_extreme(xh, n, np.maximum, -np.inf), window_extreme(xl, n, np.minimum, np.inf)


class WilliamsR:
    family = "willr"

    def __init__(self, n: int = 14) -> None:
        if n < 2:
            raise ValueError("Williams %R period must be >= 2")
        self.n = n
        self.name = spec_name("willr", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._i = -1  # index of the current bar
        # (index, value), values strictly decreasing (highs) / increasing (lows) front to back
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()
        self.value = NAN

    def update(self, bar: Bar) -> float:
        self._i += 1
        i = self._i
        h = bar.high
        lo = bar.low
        highs = self._highs
        lows = self._lows
        while highs and highs[-1][1] <= h:
            highs.pop()
        highs.append((i, h))
        while lows and lows[-1][1] >= lo:
            lows.pop()
        lows.append((i, lo))
        first = i - self.n + 1  # oldest index in the window
        if highs[0][0] < first:
            highs.popleft()
        if lows[0][0] < first:
            lows.popleft()
        if first < 0:
            return self.value
        hh = highs[0][1]
        rng = hh - lows[0][1]
        self.value = (hh - bar.close) / rng * -100.0 if rng != 0.0 else 0.0
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        hs, ls, cs = cols.field("high"), cols.field("low"), cols.field("close")
        if len(hs) < _BATCH_MIN:
            return self._loop(hs, ls, cs)
        ah, al, ac = plain_array(hs), plain_array(ls), plain_array(cs)
        if ah is None or al is None or ac is None:
            return self._loop(hs, ls, cs)
        hh, ll = high_low_run(self, hs, ls, ah, al, self.n)
        m = len(hh)  # bars with a full window: the last m
        if m == 0:
            return [self.value] * len(hs)
        rng = hh - ll
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(rng != 0.0, (hh - ac[-m:]) / rng * -100.0, 0.0)
        tail: list[float] = v.tolist()
        out = [self.value] * (len(hs) - m) + tail
        self.value = tail[-1]
        return out

    def _loop(self, hs: Sequence[float], ls: Sequence[float], cs: Sequence[float]) -> list[float]:
        n, i, highs, lows, v = self.n, self._i, self._highs, self._lows, self.value
        out: list[float] = []
        for h, lo, c in zip(hs, ls, cs, strict=True):  # update's arithmetic, in locals
            i += 1
            while highs and highs[-1][1] <= h:
                highs.pop()
            highs.append((i, h))
            while lows and lows[-1][1] >= lo:
                lows.pop()
            lows.append((i, lo))
            first = i - n + 1
            if highs[0][0] < first:
                highs.popleft()
            if lows[0][0] < first:
                lows.popleft()
            if first >= 0:
                hh = highs[0][1]
                rng = hh - lows[0][1]
                v = (hh - c) / rng * -100.0 if rng != 0.0 else 0.0
            out.append(v)
        self._i, self.value = i, v
        return out
