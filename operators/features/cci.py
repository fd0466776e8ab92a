"""Commodity Channel Index over n bars of the typical price tp = (high + low + close) / 3:
(tp - mean tp) / (0.015 * mean |tp_i - mean tp|), as talib.CCI (0 when either part is 0).

With T = high + low + close in units of 1/SCALE and S = sum T over the window, everything is an
exact integer up to one division: CCI = n * (n*T_t - S) / (0.015 * sum |n*T_i - S|). The mean
deviation needs the whole window each bar (O(n)); there is no running form."""

from __future__ import annotations

from collections import deque

import numpy as np

from operators.features.base import NAN, BarColumns, spec_name
from operators.fixedpoint import SCALE
from schemas.messages import Bar

_BATCH_MIN = 32  # shorter runs take the inlined loop: numpy's per-call overhead dominates them
_CHUNK = 1 << 20  # window entries per numpy pass, to bound memory for long periods


class CCI:
    family = "cci"

    def __init__(self, n: int = 20) -> None:
        if n < 2:
            raise ValueError("CCI period must be >= 2")
        self.n = n
        self.name = spec_name("cci", n)
        self.columns = (self.name,)
        self.warmup = n - 1
        self._window: deque[int] = deque()  # n * T_i
        self._sum = 0  # sum of T_i
        self.value = NAN

    def update(self, bar: Bar) -> float:
        t = round(bar.high * SCALE) + round(bar.low * SCALE) + round(bar.close * SCALE)
        n = self.n
        window = self._window
        window.append(n * t)
        self._sum += t
        if len(window) > n:
            self._sum -= window.popleft() // n
        elif len(window) < n:
            return self.value
        s = self._sum
        dev = sum(map(abs, map(s.__rsub__, window)))  # sum |n*T_i - S|
        num = n * t - s
        self.value = n * num / (0.015 * dev) if num != 0 and dev != 0 else 0.0
        return self.value

    def update_many(self, cols: BarColumns) -> list[float]:
        hs, ls, cs = cols.field("high"), cols.field("low"), cols.field("close")
        t = self._fixed(hs, ls, cs) if len(hs) >= _BATCH_MIN else None
        if t is None:
            return self._loop(hs, ls, cs)
        n = self.n
        prev = list(self._window)
        ext = np.concatenate([np.array(prev[max(len(prev) - (n - 1), 0) :], np.int64), n * t])
        self._window = deque(ext[-n:].tolist())
        self._sum = int(ext[-n:].sum()) // n
        m = len(ext) - n + 1  # bars with a full window: the last m
        if m <= 0:
            return [self.value] * len(hs)
        win = np.lib.stride_tricks.sliding_window_view(ext, n)
        v = np.empty(m)
        step = max(1, _CHUNK // n)
        for a in range(0, m, step):  # exact int64: n * S and every n*T_i - S (see _fixed)
            w = win[a : a + step]
            s = w.sum(axis=1) // n
            dev = np.abs(w - s[:, None]).sum(axis=1)
            num = w[:, -1] - s
            with np.errstate(divide="ignore", invalid="ignore"):
                q = (n * num).astype(np.float64) / (0.015 * dev.astype(np.float64))
            v[a : a + step] = np.where((num != 0) & (dev != 0), q, 0.0)
        tail: list[float] = v.tolist()
        out = [self.value] * (len(hs) - m) + tail
        self.value = tail[-1]
        return out

    def _fixed(self, hs: list[float], ls: list[float], cs: list[float]) -> np.ndarray | None:
        """T = h + l + c in units of 1/SCALE as int64 (np.rint rounds half to even, as round()
        does), or None where a price is not finite or int64 could overflow."""
        xs = [np.fromiter(col, np.float64, len(col)) * SCALE for col in (hs, ls, cs)]
        if not all(np.isfinite(x).all() for x in xs):
            return None
        top = float(max((abs(x) // self.n for x in self._window), default=0))
        top += sum(float(np.abs(x).max()) + 1.0 for x in xs)
        # |n*T|, |S| <= n*top; |n*T_i - S| <= 2n*top; dev, n*num <= 2n^2*top
        if 2.0 * self.n * self.n * top >= 2.0**62:
            return None
        t: np.ndarray = np.rint(xs[0]).astype(np.int64) + np.rint(xs[1]).astype(np.int64)
        t += np.rint(xs[2]).astype(np.int64)
        return t

    def _loop(self, hs: list[float], ls: list[float], cs: list[float]) -> list[float]:
        n, window, total, v = self.n, self._window, self._sum, self.value
        out: list[float] = []
        try:
            for h, lo, c in zip(hs, ls, cs, strict=True):  # update's arithmetic, in locals
                t = round(h * SCALE) + round(lo * SCALE) + round(c * SCALE)
                window.append(n * t)
                total += t
                if len(window) > n:
                    total -= window.popleft() // n
                elif len(window) < n:
                    out.append(v)
                    continue
                dev = sum(map(abs, map(total.__rsub__, window)))
                num = n * t - total
                v = n * num / (0.015 * dev) if num != 0 and dev != 0 else 0.0
                out.append(v)
        finally:  # a price round() rejects raises as update does, after the bars before it
            self._sum, self.value = total, v
        return out
