"""Bollinger bands of closes (SMA middle, population stddev, width k stddevs each side), reported
as %b = (close - lower) / (upper - lower) and bandwidth = (upper - lower) / middle.

Both are computed from exact fixed-point sums: with S = sum v, Q = sum v^2 over the window (v =
close in units of 1/SCALE) and D = n*Q - S^2 (an exact integer, n^2 * variance * SCALE^2):
    %b    = 0.5 + (n*v_t - S) / (2k * sqrt(D))
    width = 2k * sqrt(D) / S
so nothing cancels: TA-Lib's running float sum of squares of ~40,000 prices loses ~7 digits of
the variance. A flat window (D == 0, upper == lower) gives %b = 0.5 (the close is the middle of a
zero-width band) and width 0."""

from __future__ import annotations

import math
from collections import deque
from itertools import accumulate
from operator import mul, sub

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar

_NAN2 = (NAN, NAN)
_BATCH_MIN = 32  # shorter runs take the inlined loop: numpy's per-call overhead dominates them
_CHUNK = 4096  # windows per block of `_window_stats`; smaller blocks keep their spread small


def _window_stats(v: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """S (int64) and float(D), D = n*Q - S^2 as an exact integer correctly rounded, math.sqrt's
    input in `update`, of the m windows of n values of v (int64, |v| < 2**52).

    D = g^2 * (n * sum u^2 - (sum u)^2) for u = v/g - c, g the gcd of v (prices have few
    decimals) and c a block's centre: exact in int64 while n^2 * max|u|^2 < 2**53, so one float
    product of two exact floats rounds it; other blocks are summed in Python ints."""
    sums = np.empty(m, np.int64)
    d = np.empty(m, np.float64)
    g = int(np.gcd.reduce(v)) or 1
    if float(g * g) != g * g:  # g^2 must be an exact float
        g = 1
    w = v // g
    g2 = float(g * g)
    for a in range(0, m, _CHUNK):
        b = min(a + _CHUNK, m)
        seg = w[a : b + n - 1]
        lo, hi = int(seg.min()), int(seg.max())
        c = (lo + hi) // 2
        r = max(hi - c, c - lo)
        if n * n * r * r < 2**53 and len(seg) * r * r < 2**62:
            u = seg - c
            c1 = np.concatenate([[0], np.cumsum(u)])
            c2 = np.concatenate([[0], np.cumsum(u * u)])
            su = c1[n:] - c1[:-n]
            sums[a:b] = g * (su + n * c)
            d[a:b] = g2 * (n * (c2[n:] - c2[:-n]) - su * su).astype(np.float64)
        else:
            vals: list[int] = v[a : b + n - 1].tolist()
            cs1 = list(accumulate(vals, initial=0))
            cs2 = list(accumulate(map(mul, vals, vals), initial=0))
            s = list(map(sub, cs1[n:], cs1[:-n]))
            q = map(sub, cs2[n:], cs2[:-n])
            sums[a:b] = s
            d[a:b] = list(map(float, map(sub, map(mul, [n] * (b - a), q), map(mul, s, s))))
    return sums, d


class Bollinger:
    family = "bbands"

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        if n < 2:
            raise ValueError("Bollinger period must be >= 2")
        if not (math.isfinite(k) and k > 0.0):
            raise ValueError("Bollinger width k must be a finite number > 0")
        self.n = n
        self.k = float(k)
        self.name = spec_name("bbands", n, self.k)
        self.columns = (self.name + "_pctb", self.name + "_width")
        self.warmup = n - 1
        self._two_k = 2.0 * self.k
        self._window: deque[int] = deque()
        self._sum = 0
        self._sumsq = 0

    def update(self, bar: Bar) -> tuple[float, float]:
        v = round(bar.close * SCALE)
        window = self._window
        window.append(v)
        self._sum += v
        self._sumsq += v * v
        n = self.n
        if len(window) > n:
            old = window.popleft()
            self._sum -= old
            self._sumsq -= old * old
        elif len(window) < n:
            return _NAN2
        s = self._sum
        d = n * self._sumsq - s * s
        if d == 0:
            return (0.5, 0.0)
        band = self._two_k * math.sqrt(d)  # (upper - lower) * n * SCALE
        return (0.5 + (n * v - s) / band, band / s)

    def update_many(self, cols: BarColumns) -> list[tuple[float, float]]:
        cs = cols.field("close")
        x = np.fromiter(cs, np.float64, len(cs)) * SCALE
        if len(cs) < _BATCH_MIN or not np.isfinite(x).all() or np.abs(x).max() >= 2.0**52:
            return self._loop(cs)
        n = self.n
        prev = list(self._window)
        head = prev[max(len(prev) - (n - 1), 0) :]
        top = max([float(np.abs(x).max()), *(float(abs(v)) for v in head)])
        if top >= 2.0**52 or n * (top + 1.0) >= 2.0**62:  # S and n*v in int64
            return self._loop(cs)
        ext = np.concatenate([np.array(head, np.int64), np.rint(x).astype(np.int64)])
        m = len(ext) - n + 1  # bars with a full window: the last m
        if m <= 0:
            sums, d = np.empty(0, np.int64), np.empty(0)
        else:
            sums, d = _window_stats(ext, n, m)
            if ((sums == 0) & (d != 0.0)).any():  # update's band / S raises there
                return self._loop(cs)
        last: list[int] = ext[-n:].tolist()
        self._window = deque(last)
        self._sum, self._sumsq = sum(last), sum(v * v for v in last)
        if m <= 0:
            return [_NAN2] * len(cs)
        band = self._two_k * np.sqrt(d)
        num = n * ext[n - 1 :] - sums  # n*v - S, exact int64
        with np.errstate(divide="ignore", invalid="ignore"):
            flat = d == 0.0
            pctb = np.where(flat, 0.5, 0.5 + num.astype(np.float64) / band)
            width = np.where(flat, 0.0, band / sums.astype(np.float64))
        rows: list[tuple[float, float]] = list(zip(pctb.tolist(), width.tolist(), strict=True))
        return [_NAN2] * (len(cs) - m) + rows

    def _loop(self, cs: list[float]) -> list[tuple[float, float]]:
        n, two_k, sqrt, window = self.n, self._two_k, math.sqrt, self._window
        total, sq = self._sum, self._sumsq
        out: list[tuple[float, float]] = []
        try:
            for c in cs:  # update's arithmetic, in locals
                v = round(c * SCALE)
                window.append(v)
                total += v
                sq += v * v
                if len(window) > n:
                    old = window.popleft()
                    total -= old
                    sq -= old * old
                elif len(window) < n:
                    out.append(_NAN2)
                    continue
                d = n * sq - total * total
                if d == 0:
                    out.append((0.5, 0.0))
                    continue
                band = two_k * sqrt(d)
                out.append((0.5 + (n * v - total) / band, band / total))
        finally:  # a close round() rejects raises as update does, after the bars before it
            self._sum, self._sumsq = total, sq
        return out
